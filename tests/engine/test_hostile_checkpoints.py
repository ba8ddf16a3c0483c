"""Tiny files that would take gigabytes, and hand-made checkpoints of the wrong types (issue 11).

Each hostile file is refused with a one-line ``CheckpointError`` before anything large is
allocated (times and peak memory: ``bench/bench_hostile_files.py``). Declared sizes here are kept
moderate, so that a regression costs the test machine hundreds of MB, not gigabytes.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import pytest
import torch

from engine.checkpoints import nvidia_pkl, torchfile
from engine.errors import CheckpointError
from engine.models import load_generator
from tests import hostile_files as hostile
from tests.hostile_files import NvStorage, NvTensor, StorageRef, TensorRef, rosinality_state, torch_zip

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
needs_fixtures = pytest.mark.skipif(
    not (FIXTURES / "manifest.json").is_file(), reason=f"reference fixtures not found at {FIXTURES}"
)


def _refused(path, match: str) -> str:
    with pytest.raises(CheckpointError, match=match) as info:
        load_generator(str(path), device="cpu")
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    return msg


def _save_rosinality(path, sd=None, **extra) -> Path:
    torch.save({"g_ema": rosinality_state() if sd is None else sd, "latent_avg": torch.zeros(8), **extra}, path)
    return Path(path)


# ---- tiny files that take gigabytes ---------------------------------------------------------------


def test_a_valid_tiny_rosinality_file_loads(tmp_path):
    gen = load_generator(str(_save_rosinality(tmp_path / "ok.pt")), device="cpu")
    assert gen.resolution == 8 and gen.z_dim == 8


def test_stride0_rosinality_tensors_are_refused(tmp_path):
    """Every tensor a view of one float with a full-size shape: torch's weights-only loader accepts it."""
    path = hostile.stride0_rosinality(tmp_path / "stride0.pt", resolution=32, style_dim=256, channels=256)
    assert path.stat().st_size < 20_000
    _refused(path, "stride 0")


def test_one_stride0_weight_among_real_ones_is_refused(tmp_path):
    sd = rosinality_state()
    sd["convs.1.conv.weight"] = torch.zeros(1).expand(1, 4, 4, 3, 3)
    _refused(_save_rosinality(tmp_path / "one.pt", sd), r"convs\.1\.conv\.weight .*stride 0")


def test_overlapping_strides_beyond_the_storage_are_refused(tmp_path):
    """A 1000 x 1000 tensor with strides (1, 1) over a 2,000-element storage."""
    ref = StorageRef("0", 2000)
    obj = {"g_ema": {"style.1.weight": TensorRef(ref, (1000, 1000), (1, 1)), "input.input": TensorRef(ref, (1,))}}
    path = torch_zip(tmp_path / "overlap.pt", obj, {"0": 8000})
    _refused(path, "needs 4,000,000 bytes but its storage has 8,000")


def test_many_tensors_over_one_storage_are_refused(tmp_path):
    """Each tensor fits the storage, but together they re-read it 64 times: more bytes than the file."""
    ref = StorageRef("0", 4096)
    sd = {f"style.{i}.weight": TensorRef(ref, (64, 64)) for i in range(1, 65)}
    sd["input.input"] = TensorRef(ref, (1, 64, 4, 4))
    path = torch_zip(tmp_path / "shared.pt", {"g_ema": sd}, {"0": 4096 * 4})
    _refused(path, "tensors declare .* bytes but the file has")


def test_an_architecture_larger_than_the_file_is_refused(tmp_path):
    """Real tensors, but input.input declares 2048 channels: the 4x4 block alone would need 37 M weights."""
    sd = rosinality_state()
    sd["input.input"] = torch.randn(1, 2048, 1, 1)
    _refused(_save_rosinality(tmp_path / "wide.pt", sd), "has [0-9,]+ weights, but the file holds only")


def test_memo_bomb_pickle_is_refused_before_unpickling(tmp_path):
    path = hostile.memo_bomb_pickle(tmp_path / "memo.pkl")
    assert path.stat().st_size == 9
    _refused(path, "memo index 225000000 out of sequence")


