"""What a user types to pick seeds, directions and shifts, parsed with bounds.

One parser per kind, shared by the command line and the editor's text fields, so that ``0-31``
means the same everywhere and no text can ask for more work than the limits below: sizes are
counted from the text before anything is expanded or allocated.

=====================  =====================================  ===================================
text                   parser                                 result
=====================  =====================================  ===================================
``0-7``, ``0,3,9``     ``parse_seeds(text, limit=)``          seeds (ints, and ``@name`` items
                                                              when ``images`` is given)
``3``, ``0-7``, all    ``parse_indices(text, n)``             direction indices in ``[0, n)``
``-3:3:7``, ``-2,0,2``  ``parse_shifts(text)``                 finite shifts ``[S]`` (float64)
=====================  =====================================  ===================================

Errors are ``BadValueError`` naming the option (``what``), the text and what is allowed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from engine.errors import BadValueError

MAX_SEEDS = 1024  # seeds one command renders
MAX_SEED = 2**32 - 1  # seeds feed numpy's RandomState (NVIDIA's recipe), which takes 0 .. 2**32 - 1
MAX_SHIFTS = 1001  # shift steps of one grid row or sweep
MAX_RENDER_BYTES = 2 * 1024**3  # images one command holds in memory at once (uint8, or float32 raw)


def _ranges(text: str, what: str, example: str, noun: str) -> list[tuple[int, int] | str]:
    """``"1-3,7,@a"`` -> ``[(1, 3), (7, 7), "@a"]``; no range is expanded here."""
    out: list[tuple[int, int] | str] = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        if part.startswith("@"):
            out.append(part)
            continue
        try:
            if "-" in part[1:]:
                i = part.index("-", 1)
                a, b = int(part[:i]), int(part[i + 1 :])
            else:
                a = b = int(part)
        except ValueError:
            raise BadValueError(
                f"{what} '{text}': '{part}' is not {noun} or a range; expected e.g. {example}"
            ) from None
        if b < a:
            raise BadValueError(f"{what} '{text}': the range {part} runs backwards; write {b}-{a}")
        out.append((a, b))
    return out


def parse_seeds(
    text: str,
    *,
    limit: int = MAX_SEEDS,
    what: str = "--seeds",
    images: Mapping[str, Any] | None = None,
    clip: bool = False,
) -> list:
    """``"0-7"``, ``"0,3,9"``, ``"1-3,10"`` or ``"5"`` -> seeds, at most ``limit`` of them.

    Seeds are integers in ``[0, MAX_SEED]``. With ``images`` (``{name: item}``), ``@name``
    tokens give that item (a projected image in the editor). More than ``limit`` seeds is an
    error, or with ``clip`` the first ``limit`` are returned (a preview that shows a few).
    """
    example = "0-7, 0,3,9 or 5" + (", or @name of a projected image" if images is not None else "")
    seeds: list = []
    total = 0
    for r in _ranges(text, what, example, "a seed"):
        if isinstance(r, str):
            if images is None:
                raise BadValueError(f"{what} '{text}': '{r}' is not a seed; expected e.g. {example}")
            if r[1:] not in images:
                known = ", ".join(f"@{n}" for n in images) or "none"
                raise BadValueError(f"{what} '{text}': no projected image {r} (open ones: {known})")
            count = 1
        else:
            a, b = r
            if a < 0 or b > MAX_SEED:
                raise BadValueError(f"{what} '{text}': seeds are whole numbers from 0 to {MAX_SEED}")
            count = b - a + 1
        if total + count > limit and not clip:
            raise BadValueError(f"{what} '{text}': more than {limit} seeds; at most {limit} at once")
        take = min(count, limit - total)
        if take > 0:
            seeds.extend([images[r[1:]]] if isinstance(r, str) else range(r[0], r[0] + take))
        total += take
        if total >= limit and clip:
            break
    if not seeds:
        raise BadValueError(f"{what} '{text}': no seeds given; expected e.g. {example}")
    return seeds


def parse_indices(text: str, n: int, *, what: str = "--index") -> list[int]:
    """``"3"``, ``"0,2,5"``, ``"0-7"`` or ``"all"`` -> direction indices, each in ``[0, n)``."""
    example = "3, 0,2,5, 0-7 or all"
    if str(text).strip().lower() == "all":
        if n < 1:
            raise BadValueError(f"{what} all: the set has no directions")
        return list(range(n))
    idx: list[int] = []
    for r in _ranges(text, what, example, "a direction index"):
        if isinstance(r, str):
            raise BadValueError(f"{what} '{text}': '{r}' is not a direction index; expected e.g. {example}")
        a, b = r
        if a < 0 or b >= n:
            bad = a if a < 0 else b
            span = f"0..{n - 1}" if n else "none"
            raise BadValueError(f"{what} '{text}': the set has {n} directions ({span}); {bad} is out of range")
        idx.extend(range(a, b + 1))
    if not idx:
        raise BadValueError(f"{what} '{text}': no direction given; expected e.g. {example}")
    return idx


def parse_number(text: str, what: str, *, minimum: float | None = None, positive: bool = False) -> float:
    """A finite number from ``text`` (``nan`` and ``inf`` are refused), optionally bounded below."""
    try:
        v = float(str(text).strip())
    except ValueError:
        raise BadValueError(f"{what} '{text}': not a number") from None
    if not math.isfinite(v):
        raise BadValueError(f"{what} '{text}': must be a finite number")
    if positive and v <= 0:
        raise BadValueError(f"{what} {text}: must be positive")
    if minimum is not None and v < minimum:
        raise BadValueError(f"{what} {text}: must be at least {minimum:g}")
    return v


def parse_shifts(text: str, *, what: str = "--shifts", limit: int = MAX_SHIFTS) -> np.ndarray:
    """``"-3:3:7"`` (start:stop:count, both ends included) or ``"-2,0,2"`` -> finite shifts ``[S]``.

    Shifts are in the directions' own units (see ``engine.directions``); ``1 <= S <= limit``.
    """
    example = "start:stop:count (e.g. -3:3:7) or a list (e.g. -2,0,2)"
    text = str(text)
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise BadValueError(f"{what} '{text}': expected {example}")
        a = parse_number(parts[0], f"{what} start")
        b = parse_number(parts[1], f"{what} stop")
        try:
            count = int(parts[2])
        except ValueError:
            raise BadValueError(f"{what} '{text}': the count '{parts[2]}' is not a whole number") from None
        if not 1 <= count <= limit:
            raise BadValueError(f"{what} '{text}': the count must be from 1 to {limit}")
        return np.linspace(a, b, count)
    items = [p for p in text.split(",") if p.strip()]
    if not items:
        raise BadValueError(f"{what} '{text}': no shifts given; expected {example}")
    if len(items) > limit:
        raise BadValueError(f"{what} '{text}': {len(items)} shifts; at most {limit}")
    return np.array([parse_number(p, what) for p in items])


def job_memory_budget() -> int:
    """Bytes a job's size parameters may make it hold at once: half the machine's physical memory
    (8 GiB where the system does not say)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = 0
    return total // 2 if total > 0 else 8 * 1024**3


