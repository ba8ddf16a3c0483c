"""Typed reads of the JSON manifests of our own files (direction sets, ``.latent`` files).

A manifest is data from a file, possibly damaged or hand-edited: every field is checked for its
type, range and size before anything uses it, and a bad one is one error naming the file, the
field and the value (``Fields(obj, where, error)``; ``error`` is the file kind's ``AtlasError``).
Tensors read beside a manifest are checked by ``float_tensor``: floating point (kept as float32)
and finite.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from engine.errors import AtlasError

MAX_NAME = 1_000  # names, tags, layer names, methods
MAX_TEXT = 1_000_000  # free text (notes)
MAX_ITEMS = 100_000  # list lengths (directions, tags)
_HEX64 = re.compile(r"[0-9a-f]{64}")


def show(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters (safe for any JSON value, however large or deep)."""
    if isinstance(value, (list, dict)) and len(value) > 8:
        return f"a {'list' if isinstance(value, list) else 'object'} of {len(value)} items"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - RecursionError on deep nesting, the int digit limit
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def as_float(v: Any) -> float | None:
    """``v`` as a float if it is a JSON number a float can hold (not a bool, not a 400-digit int), else ``None``."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        return float(v)
    except OverflowError:
        return None


def plain_name(name: Any) -> bool:
    """True for a file name that stays in its folder: no separators, not ``.``/``..``, <= 255 bytes."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in "/\\\0")
        and len(name.encode("utf-8", "surrogatepass")) <= 255
    )


class Fields:
    """Checked access to one JSON object read from a file: ``Fields(obj, where, error).text("name")``."""

    def __init__(self, obj: Any, where: str, error: type[AtlasError] = AtlasError) -> None:
        if not isinstance(obj, dict):
            raise error(f"{where}: must be a JSON object, got {show(obj)}")
        self.obj, self.where, self.error = obj, where, error

    def fail(self, key: str, what: str) -> AtlasError:
        return self.error(f"{self.where}: {key} {what}, got {show(self.obj.get(key))}")

    def has(self, key: str) -> bool:
        return self.obj.get(key) is not None

    def text(self, key: str, default: str | None = "", *, limit: int = MAX_NAME, choices=None) -> str:
        v = self.obj.get(key, default)
        if v is None and default is None:
            raise self.fail(key, "is required")
        if v is None:
            v = default
        if not isinstance(v, str) or len(v) > limit:
            raise self.fail(key, f"must be text of at most {limit:,} characters")
        if choices is not None and v not in choices:
            raise self.fail(key, f"must be one of {', '.join(map(repr, choices))}")
        return v

    def optional_text(self, key: str, *, limit: int = MAX_NAME, choices=None) -> str | None:
        return self.text(key, "", limit=limit, choices=choices) if self.has(key) else None

    def number(self, key: str, default: float | None = None, *, lo: float = -1e12, hi: float = 1e12) -> float:
        v = self.obj.get(key, default)
        if v is None:
            raise self.fail(key, "is required")
        x = as_float(v)
        if x is None or not (math.isfinite(x) and lo <= x <= hi):
            raise self.fail(key, f"must be a finite number in [{lo:g}, {hi:g}]")
        return x

    def optional_number(self, key: str, *, lo: float = -1e12, hi: float = 1e12) -> float | None:
        return self.number(key, lo=lo, hi=hi) if self.has(key) else None

    def integer(self, key: str, default: int | None = None, *, lo: int = 0, hi: int = 1 << 31) -> int:
        v = self.obj.get(key, default)
        if v is None:
            raise self.fail(key, "is required")
        if type(v) is not int or not lo <= v <= hi:
            raise self.fail(key, f"must be an integer {lo}..{hi}")
        return v

    def optional_integer(self, key: str, *, lo: int = 0, hi: int = 1 << 31) -> int | None:
        return self.integer(key, lo=lo, hi=hi) if self.has(key) else None

    def obj_field(self, key: str) -> dict:
        """A nested JSON object (``{}`` when absent); its contents are plain JSON, kept as they are."""
        v = self.obj.get(key)
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise self.fail(key, "must be a JSON object")
        return v

    def list_field(self, key: str, *, limit: int = MAX_ITEMS, required: bool = False) -> list:
        v = self.obj.get(key)
        if v is None and not required:
            return []
        if not isinstance(v, list) or len(v) > limit:
            raise self.fail(key, f"must be a list of at most {limit:,} items")
        return v

    def text_list(self, key: str, *, limit: int = 1000, each: int = MAX_NAME) -> list[str]:
        v = self.list_field(key, limit=limit)
        if not all(isinstance(s, str) and len(s) <= each for s in v):
            raise self.fail(key, f"must be a list of texts of at most {each:,} characters")
        return list(v)

    def sha256(self, key: str) -> str | None:
        v = self.obj.get(key)
        if v is not None and not (isinstance(v, str) and _HEX64.fullmatch(v)):
            raise self.fail(key, "must be 64 lower-case hex digits")
        return v


def float_tensor(t: Any, what: str, error: type[AtlasError], max_dim: int = 8) -> torch.Tensor:
    """``t`` as a float32 tensor, if it is a finite floating-point tensor of at most ``max_dim`` dimensions."""
    if not isinstance(t, torch.Tensor):
        raise error(f"{what} is a {type(t).__name__}, not a tensor")
    if not t.is_floating_point() or t.dim() > max_dim or t.numel() == 0:
        raise error(
            f"{what} is a {t.dim()}-d {str(t.dtype).removeprefix('torch.')} tensor {list(t.shape)[:8]}; "
            "expected non-empty floating-point values"
        )
    t = t.to(torch.float32)
    if not torch.isfinite(t).all():
        raise error(f"{what} holds NaN or infinite values")
    return t