@needs_fixtures
def test_a_one_bit_flip_of_a_real_nvidia_snapshot_is_refused(tmp_path):
    """The flip makes an unused memo index 2**27 larger: the C unpickler would allocate 2 GB, then load."""
    path = hostile.flip_memo_index(FIXTURES / "nvada_orig_res16.pkl", tmp_path / "flipped.pkl")
    _refused(path, "memo index .* out of sequence")


@pytest.mark.parametrize(
    "name, keys",
    [
        ("rosinality.pt", ("g_ema", "style.1.weight", "input.input")),
        ("proggan.pth", ("layer1.conv.weight", "layer1.wscale.b")),
        ("pytorch_model.bin", ("embeddings.weight",)),
    ],
)
def test_a_memo_bomb_in_a_legacy_torch_stream_is_refused(tmp_path, name, keys):
    """Every reader of pre-1.6 torch files (rosinality, ProGAN, BigGAN .bin) scans before unpickling."""
    path = hostile.legacy_memo_bomb(tmp_path / name, keys)
    if name.endswith(".bin"):
        config = FIXTURES / "biggan" / "biggan_res32" / "config.json"
        if not config.is_file():
            pytest.skip(f"{config} is not present")
        (tmp_path / "config.json").write_bytes(config.read_bytes())
    assert path.stat().st_size < 300
    with pytest.raises(CheckpointError) as info:
        load_generator(str(path), device="cpu")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_zip_bomb_dcgan_is_refused_unread(tmp_path):
    path = hostile.zip_bomb_dcgan(tmp_path / "bomb.pt", ngf=128)  # 45 MB of zeros in about 50 KB
    assert path.stat().st_size < 100_000
    _refused(path, "is compressed, which torch.save never does")


def test_slow_probe_file_is_refused_without_scanning(tmp_path):
    """62 KB whose deflated data.pkl holds 64 MB of opcodes: each format probe used to walk them all."""
    path = hostile.slow_probe_pt(tmp_path / "slow.pt")
    assert path.stat().st_size < 70_000
    _refused(path, "compressed")


def test_every_probe_shares_one_look_at_the_file(tmp_path, monkeypatch):
    calls = []
    real = torchfile.scan_pickle
    monkeypatch.setattr(torchfile, "scan_pickle", lambda *a, **k: calls.append(1) or real(*a, **k))
    path = hostile.torch_zip(tmp_path / "other.pt", {"unrelated": [1, 2, 3]}, {})
    with pytest.raises(CheckpointError, match="not recognised"):
        load_generator(str(path), device="cpu")  # every .pt format probes it
    assert len(calls) == 1


def test_pickles_over_the_opcode_budgets_are_refused(tmp_path):
    _refused(hostile.many_ops_pickle(tmp_path / "ops.pkl", 600_000), "more than 500,000 pickle operations")
    _refused(hostile.many_ops_torch_zip(tmp_path / "ops.pt", 250_000), "more than 200,000 pickle operations")


def test_a_legacy_stream_declaring_a_huge_storage_is_refused(tmp_path):
    path = hostile.huge_legacy_storage(tmp_path / "legacy.pt")
    with pytest.raises(CheckpointError):
        load_generator(str(path), device="cpu")


@needs_fixtures
def test_a_legacy_torch_save_stream_loads_like_the_archive(tmp_path):
    """The same rosinality checkpoint as a zip archive and as a pre-1.6 stream gives the same image."""
    ckpt = torch.load(FIXTURES / "rosinality_s32_narrow.pt", weights_only=True)
    legacy = tmp_path / "legacy.pt"
    torch.save(ckpt, legacy, _use_new_zipfile_serialization=False)
    assert torchfile.inspect_torch_file(legacy).kind == "legacy"
    a = load_generator(str(FIXTURES / "rosinality_s32_narrow.pt"), device="cpu")
    b = load_generator(str(legacy), device="cpu")
    z = a.seed_latents([3])
    with torch.no_grad():
        assert torch.equal(a.decode(z, "z"), b.decode(z, "z"))


