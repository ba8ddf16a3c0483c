"""BigGAN (pytorch-pretrained-biggan layout): golden images of the reference fixture, the loader's
refusals, truncation-dependent batch-norm statistics, seeds, edits and discovery with a class."""

from __future__ import annotations

import collections
import json
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from cli.main import main
from engine.directions import Direction
from engine.errors import AtlasError, CheckpointError, UnsafePickleError
from engine.jobs import run_job
from engine.models import load_generator
from engine.models.base import CLASSES, EARLY_ACTIVATION, FIRST_LATENT_LAYER, ParamEdit
from engine.models.biggan import BigGANConfig, batchnorm_stats, bn_statistics_rows
from engine.render import Base, Item, materialize, render_batch, render_items
from tests.engine.cli_runs import CLASS_METHODS, check_discover_on_a_class
from tests.engine.tiny_generators import tiny_biggan

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "biggan"
FOLDER = FIXTURES / "biggan_res32"
needs_fixture = pytest.mark.skipif(not (FOLDER / "config.json").is_file(), reason=f"{FOLDER} not found")


@pytest.fixture(scope="module")
def expected():
    return np.load(FIXTURES / "biggan_res32_expected.npz")


@pytest.fixture(scope="module")
def biggan():
    return load_generator(str(FOLDER), device="cpu")


# ---- golden images -----------------------------------------------------------------------------
@needs_fixture
@pytest.mark.parametrize("latents", ["z_trunc", "z_normal"])
def test_every_truncation_renders_through_the_cli(tmp_path, expected, latents):
    """5 truncations incl. 0.625 and 0.58, between the stored statistics levels (reversed weights)."""
    np.save(tmp_path / "z.npy", expected[latents])
    classes = ",".join(str(int(c)) for c in expected["class_ids"])
    for i, t in enumerate(expected["truncations"]):
        out = tmp_path / f"x{i}.npy"
        args = ["render", "--model", str(FOLDER), "--latents", str(tmp_path / "z.npy"), "--class", classes]
        assert main([*args, "--truncation", repr(float(t)), "--noise", "const", "--out", str(out)]) == 0
        err = np.abs(np.load(out) - expected[f"img_{latents}"][i]).max()
        assert err < 1e-4, f"truncation {t}: max abs error {err}"


@needs_fixture
def test_the_bin_with_its_config_beside_it_loads_the_same_model(tmp_path, expected):
    np.save(tmp_path / "z.npy", expected["z_trunc"])
    out = tmp_path / "x.npy"
    model = str(FOLDER / "pytorch_model.bin")
    assert main(["render", "--model", model, "--latents", str(tmp_path / "z.npy"), "--class", "207,1,980,555"]
                + ["--truncation", "0.4", "--out", str(out)]) == 0  # fmt: skip
    assert np.abs(np.load(out) - expected["img_z_trunc"][1]).max() < 1e-4


@needs_fixture
def test_spectral_norm_uses_the_stored_vectors_and_activations_match(biggan, expected):
    ref = dict(zip(expected["sn_modules"].tolist(), expected["sn_sigma"].tolist()))
    assert set(ref) == set(biggan.sn_sigma)
    assert max(abs(biggan.sn_sigma[k] - v) / abs(v) for k, v in ref.items()) < 1e-6
    torch.testing.assert_close(biggan.embeddings[:, 207], torch.from_numpy(expected["embedding_207"]))
    z, cls = torch.from_numpy(expected["z_normal"]), torch.from_numpy(expected["class_ids"])
    t = float(expected["act_truncation"])
    with torch.no_grad():
        torch.testing.assert_close(biggan.embed(cls), torch.from_numpy(expected["act_embed"]))
        act = biggan.early_activation(z, 1, classes=cls, psi=t)
        assert np.abs(act.numpy() - expected["act_gen_z_nchw"]).max() < 1e-5
        for i in range(7):
            act = biggan.early_activation(z, i + 2, classes=cls, psi=t)
            tol = 2e-4 if i == 6 else 1e-4
            assert np.abs(act.numpy() - expected[f"act_layers_{i}"]).max() < tol, f"layers.{i}"


