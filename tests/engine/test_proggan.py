"""ProGAN in the netdissect (GANSpace) and GANLatentDiscovery layouts against the reference fixtures."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from cli.main import main
from engine.checkpoints.proggan import load_proggan, netdissect_scale
from engine.directions import DirectionSet
from engine.discovery.registry import get_method
from engine.jobs import run_job
from engine.models import load_generator
from engine.models.base import EARLY_ACTIVATION, FIRST_LATENT_LAYER, SHARED_PREFIX, ParamEdit
from engine.models.proggan import pixel_norm
from tests.conftest import require_fixtures
from tests.engine.cli_runs import discover

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "proggan"
ND = FIXTURES / "proggan_netdissect_res32.pth"
GLD = FIXTURES / "proggan_gld_res32.pth"
TOL = 1e-4  # the fixtures' README: other valid evaluation orders differ by up to 4.3e-6


@pytest.fixture(autouse=True, scope="module")
def proggan_fixtures():
    """The ProGAN fixtures: skip without them, fail under CI (see tests/conftest.py)."""
    return require_fixtures(FIXTURES)


def expected(path: Path) -> dict[str, np.ndarray]:
    return dict(np.load(path.with_name(path.stem + "_expected.npz")))


@pytest.mark.parametrize("path", [ND, GLD], ids=["netdissect", "gld"])
def test_render_cli_reproduces_the_reference_images(path, tmp_path):
    e = expected(path)
    np.save(tmp_path / "z.npy", e["z"])
    out = tmp_path / "x.npy"
    args = ["render", "--model", str(path), "--latents", str(tmp_path / "z.npy"), "--noise", "const"]
    assert main([*args, "--threads", "1", "--out", str(out)]) == 0
    img = np.load(out)
    assert img.shape == e["img"].shape == (4, 3, 32, 32)
    assert np.abs(img - e["img"]).max() < TOL


def test_netdissect_activations_and_zdataset_latents():
    gen = load_generator(str(ND), device="cpu")
    e = expected(ND)
    z = torch.from_numpy(e["z"])
    assert torch.equal(gen.seed_latents([0, 1, 2, 3]), z)  # seed s = RandomState(s).randn, as the fixtures
    with torch.no_grad():
        for k in range(1, 9):
            act = gen.early_activation(z, k).numpy()
            assert np.abs(act - e[f"act_layer{k}"]).max() < TOL, f"layer{k}"
        # GANSpace's sampler gives [B, 512, 1, 1] latents, which the model takes as they are
        img = gen.synthesis(torch.from_numpy(e["z_zdataset"]))
    assert np.abs(img.numpy() - e["img_zdataset"]).max() < TOL


def test_layout_scales_and_architecture_are_inferred():
    nd, gld = load_proggan(ND), load_proggan(GLD)
    manifest = json.loads((FIXTURES / "manifest.json").read_text())["fixtures"]
    rows = manifest["proggan_gld_res32"]["scales"]
    assert nd.family == gld.family == "proggan"
    assert "netdissect" in nd.format and "GANLatentDiscovery" in gld.format
    assert np.allclose(nd.scales, [r["netdissect_scale"] for r in rows], rtol=1e-12)
    assert np.allclose(gld.scales, [r["gld_scale"] for r in rows], rtol=1e-7)
    assert netdissect_scale(512, 4, output=False) == 0.015625
    for g in (nd, gld):
        assert (g.z_dim, g.resolution, g.config.widths) == (512, 32, (32, 32, 24, 16))
        assert g.supports(FIRST_LATENT_LAYER) and g.supports(EARLY_ACTIVATION) and g.supports(SHARED_PREFIX)
        assert [i.name for i in g.editable_layers()] == [*(f"layer{k}" for k in range(1, 9)), "output"]
    # both files hold the same network: the folded weights agree
    for a, b in zip(nd.parameters(), gld.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _save_legacy(obj, path: Path) -> str:
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    return str(path)


def test_ignoring_gld_scales_is_the_known_trap(tmp_path):
    """Without its wscale.scale entries the GLD file is read with netdissect's constants: wrong images.

    This is what netdissect's own from_pth_file does to a GLD file; the loader must not.
    """
    sd = torch.load(GLD, weights_only=True)
    dropped = OrderedDict((k, v) for k, v in sd.items() if not k.endswith("wscale.scale"))
    path = _save_legacy(dropped, tmp_path / "gld_without_scales.pth")
    e = expected(GLD)
    z = torch.from_numpy(e["z"])
    with torch.no_grad():
        wrong = load_generator(path, device="cpu")(z).numpy()
        right = load_generator(str(GLD), device="cpu")(z).numpy()
    assert "old features.N" in load_proggan(path).format
    assert np.abs(right - e["img"]).max() < TOL
    assert np.abs(wrong - e["img"]).max() > 0.3  # README: 0.375


def test_zip_container_and_state_dict_wrapper(tmp_path):
    sd = torch.load(ND, weights_only=True)
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": sd}, path)  # zip container, netdissect's optional wrapper
    e = expected(ND)
    with torch.no_grad():
        img = load_generator(str(path), device="cpu")(torch.from_numpy(e["z"])).numpy()
    assert np.abs(img - e["img"]).max() < TOL


def test_sefa_factorises_the_flipped_first_kernel_as_sefa_does():
    """SeFa's code for PGGAN: weight.flip(2, 3).permute(1, 0, 2, 3).flatten(1), columns normalised."""
    gen = load_generator(str(ND), device="cpu")
    W = torch.load(ND, weights_only=True)["layer1.conv.weight"].double().numpy()  # raw, unscaled
    A = W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(W.shape[1], -1)
    A = A / np.linalg.norm(A, axis=0, keepdims=True)
    vals, vecs = np.linalg.eigh(A @ A.T)
    vals, vecs = vals[::-1], vecs[:, ::-1]
    spec = get_method("sefa")
    dset = run_job(spec.run(gen, spec.make_params(k=5)))
    assert dset.directions[0].space == "z"
    assert np.allclose([d.score for d in dset.directions], vals[:5], rtol=1e-6)
    for d, v in zip(dset.directions, vecs.T, strict=False):
        assert abs(float(np.dot(d.vector.double().numpy(), v))) > 1 - 1e-5
    # the matrix is layer1's pre-activation map of pixelnorm(z)
    e = expected(ND)
    z = torch.from_numpy(e["z"]).double()
    first = gen.first_latent_layer()
    pre = (pixel_norm(z[:, :, None, None])[:, :, 0, 0] @ first.matrix.T).reshape(4, 32, 4, 4)
    act = torch.nn.functional.leaky_relu(pre + gen.layer1.bias.detach().double().view(1, -1, 1, 1), 0.2)
    assert np.abs(act.numpy() - e["act_layer1"]).max() < TOL


