"""Cheap, safe looks into torch checkpoint files, for format probes and clear errors."""

from __future__ import annotations

import argparse
import pickletools
import zipfile
from pathlib import Path
from typing import Any

import torch

from engine.errors import CheckpointError

# data.pkl of a torch zip holds only the object structure (names, shapes, storage ids);
# a real one is at most a few MB, so anything much larger is not worth scanning in a probe.
_MAX_SCAN_BYTES = 64 << 20


def pickle_strings(path: str | Path) -> set[str] | None:
    """The string constants in a torch zip file's ``data.pkl`` (dict keys, class names...).

    Parses the pickle opcodes without executing anything. Returns ``None`` when the file is not a
    torch zip archive (e.g. a legacy ``torch.save`` stream) or cannot be parsed.
    """
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as zf:
            names = [i for i in zf.infolist() if i.filename == "data.pkl" or i.filename.endswith("/data.pkl")]
            if len(names) != 1 or names[0].file_size > _MAX_SCAN_BYTES:
                return None
            data = zf.read(names[0])
        return {arg for _, arg, _ in pickletools.genops(data) if isinstance(arg, str)}
    except Exception:  # noqa: BLE001 - a probe answers "not mine", it does not raise
        return None


def head_contains(path: str | Path, needles: tuple[bytes, ...], size: int = 1 << 20) -> bool:
    """True if the first ``size`` bytes hold every needle.

    A torch zip stores ``data.pkl`` first and uncompressed, so a damaged or truncated archive
    whose central directory is gone can still be recognised (and then reported as damaged).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(size)
    except OSError:
        return False
    return all(n in head for n in needles)


def load_weights_only(path: str | Path, *, what: str) -> Any:
    """``torch.load(weights_only=True)`` with ``argparse.Namespace`` allowed (train.py's ``args``).

    Zip archives are memory-mapped so that parts we do not read (discriminator, optimiser
    states) are never copied into memory. Raises ``CheckpointError`` naming the file.
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # noqa: BLE001 - any failure to parse is the file's fault
        raise CheckpointError(
            f"{path}: not a readable {what} checkpoint, damaged or truncated? ({short_reason(exc)})"
        ) from None


def short_reason(exc: BaseException, limit: int = 160) -> str:
    """``"Type: first sentence of the message"`` for one-line error reports."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(msg) > limit and ". " in msg:
        msg = msg[: msg.index(". ") + 1]
    return f"{exc.__class__.__name__}: {msg[:limit]}" if msg else exc.__class__.__name__