@needs_fixture
def test_seeds_are_the_reference_truncated_noise(biggan, expected):
    z = biggan.seed_latents([0], psi=0.4)  # truncated_noise_sample(truncation=0.4, seed=0), row 0
    assert np.array_equal(z.numpy()[0], expected["z_trunc"][0])
    both = biggan.seed_latents([5, 0], psi=0.4)
    assert torch.equal(both[1], z[0])  # a seed is the same latent whatever other seeds come with it
    assert float(biggan.seed_latents(range(20), psi=0.5).abs().max()) <= 0.5 * 2.0
    with pytest.raises(AtlasError, match=r"truncation 1.5: .*\(0, 1\]"):
        biggan.seed_latents([0], psi=1.5)


@needs_fixture
def test_info_names_the_family_classes_and_layers(capsys):
    assert main(["info", str(FOLDER)]) == 0
    out = capsys.readouterr().out
    assert "biggan" in out and "1000: 0 tench, 1 goldfish" in out and "999 toilet tissue" in out
    assert "generator.layers.3.conv_1" in out and "generator.gen_z" in out
    # the linear maps that are not editable say why
    assert "not editable:" in out and "embeddings" in out and "conditional batch-norm gains" in out


def test_batchnorm_statistics_follow_the_reference_rule():
    assert bn_statistics_rows(1.0, 51) == (50, 0.0)
    assert bn_statistics_rows(0.73, 51) == (36, pytest.approx(0.5))
    start, coef = bn_statistics_rows(0.625, 51)
    assert (start, coef) == (31, pytest.approx(0.25))
    start, coef = bn_statistics_rows(0.58, 51)  # 0.58 / 0.02 = 28.999999999999996
    assert start == 28 and 0.999 < coef < 1.0
    means = torch.arange(51.0).unsqueeze(1).repeat(1, 2)
    mean, _ = batchnorm_stats(means, means, 0.625)
    assert torch.allclose(mean, torch.full((2,), 0.25 * 31 + 0.75 * 32))  # the lower row weighs coef


# ---- the model protocol ------------------------------------------------------------------------
def test_capabilities_classes_and_first_latent_layer():
    gen = tiny_biggan()
    assert gen.family == "biggan" and gen.supports(CLASSES)
    assert gen.supports(FIRST_LATENT_LAYER) and gen.supports(EARLY_ACTIVATION)
    assert gen.spaces == ("z",) and gen.has_truncation and gen.num_classes == 5
    A = gen.first_latent_layer().matrix
    assert A.shape == (gen.gen_z_weight.shape[0], gen.z_dim)
    assert torch.equal(A.float(), gen.gen_z_weight.detach()[:, : gen.z_dim])
    with pytest.raises(AtlasError, match="class-conditional .*choose a class"):
        gen.decode(gen.seed_latents([0]))
    assert gen.find_class("Golden Retriever") == 2 and gen.find_class("4") == 4
    gen.train()
    assert not gen.training  # the reference's training mode runs power iterations: never here


def test_parameter_edits_match_shifted_weights_and_share_the_prefix():
    gen = tiny_biggan()
    z = gen.seed_latents([0, 1, 2], psi=0.7)
    cls = torch.tensor([0, 3, 4])
    # activations of this random model reach ~30 before the final batch norm: float32 rounding ~1e-4
    for layer in ("generator.gen_z", "generator.layers.0.conv_1", "generator.layers.3.conv_3", "generator.conv_to_rgb"):
        W = gen.layer_weight(layer)
        W0 = W.detach().clone()
        delta = torch.randn(W.shape, generator=torch.Generator().manual_seed(1)) * W0.norm() / W.numel() ** 0.5
        with torch.no_grad():
            plain = gen.decode(z[1:2], psi=0.7, classes=cls[1:2])[0]
            edited = gen.decode(z, psi=0.7, classes=cls, edit=ParamEdit.single(layer, delta, 3, 0.3))
            W.add_(0.3 * delta)
            direct = gen.decode(z, psi=0.7, classes=cls)
            W.copy_(W0)
            # shared prefix: 2 distinct codes expanded to 4 rows at the edited layer
            src = torch.tensor([0, 0, 1, 1])
            e = ParamEdit(
                layer, delta.unsqueeze(0), torch.zeros(4, dtype=torch.long), torch.tensor([0, 0.3, 0, 0.3]), src
            )
            shared = gen.decode(z[:2], psi=0.7, classes=cls[:2], edit=e)
        torch.testing.assert_close(edited, direct, atol=5e-4, rtol=0)
        torch.testing.assert_close(shared[1], direct[0], atol=5e-4, rtol=0)
        torch.testing.assert_close(shared[2], plain, atol=5e-4, rtol=0)


