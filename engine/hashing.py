"""Stable identities for checkpoints and cache keys."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

_FILE_CACHE: dict[tuple[str, int, float], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (cached by path, size and mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime)
    if key not in _FILE_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _FILE_CACHE[key] = h.hexdigest()
    return _FILE_CACHE[key]


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names, shapes and float32 values of a state dict, in key order."""
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k]
        h.update(k.encode())
        if isinstance(v, torch.Tensor):
            t = v.detach().to("cpu").contiguous()
            h.update(str(tuple(t.shape)).encode())
            h.update(str(t.dtype).encode())
            h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def params_key(*parts: Any) -> str:
    """A short key for caches: sha256 of the JSON of ``parts`` (dataclasses as dicts)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
