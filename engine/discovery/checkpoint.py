"""Resumable state of long discovery jobs, saved atomically and keyed by what defines the run.

A job yields its state (``Progress.state``: a dict of tensors and plain data) every so often; the
caller saves it with ``save_checkpoint``. Resuming passes the loaded dict back as ``state=`` to
the same method with the same parameters, which continues the SAME run: the step counter, the
trained weights, the optimizer moments and the random streams (which the trainers derive from
(seed, rank, step), so they need no stored generator state) all carry on where they stopped.

The key (``job_key``) hashes the model identity, the method, the parameters that change the run's
trajectory (fields with ``metadata={"key": False}`` such as the step count are left out, so a
finished run can be extended) and the number of ranks. A checkpoint is a torch file read by
``torchfile.read_torch_file`` (weights only), so loading one never executes code from it.

Checkpoints only move forward: a run of the same key that has not got as far (a shorter or a
restarted run) does not replace a checkpoint at a later step unless asked (``replace_later``), so
``--resume --steps 4000`` after a shorter run still continues the longer one. A state's place in
its run is ``state_position(state)``: ``state["position"]`` (a list such as ``[stage, step]``) if
present, else ``[0, state["step"]]``. ``Checkpointer`` drives a job, saves every state it yields
and, if the job is cancelled, the state as of the last yield (``Progress.snapshot``): stopping
before the first periodic checkpoint loses nothing.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from engine.checkpoints.torchfile import open_torch_file, read_torch_file
from engine.errors import CheckpointError
from engine.files import atomic_write as _atomic_write
from engine.hashing import params_key
from engine.params import key_fields

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


def state_position(state: dict) -> tuple[int, ...]:
    """Where ``state`` is in its run, comparable between states of one run (see the module docstring)."""
    pos = state.get("position")
    if isinstance(pos, (list, tuple)) and all(isinstance(p, int) for p in pos):
        return tuple(pos)
    step = state.get("step", 0)
    return (0, int(step) if isinstance(step, int) else 0)


def checkpoint_position(path: str | Path, *, key: str | None = None) -> tuple[int, ...] | None:
    """The position of the checkpoint at ``path`` (of run ``key``, if given), or ``None`` if there is
    none or it cannot be read. Its tensors are declared, not read (``torchfile.open_torch_file``)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        blob = open_torch_file(path, what="job checkpoint").obj
    except CheckpointError:  # an unreadable file holds no position worth keeping
        return None
    if not isinstance(blob, dict) or not isinstance(blob.get("state"), dict):
        return None
    if key is not None and blob.get("key") != key:
        return None
    return state_position(blob["state"])


def save_checkpoint(path: str | Path, state: dict, *, key: str, replace_later: bool = False) -> Path | None:
    """Write ``state`` to ``path`` atomically (readers see the old or the new file, never half).

    A checkpoint of the same run already at a later position is kept (and ``None`` returned)
    unless ``replace_later``.
    """
    path = Path(path)
    if not replace_later:
        there = checkpoint_position(path, key=key)
        if there is not None and there > state_position(state):
            return None
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, "key": key, "state": state}, buf)
    _atomic_write(path, buf.getvalue())
    return path


class Checkpointer:
    """Drive a resumable job, saving its states to ``path`` (``run(job)`` is the job, passed through).

    Every ``Progress.state`` is saved as it arrives; when the job is closed (cancelled) at a yield,
    the state as of that yield (``Progress.snapshot``) is saved too if it is newer than the last
    one. ``saved`` is the position of the last state written by this run (``None``: none yet).
    ``enabled=False`` (other ranks of a distributed run) passes the job through untouched.
    """

    def __init__(self, path: str | Path, key: str, *, replace_later: bool = False, enabled: bool = True) -> None:
        self.path, self.key = Path(path), key
        self.replace_later, self.enabled = replace_later, enabled
        self.saved: tuple[int, ...] | None = None
        self.skipped = False  # a save was skipped: a later checkpoint of this run is kept

    def save(self, state: dict) -> None:
        if save_checkpoint(self.path, state, key=self.key, replace_later=self.replace_later) is None:
            self.skipped = True
        else:
            self.saved = state_position(state)

    def run(self, job):
        if not self.enabled:
            return (yield from job)
        last = None
        try:
            while True:
                try:
                    rec = next(job)
                except StopIteration as stop:
                    return stop.value
                if rec.state is not None:
                    self.save(rec.state)
                last = rec
                yield rec
        except GeneratorExit:
            # cancelled at a yield: the job waits at the same yield, so its snapshot is consistent
            if last is not None and last.snapshot is not None:
                state = last.snapshot()
                if state is not None and (self.saved is None or state_position(state) > self.saved):
                    self.save(state)
            raise
        finally:
            job.close()


def load_checkpoint(path: str | Path, *, key: str | None = None) -> dict:
    """The state saved at ``path``; ``CheckpointError`` if it is damaged or belongs to another run."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such job checkpoint")
    blob = read_torch_file(path, what="job checkpoint")  # weights only: no code from the file runs
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
