"""Every torch file a user can hand the engine goes through the one checked reader (torchfile).

Training checkpoints, job checkpoints, LPIPS backbone files, factor-regressor weights and the FID
Inception weights: each loads what ``torch.save`` wrote (both containers), and a damaged,
hostile or bomb file is one ``AtlasError`` line naming it, with no code from it run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from engine.errors import AtlasError
from tests.hostile_files import legacy_memo_bomb, zip_bomb_dcgan


class _Call:
    """Pickles as a call of ``func(*args)``: what a hostile file would contain."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _training(path: Path) -> None:
    from engine.training.checkpoint import safe_load

    safe_load(path, "training checkpoint")


def _job(path: Path) -> None:
    from engine.discovery.checkpoint import load_checkpoint

    load_checkpoint(path)


def _regressor(path: Path) -> None:
    from engine.data.regressor import load_regressor

    load_regressor(path)


def _backbone(path: Path) -> None:
    from engine.distances import backbone, load_distance

    b = backbone("alex")
    b.folder.mkdir(parents=True, exist_ok=True)
    b.path.write_bytes(path.read_bytes())
    try:
        load_distance("lpips-alex")
    except AtlasError as exc:  # the message names the hub file: name the case's file instead
        raise AtlasError(str(exc).replace(str(b.path), str(path))) from None


def _inception(path: Path) -> None:
    from engine.analysis import realism

    target = realism.fid_weights_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(path.read_bytes())
    try:
        realism.inception_features()
    except AtlasError as exc:
        raise AtlasError(str(exc).replace(str(target), str(path))) from None


READERS = {"training": _training, "job": _job, "regressor": _regressor, "backbone": _backbone, "inception": _inception}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A private torch hub folder (backbone and Inception files are planted there)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch" / "hub"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def _damaged(kind: str, path: Path, sentinel: Path) -> Path:
    if kind == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "truncated":
        torch.save({"format": "x", "w": torch.randn(4096)}, path)
        path.write_bytes(path.read_bytes()[:9000])
    elif kind == "truncated-legacy":
        torch.save({"format": "x", "w": torch.randn(4096)}, path, _use_new_zipfile_serialization=False)
        path.write_bytes(path.read_bytes()[:9000])
    elif kind == "code":
        torch.save({"format": "x", "evil": _Call(os.system, f"touch {sentinel}")}, path)
    elif kind == "memo-bomb":
        legacy_memo_bomb(path, ("format", "state"))
    elif kind == "zip-bomb":
        zip_bomb_dcgan(path, ngf=16)
    return path


@pytest.mark.parametrize("kind", ["garbage", "truncated", "truncated-legacy", "code", "memo-bomb", "zip-bomb"])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_damaged_or_hostile_files_are_one_line_naming_the_file(reader, kind, tmp_path, hub):
    sentinel = tmp_path / "SENTINEL"
    path = _damaged(kind, tmp_path / f"{kind}.pt", sentinel)
    with pytest.raises(AtlasError) as info:
        READERS[reader](path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg and "weights_only" not in msg, msg
    assert not sentinel.exists()


@pytest.mark.parametrize("legacy", [False, True])
def test_both_containers_load(legacy, tmp_path):
    """What torch.save writes, in either container, reads back equal (shared storages stay shared)."""
    from engine.training.checkpoint import safe_load

    w = torch.randn(6, 4)
    blob = {"w": w, "view": w[1:3], "opt": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 0.1}]}}
    blob["half"], blob["ints"], blob["size"] = w.half(), torch.arange(5), torch.Size([2, 3])
    path = tmp_path / "ck.pt"
    torch.save(blob, path, _use_new_zipfile_serialization=not legacy)
    got = safe_load(path, "training checkpoint")
    for k in ("w", "view", "half", "ints"):
        assert torch.equal(got[k], blob[k]) and got[k].dtype == blob[k].dtype
    assert got["view"].untyped_storage().data_ptr() == got["w"].untyped_storage().data_ptr()
    assert got["opt"]["state"][0]["step"].item() == 3.0 and got["size"] == torch.Size([2, 3])