def check_job_memory(param: str, value: int, bytes_each: float, what: str) -> None:
    """Refuse a job parameter ``param=value`` that would make the job hold more than
    ``job_memory_budget()``: ``value`` times ``bytes_each`` bytes of ``what``. The one-line
    message names the parameter and the largest value that fits, before any work is done."""
    total, budget = value * bytes_each, job_memory_budget()
    if total > budget:
        most = max(1, int(budget // max(bytes_each, 1)))
        raise BadValueError(
            f"parameter {param}={value} is too large: {what} would take {total / 1024**3:.1f} GiB at once, "
            f"more than half this machine's memory ({budget / 1024**3:.1f} GiB); at most {most:,} here"
        )


def check_render_size(images: int, resolution: int, *, channels: int = 3, raw: bool = False, what: str = "") -> None:
    """Refuse a render that would hold more than ``MAX_RENDER_BYTES`` of images at once.

    ``images`` of ``resolution`` px square; uint8 (``raw``: float32 of ``channels`` channels).
    """
    per = resolution * resolution * (4 * channels if raw else 3)
    total = images * per
    if total > MAX_RENDER_BYTES:
        most = max(1, MAX_RENDER_BYTES // per)
        raise BadValueError(
            f"{what + ': ' if what else ''}{images} images of {resolution} px ({total / 1024**3:.1f} GiB) are too "
            f"many at once; at most {most} at this size: use fewer seeds, shifts or directions"
        )