def test_grid_rows_keep_their_seed_class_even_with_equal_codes():
    """The shared-prefix deduplication must not merge two rows with one code but different classes."""
    gen = tiny_biggan()
    z = gen.seed_latents([3], psi=1.0).repeat(2, 1)  # the same code twice ...
    bases = [Base(class_index=1), Base(class_index=4)]  # ... in two classes
    layer = gen.default_edit_layer
    d = Direction("param", layer=layer, delta=torch.randn(gen.layer_info(layer).shape) * 0.05)
    items = [Item(z[m], ((d, t),), bases[m]) for t in (-1.0, 1.0) for m in range(2)]
    flat = run_job(render_items(gen, items, raw=True))
    with torch.no_grad():
        for i, it in enumerate(items):
            one = render_batch(gen, it.code[None], [it.shifts], classes=[it.base.class_index])
            torch.testing.assert_close(flat[i], one[0], atol=5e-4, rtol=0)
    assert (flat[0] - flat[1]).abs().mean() > 1e-3  # the two classes differ


# ---- refusals ------------------------------------------------------------------------------
def _copy_folder(tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(FOLDER, dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    return dst


def _legacy_bin(path: Path, state: dict) -> None:
    torch.save(state, path, _use_new_zipfile_serialization=False)


def _config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


class _FakeStorage:
    pass


class _FakeTensor:
    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, (_FakeStorage(), 0, (1,), (1,), False, collections.OrderedDict()))


class _LyingPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _FakeStorage):
            return ("storage", torch.FloatStorage, "1", "cpu", 10**12, None)  # 4 TB declared
        return None


def _hostile_storage_bin(path: Path) -> None:
    """A legacy container whose one tensor declares 10^12 floats in a file of a few hundred bytes."""
    with open(path, "wb") as f:
        for head in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(head, f, protocol=2)
        _LyingPickler(f, protocol=2).dump({"embeddings.weight": _FakeTensor()})
        pickle.dump(["1"], f, protocol=2)
        f.write(struct.pack("<q", 10**12) + b"\x00" * 16)