def test_param_edits_equal_patched_weights_and_share_the_prefix():
    gen = load_generator(str(GLD), device="cpu")
    z = gen.seed_latents([0, 1, 2])
    g = torch.Generator().manual_seed(0)
    for layer in ("layer1", "layer5", "output"):
        W = gen.layer_weight(layer)
        delta = torch.randn(W.shape, generator=g) * W.norm() / W.numel() ** 0.5
        edit = ParamEdit(layer, delta[None], torch.zeros(3, dtype=torch.long), torch.tensor([0.0, 0.3, -0.5]))
        with torch.no_grad():
            got = gen.synthesis(z, edit=edit)
            # shared-prefix form: one distinct code, three (t) rows continuing from it
            src = ParamEdit(layer, delta[None], edit.index, edit.t, source=torch.zeros(3, dtype=torch.long))
            shared = gen.synthesis(z[:1], edit=src)
            for b, t in enumerate([0.0, 0.3, -0.5]):
                W.add_(t * delta)
                want = gen.synthesis(z[b : b + 1])
                want0 = gen.synthesis(z[:1])
                W.sub_(t * delta)
                torch.testing.assert_close(got[b : b + 1], want, atol=2e-5, rtol=0)
                torch.testing.assert_close(shared[b : b + 1], want0, atol=2e-5, rtol=0)


def check_methods_run_and_sets_render(model: str, tmp_path) -> None:
    """sefa, ganspace, latent-recon (50 steps) and param-svd through ``main.py discover``; each set
    renders through ``main.py render --directions`` and its largest shift changes the image."""
    runs = {
        "sefa": ["--k", "4"],
        "ganspace": ["--k", "4", "--set", "n_samples=400", "--set", "batch_size=100"],
        "latent-recon": ["--k", "4", "--steps", "50", "--set", "batch_size=8", "--set", "rca_samples=32"],
        "param-svd": ["--k", "4"],
    }
    for method, extra in runs.items():
        out = tmp_path / f"{method}.json"
        assert discover(model, tmp_path, "--method", method, *extra, "--out", str(out)) == 0, method
        dset = DirectionSet.load(out)
        assert len(dset.directions) == 4 and dset.method == method
        img = tmp_path / f"{method}.npy"
        args = ["render", "--model", model, "--threads", "1", "--directions", str(out), "--index", "0-1"]
        assert main([*args, "--seeds", "0", "--shifts", "-1:1:3", "--out", str(img)]) == 0, method
        x = np.load(img)  # rows: direction x seed, columns: the shifts
        assert x.shape[0] == 6 and np.isfinite(x).all()
        assert np.abs(x[0] - x[1]).max() > 1e-3 and np.abs(x[2] - x[1]).max() > 1e-3, method
    assert DirectionSet.load(tmp_path / "latent-recon.json").metrics["steps"] == 50


def test_discover_methods_run_on_proggan(tmp_path):
    check_methods_run_and_sets_render(str(GLD), tmp_path)
    assert DirectionSet.load(tmp_path / "ganspace.json").metrics["pca_space"] == "the output of layer2"


def test_info_prints_family_spaces_and_layers(capsys):
    assert main(["info", str(ND)]) == 0
    out = capsys.readouterr().out
    assert "proggan" in out and "netdissect" in out and "layer1" in out and "output" in out
    assert main(["info", str(GLD), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["family"] == "proggan" and d["spaces"] == ["z"] and d["num_classes"] == 0
    assert [layer["name"] for layer in d["editable_layers"]][:2] == ["layer1", "layer2"]
