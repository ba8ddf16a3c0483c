"""Damaged and hostile checkpoint files: clear one-line errors, and no code from a file ever runs."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from cli.main import main
from engine.errors import CheckpointError, UnsafePickleError
from engine.models import load_generator

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
needs_fixtures = pytest.mark.usefixtures("shared_fixtures")


@needs_fixtures
def test_truncated_rosinality_pt_is_a_clear_error(tmp_path, capsys):
    data = (FIXTURES / "rosinality_s32_narrow.pt").read_bytes()
    bad = tmp_path / "half.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="half.pt: not a readable rosinality StyleGAN2 checkpoint"):
        load_generator(str(bad), device="cpu")
    assert main(["info", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "half.pt" in err[0]


def test_garbage_pt_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "noise.pt"
    bad.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(CheckpointError, match="noise.pt: not recognised"):
        load_generator(str(bad), device="cpu")
    assert main(["info", str(bad)]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_pt_with_g_ema_of_the_wrong_kind(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(8, 8), "input.input": torch.zeros(1, 8, 4, 4)}}, path)
    with pytest.raises(CheckpointError, match="odd.pt: g_ema is not a rosinality StyleGAN2 generator"):
        load_generator(str(path), device="cpu")


def test_pt_with_code_in_it_is_refused(tmp_path):
    """A .pt whose pickle would call a function is refused by weights_only loading."""
    sentinel = tmp_path / "SENTINEL"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (sentinel,))

    path = tmp_path / "evil.pt"
    torch.save(
        {
            "g_ema": {"style.1.weight": torch.zeros(2, 2), "input.input": torch.zeros(1)},
            "x": Evil(),
            "args": argparse.Namespace(size=4),
        },
        path,
    )
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_generator(str(path), device="cpu")
    assert not sentinel.exists()


# ---- NVIDIA pickles ----------------------------------------------------------------------------


class _Call:
    """Pickles as a call of ``func(*args)``: what a hostile file would contain."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _hostile_payloads(sentinel: Path):
    import builtins
    import os
    import subprocess

    yield "os.system" if os.name != "posix" else "posix.system", _Call(os.system, f"touch {sentinel}")
    yield "builtins.eval", _Call(builtins.eval, f"open({str(sentinel)!r}, 'w').write('x')")
    yield "builtins.exec", _Call(builtins.exec, f"open({str(sentinel)!r}, 'w').write('x')")
    yield "subprocess.Popen", _Call(subprocess.Popen, ["touch", str(sentinel)])
    yield "open", _Call(open, str(sentinel), "w")