# ---- NVIDIA pickles: storages and tensors --------------------------------------------------------


def test_nvidia_storage_payload_with_a_lying_size_is_refused(tmp_path):
    values = torch.arange(16.0)
    storage = NvStorage(values)
    raw = (16).to_bytes(8, "little") + values.numpy().tobytes()
    assert storage.payload.endswith(raw)
    storage.payload = storage.payload[: -len(raw)] + (1 << 30).to_bytes(8, "little") + raw[8:]
    path = tmp_path / "lie.pkl"
    path.write_bytes(pickle.dumps({"G_ema": NvTensor(storage, (16,), (1,))}, protocol=4))
    _refused(path, "element count differs from its header")


def test_nvidia_views_rereading_one_storage_are_refused(tmp_path):
    storage = NvStorage(torch.zeros(4096))
    views = [NvTensor(storage, (4096,), (1,)) for _ in range(200)]  # 3.2 MB of tensors from a 20 KB file
    path = tmp_path / "views.pkl"
    path.write_bytes(pickle.dumps({"G_ema": views}, protocol=4))
    assert path.stat().st_size < 40_000
    _refused(path, "more bytes than the file has")


def test_nvidia_stride0_tensor_is_refused(tmp_path):
    path = tmp_path / "expand.pkl"
    path.write_bytes(pickle.dumps({"G_ema": NvTensor(NvStorage(torch.zeros(1)), (10_000, 10_000), (0, 0))}, protocol=4))
    _refused(path, "more elements than its storage")


def test_nvidia_storage_payload_naming_a_function_is_refused(tmp_path):
    storage = NvStorage(torch.zeros(4))
    storage.payload = storage.payload.replace(b"ctorch\nFloatStorage\n", b"cposix\nsystem\n")
    path = tmp_path / "fn.pkl"
    path.write_bytes(pickle.dumps({"G_ema": NvTensor(storage, (4,), (1,))}, protocol=4))
    _refused(path, "storage payload references 'posix.system'")


# ---- converters: types checked, one line naming the file --------------------------------------------


def test_rosinality_args_size_as_a_string(tmp_path):
    path = _save_rosinality(tmp_path / "a.pt", args=argparse.Namespace(size="abc"))
    _refused(path, "args.size is 'abc'")


def test_rosinality_latent_avg_as_a_string(tmp_path):
    sd = rosinality_state()
    torch.save({"g_ema": sd, "latent_avg": "abc"}, tmp_path / "b.pt")
    _refused(tmp_path / "b.pt", "latent_avg is a str, not a tensor")


def test_rosinality_latent_avg_of_the_wrong_size(tmp_path):
    torch.save({"g_ema": rosinality_state(), "latent_avg": torch.zeros(3)}, tmp_path / "c.pt")
    _refused(tmp_path / "c.pt", "latent_avg of shape")


def test_rosinality_zero_dimensional_input(tmp_path):
    sd = rosinality_state()
    sd["input.input"] = torch.tensor(1.0)
    _refused(_save_rosinality(tmp_path / "d.pt", sd), r"input\.input is a 0-d float32 tensor")


def test_rosinality_style_weight_as_a_string(tmp_path):
    sd = rosinality_state()
    sd["style.1.weight"] = "abc"
    _refused(_save_rosinality(tmp_path / "e.pt", sd), r"style\.1\.weight is a str, not a tensor")


def test_rosinality_integer_weights(tmp_path):
    sd = rosinality_state()
    sd["conv1.conv.weight"] = torch.ones(1, 4, 4, 3, 3, dtype=torch.int64)
    _refused(_save_rosinality(tmp_path / "f.pt", sd), "int64 tensor")


def _dcgan_state():
    from tests.engine.tiny_generators import tiny_dcgan

    return dict(tiny_dcgan().state_dict())


def test_dcgan_state_dict_with_non_tensor_values(tmp_path):
    sd = _dcgan_state()
    sd["main.1.weight"] = "abc"
    torch.save({"netG_state_dict": sd}, tmp_path / "g.pt")
    _refused(tmp_path / "g.pt", "expected names of tensors")


