"""Atomic writes and safe reads of training files (plain dicts of tensors and plain data)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from engine.checkpoints.torchfile import read_torch_file
from engine.errors import CheckpointError


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file next to ``path`` then rename it over ``path``.

    A reader (or a crash) never sees a half-written file: the rename is atomic on POSIX.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def safe_load(path: str | Path, what: str) -> dict:
    """The dict saved in ``path``, read by ``torchfile.read_torch_file`` (weights only: no code from the
    file runs, sizes bounded by the file); a missing, damaged or foreign file is a ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found")
    obj = read_torch_file(path, what=what)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a {what} (expected a dict, found {type(obj).__name__})")
    return obj