@needs_fixture
@pytest.mark.parametrize(
    "damage, message",
    [
        ("bad_json", "not valid JSON"),
        ("wrong_type", "channel_width must be an integer"),
        ("missing_key", "lacks n_stats"),
        ("bad_layers", r"layers\[1\]"),
        ("huge_config", r"config.json implies \[4096, 1000\]"),
        ("truncated_bin", "truncated"),
        ("missing_bin", "pytorch_model.bin: missing"),
        ("missing_tensor", "lacks generator.bn.weight"),
        ("wrong_shape", "has shape"),
        ("huge_storage", "reaching past the end of the file"),
        ("code_global", "refused to load"),
        ("not_torch", "not a torch checkpoint"),
    ],
)
def test_damaged_or_hostile_folders_get_one_clear_line(tmp_path, capsys, damage, message):
    folder = _copy_folder(tmp_path)
    cfg, weights = folder / "config.json", folder / "pytorch_model.bin"
    if damage == "bad_json":
        cfg.write_text('{"z_dim": 128,')
    elif damage == "wrong_type":
        cfg.write_text(json.dumps({**_config(folder), "channel_width": "4"}))
    elif damage == "missing_key":
        c = _config(folder)
        del c["n_stats"]
        cfg.write_text(json.dumps(c))
    elif damage == "bad_layers":
        cfg.write_text(json.dumps({**_config(folder), "layers": [[False, 16, 16], [True, "16", 16]]}))
    elif damage == "huge_config":
        cfg.write_text(json.dumps({**_config(folder), "channel_width": 4096, "z_dim": 4096}))
    elif damage == "truncated_bin":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "missing_bin":
        weights.unlink()
    elif damage in ("missing_tensor", "wrong_shape"):
        sd = torch.load(weights, weights_only=True)
        if damage == "missing_tensor":
            del sd["generator.bn.weight"]
        else:
            sd["generator.bn.bias"] = torch.zeros(7)
        _legacy_bin(weights, sd)
    elif damage == "huge_storage":
        _hostile_storage_bin(weights)
    elif damage == "code_global":
        weights.write_bytes(
            pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R."
        )
    elif damage == "not_torch":
        weights.write_bytes(b"hello, this is not a checkpoint at all")
    with pytest.raises(AtlasError, match=message) as info:
        load_generator(str(folder), device="cpu")
    text = str(info.value)
    assert "\n" not in text and str(folder) in text
    if damage == "code_global":
        assert isinstance(info.value, UnsafePickleError)
    else:
        assert isinstance(info.value, CheckpointError)
    assert main(["info", str(folder)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]


def test_config_checks_consistency():
    good = dict(
        output_dim=16, z_dim=8, class_embed_dim=8, channel_width=4, num_classes=3, eps=1e-4, n_stats=5,
        layers=[[True, 16, 8], [True, 8, 4], [False, 4, 2], [False, 2, 1]], attention_layer_position=9,
    )  # fmt: skip
    assert BigGANConfig.from_json(good, "c.json").resolution == 16
    for bad, msg in (
        ({"output_dim": 32}, "disagrees with the layers"),
        ({"layers": [[True, 16, 4], [True, 4, 2], [False, 2, 1]]}, "keep or halve"),
        ({"layers": [[True, 8, 4], [True, 4, 2], [False, 2, 1]]}, "16"),
        ({"layers": [[True, 16, 8], [True, 8, 4]]}, "last layer"),
        ({"eps": True}, "eps"),
        ({"num_classes": 0}, "num_classes"),
    ):
        with pytest.raises(AtlasError, match=msg):
            BigGANConfig.from_json({**good, **bad}, "c.json")


# ---- discovery with the class fixed --------------------------------------------------------
@needs_fixture
@pytest.mark.slow
@pytest.mark.parametrize("method, extra", CLASS_METHODS, ids=[m for m, _ in CLASS_METHODS])
def test_discover_on_a_class_records_it_and_renders_on_it(tmp_path, method, extra):
    dset, default = check_discover_on_a_class(FOLDER, "207", "1", tmp_path, method, extra)
    if method == "latent-recon":
        assert dset.metrics["steps"] == 10
    gen = load_generator(str(FOLDER), device="cpu")
    d = materialize(dset, 0)
    z = gen.seed_latents([0])
    with torch.no_grad():
        img = render_batch(gen, z, [((d, float(d.range[0])),)], classes=207)
    assert np.abs(img.numpy()[0] - default[0]).max() < 1e-5  # row (direction 0, seed 0), first shift


MEMORY_PROBE = r"""
import gc, json, os, sys, torch
torch.set_num_threads(1)
import scipy.stats, engine.models  # imports first: only the load itself is measured
from engine.models import load_generator

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

gc.collect()
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
before = status("VmRSS:")
gen = load_generator(sys.argv[1], device="cpu")
tensors = sum(t.numel() * t.element_size() for t in gen.state_dict().values())
print(json.dumps({"peak": status("VmHWM:") - before, "tensors": tensors}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_loading_holds_at_most_twice_the_tensors(tmp_path):
    """A 20 MB legacy checkpoint: the peak resident growth while loading stays under 2x its tensors."""
    import subprocess
    import sys

    cfg = dict(
        output_dim=32, z_dim=128, class_embed_dim=128, channel_width=32, num_classes=1000, eps=1e-4, n_stats=51,
        layers=[[False, 16, 16], [True, 16, 8], [True, 8, 4], [True, 4, 2], [False, 2, 1]], attention_layer_position=2,
    )  # fmt: skip
    config = BigGANConfig.from_json(cfg, "memory test")
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(v, generator=g) * 0.05 for k, v in config.state_shapes().items()}
    for k in sd:
        if k.endswith("running_vars"):
            sd[k] = sd[k].abs() + 0.5
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))
    _legacy_bin(folder / "pytorch_model.bin", sd)
    del sd
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(folder)], capture_output=True, text=True, cwd=root, check=True
    )
    m = json.loads(res.stdout.strip().splitlines()[-1])
    assert m["tensors"] > 15 * 2**20
    assert m["peak"] < 2 * m["tensors"], m