def test_dcgan_state_dict_with_one_conv(tmp_path):
    torch.save({"netG_state_dict": {"main.0.weight": torch.randn(8, 3, 4, 4)}}, tmp_path / "h.pt")
    _refused(tmp_path / "h.pt", "this one 1")


def test_dcgan_widths_that_do_not_halve(tmp_path):
    sd = _dcgan_state()
    sd["main.0.weight"] = torch.randn(8, 7, 4, 4)  # 7 is not ngf * 2**(n_up - 1)
    torch.save({"netG_state_dict": sd}, tmp_path / "i.pt")
    _refused(tmp_path / "i.pt", "describe no DCGAN")


@needs_fixtures
@pytest.mark.parametrize(
    "where, attr, value, match",
    [
        ("G", "c_dim", [1], r"G_ema\.c_dim is list \[1\], not a small count"),
        ("G", "img_resolution", "abc", r"img_resolution is 'abc'"),
        ("G", "img_channels", 3.5, r"img_channels is 3\.5"),
        ("mapping", "num_layers", None, "mapping has no layers"),
        ("mapping.fc0", "bias_gain", "x", r"fc0\.bias_gain is 'x', not a finite number"),
        ("mapping.fc0", "weight_gain", float("nan"), "not a finite number"),
        ("mapping.fc1", "activation", {"a": 1}, r"fc1\.activation is \{'a': 1\}, not a name"),
        ("synthesis.b4", "architecture", ["skip"], r"b4\.architecture is \['skip'\], not a name"),
        ("synthesis.b8", "use_fp16", torch.ones(2), r"use_fp16 is .* not true or false"),
        ("synthesis.b8.conv0", "conv_clamp", {}, r"conv0\.conv_clamp is \{\}, not a finite number"),
        ("synthesis.b8.conv1", "use_noise", "yes", "not true or false"),
    ],
)
def test_nvidia_record_attributes_are_type_checked(where, attr, value, match):
    """int(), float() and set.add() on record attributes: each bad value is a one-line error."""
    path = FIXTURES / "nvada_orig_res16.pkl"
    G = nvidia_pkl.read_snapshot(path)["G_ema"]
    rec = G
    for part in where.split(".") if where != "G" else []:
        rec = rec.module(part)
    rec.state[attr] = value
    with pytest.raises(CheckpointError, match=match) as info:
        nvidia_pkl.convert_generator(G, path)
    assert str(path) in str(info.value)


@needs_fixtures
def test_nvidia_weight_of_the_wrong_rank_and_type(tmp_path):
    path = FIXTURES / "nvada_orig_res16.pkl"
    G = nvidia_pkl.read_snapshot(path)["G_ema"]
    G.module("mapping").module("fc0").state["_parameters"]["weight"] = torch.zeros(4)
    with pytest.raises(CheckpointError, match=r"mapping\.fc0\.weight is a 1-d float32 tensor"):
        nvidia_pkl.convert_generator(G, path)
    G = nvidia_pkl.read_snapshot(path)["G_ema"]
    G.module("synthesis").module("b4").state["_parameters"] = torch.zeros(3)  # not a table
    with pytest.raises(CheckpointError, match="has no tensor 'const'"):
        nvidia_pkl.convert_generator(G, path)


def test_info_answers_every_hostile_file_in_one_line(tmp_path, capsys):
    from cli.main import main

    files = [
        hostile.stride0_rosinality(tmp_path / "s0.pt", resolution=16, style_dim=64, channels=64),
        hostile.memo_bomb_pickle(tmp_path / "memo.pkl"),
        hostile.zip_bomb_dcgan(tmp_path / "bomb.pt", ngf=16),
        hostile.legacy_memo_bomb(tmp_path / "legacy.pt", ("g_ema", "style.1.weight", "input.input")),
        hostile.many_ops_torch_zip(tmp_path / "ops.pt", 250_000),
    ]
    for path in files:
        assert main(["info", str(path)]) == 1  # a file problem (2 is for a bad command line)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and path.name in err[0], err
