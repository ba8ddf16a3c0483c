"""Resumable state of long discovery jobs, saved atomically and keyed by what defines the run.

A job yields its state (``Progress.state``: a dict of tensors and plain data) every so often; the
caller saves it with ``save_checkpoint``. Resuming passes the loaded dict back as ``state=`` to
the same method with the same parameters, which continues the SAME run: the step counter, the
trained weights, the optimizer moments and the random streams (which the trainers derive from
(seed, rank, step), so they need no stored generator state) all carry on where they stopped.

The key (``job_key``) hashes the model identity, the method, the parameters that change the run's
trajectory (fields with ``metadata={"key": False}`` such as the step count are left out, so a
finished run can be extended) and the number of ranks. A checkpoint is a torch file read with
``weights_only=True``, so loading one never executes code from it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from engine.discovery.registry import key_fields
from engine.errors import CheckpointError
from engine.files import atomic_write as _atomic_write
from engine.hashing import params_key

FORMAT = "gan-atlas-job-state"
VERSION = 1


def job_key(gen, method: str, params: Any, *, world_size: int = 1) -> str:
    """A 16-hex-digit key of (model identity, method, trajectory-defining params, world size), and of
    the classes of a class-conditional view (a run on class 207 is not a run on class 1)."""
    parts = [gen.identity or gen.name, method, key_fields(params), world_size]
    if gen.classes_bound is not None:
        parts.append({"classes": gen.classes_bound})
    return params_key(*parts)


def default_checkpoint_dir() -> Path:
    """``<user cache>/gan-atlas/jobs`` (platformdirs)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("gan-atlas")) / "jobs"


def checkpoint_path(method: str, key: str, directory: str | Path | None = None) -> Path:
    return Path(directory or default_checkpoint_dir()) / f"{method}-{key}.ckpt"


def save_checkpoint(path: str | Path, state: dict, *, key: str) -> Path:
    """Write ``state`` to ``path`` atomically (readers see the old or the new file, never half)."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, "key": key, "state": state}, buf)
    path = Path(path)
    _atomic_write(path, buf.getvalue())
    return path


def load_checkpoint(path: str | Path, *, key: str | None = None) -> dict:
    """The state saved at ``path``; ``CheckpointError`` if it is damaged or belongs to another run."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such job checkpoint")
    try:
        blob = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - anything unreadable is the file's fault
        raise CheckpointError(f"{path}: not a readable job checkpoint ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or not isinstance(blob.get("state"), dict):
        raise CheckpointError(f"{path}: not a GAN Atlas job checkpoint")
    if blob.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: job checkpoint version {blob.get('version')!r} is not supported (expected {VERSION})"
        )
    if key is not None and blob.get("key") != key:
        raise CheckpointError(
            f"{path}: checkpoint belongs to another run (key {blob.get('key')}, expected {key}: "
            "different model, method, parameters or number of ranks)"
        )
    return blob["state"]


def cpu_snapshot(obj: Any) -> Any:
    """A deep copy of nested dicts/lists/tuples with every tensor detached, cloned and on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_snapshot(v) for v in obj)
    return obj