@pytest.mark.parametrize("protocol", [2, 4])
def test_hostile_pickles_are_refused_before_anything_runs(tmp_path, protocol, capsys):
    import pickle

    sentinel = tmp_path / "SENTINEL"
    for i, (global_name, payload) in enumerate(_hostile_payloads(sentinel)):
        path = tmp_path / f"evil{i}.pkl"
        # top level, and hidden inside an otherwise plausible snapshot
        for j, obj in enumerate(
            [
                payload,
                {
                    "training_set_kwargs": {"resolution": 8},
                    "G": None,
                    "G_ema": {"state": [1, 2, payload]},
                    "augment_pipe": None,
                },
            ]
        ):
            path.write_bytes(pickle.dumps(obj, protocol=protocol))
            with pytest.raises(UnsafePickleError) as info:
                load_generator(str(path), device="cpu")
            msg = str(info.value)
            assert str(path) in msg and global_name in msg, msg
            assert not sentinel.exists(), (global_name, j)
    assert main(["info", str(tmp_path / "evil0.pkl")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused" in err[0]
    assert not sentinel.exists()


def test_tensorflow_pickle_gets_a_specific_refusal(tmp_path):
    import pickle

    body = b"\x80\x02cdnnlib.tflib.network\nNetwork\nq\x00)\x81q\x01."
    path = tmp_path / "tf.pkl"
    path.write_bytes(body)
    assert pickle.PROTO  # the file above is a minimal protocol-2 pickle: GLOBAL, EMPTY_TUPLE, NEWOBJ
    with pytest.raises(UnsafePickleError, match="TensorFlow"):
        load_generator(str(path), device="cpu")


@needs_fixtures
def test_module_src_is_never_executed(tmp_path):
    """Replace the networks.py source inside a real snapshot by code that would create a file."""
    from engine.checkpoints.nvidia_pkl import load_nvidia_pkl
    from tests.hostile_files import source_replaced_pkl

    sentinel, path = tmp_path / "SENTINEL", tmp_path / "src.pkl"
    assert source_replaced_pkl(FIXTURES / "nvada_orig_res16.pkl", path, sentinel) >= 1
    g = load_nvidia_pkl(path)
    assert not sentinel.exists()
    # and the model is still the same network
    e = np.load(FIXTURES / "nvada_orig_res16_expected.npz")
    with torch.no_grad():
        img = g.decode(torch.from_numpy(e["z"]))
    assert np.abs(img.numpy() - e["img_psi1"]).max() < 1e-4


@needs_fixtures
def test_truncated_and_garbage_pkl_are_clear_errors(tmp_path, capsys):
    data = (FIXTURES / "nvada_skip_res32.pkl").read_bytes()
    for name, body in [
        ("cut.pkl", data[: len(data) // 3]),
        ("tiny.pkl", data[:100]),
        ("junk.pkl", b"\x80\x04" + bytes(range(256)) * 10),
        ("text.pkl", b"not a pickle at all"),
    ]:
        path = tmp_path / name
        path.write_bytes(body)
        with pytest.raises(CheckpointError, match=name) as info:
            load_generator(str(path), device="cpu")
        assert not isinstance(info.value, UnsafePickleError)
        assert main(["info", str(path)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and name in err[0]


def test_nested_storage_payload_must_be_plain_tensors(tmp_path):
    """A storage payload (a nested torch.save stream) carrying code is refused by weights_only loading."""
    import io
    import pickle
    import types

    sentinel = tmp_path / "SENTINEL"
    inner = io.BytesIO()
    torch.save(_Call(Path.touch, sentinel), inner, _use_new_zipfile_serialization=False)
    mod = types.ModuleType("torch.storage")

    def _load_from_bytes(b):  # pragma: no cover - only its name is pickled
        raise AssertionError

    _load_from_bytes.__module__ = "torch.storage"
    mod._load_from_bytes = _load_from_bytes

    class Storage:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (inner.getvalue(),))

    path = tmp_path / "nested.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Storage()}, protocol=4))
    with pytest.raises(CheckpointError, match="nested.pkl"):
        load_generator(str(path), device="cpu")
    assert not sentinel.exists()


def test_inert_stand_ins_reject_what_is_not_plain_data():
    from engine.checkpoints.nvidia_pkl import BadPickleData, _DType, _np_scalar, _rebuild_tensor_v2
    from engine.checkpoints.torchfile import BytesSource, Storage

    for spec in ("O", "V8", "U3", "f8,i4", "(2,)f8"):
        with pytest.raises(BadPickleData):
            _DType(spec)
    dt = _DType("f8")
    dt.__setstate__((3, "<", None, None, None, -1, -1, 0))
    assert _np_scalar(dt, np.float64(0.25).tobytes()) == 0.25
    with pytest.raises(BadPickleData):
        _np_scalar(dt, b"\x00" * 4)
    flat = Storage("0", torch.float32, 6)
    flat.locate(BytesSource(torch.arange(6.0).numpy().tobytes(), Path("x.pkl")), 0)
    assert torch.equal(_rebuild_tensor_v2(flat, 1, (2, 2), (2, 1)).read(), torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    for args in [(0, (3, 3), (3, 1)), (-1, (2,), (1,)), (5, (2,), (1,)), (0, (2,), (-1,))]:
        with pytest.raises(BadPickleData):
            _rebuild_tensor_v2(flat, *args)
    with pytest.raises(BadPickleData):
        _rebuild_tensor_v2(torch.arange(6.0), 0, (2,), (1,))


def test_pickle_cannot_tamper_with_the_allowed_stand_ins(tmp_path):
    """BUILD on an allowed global (e.g. new __defaults__ for a loader function) is refused."""
    import engine.checkpoints.nvidia_pkl as nv

    before = {
        k: (getattr(v, "_fn", v), getattr(getattr(v, "_fn", v), "__defaults__", None)) for k, v in nv.ALLOWED.items()
    }
    bodies = [
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__K\x01\x85s\x86b.",
        b"\x80\x02cdnnlib.util\nEasyDict\nN}X\x08\x00\x00\x00__init__K\x01s\x86b.",
        b"\x80\x02cnumpy\ndtype\nN}X\x0c\x00\x00\x00__setstate__K\x01s\x86b.",
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}X\x01\x00\x00\x00aK\x01sb.",
    ]
    for i, body in enumerate(bodies):
        path = tmp_path / f"tamper{i}.pkl"
        path.write_bytes(body)
        with pytest.raises(CheckpointError, match=f"tamper{i}.pkl"):
            load_generator(str(path), device="cpu")
    after = {
        k: (getattr(v, "_fn", v), getattr(getattr(v, "_fn", v), "__defaults__", None)) for k, v in nv.ALLOWED.items()
    }
    assert before == after
    assert "__init__" not in nv.ALLOWED[("dnnlib.util", "EasyDict")].__dict__
