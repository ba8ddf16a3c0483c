"""Device choice and CPU thread budget.

CUDA is used when present unless the user forces a device. On small machines the torch thread
count is capped so that the desktop's UI thread keeps a core (see ``cap_threads``).
"""

from __future__ import annotations

import os

import torch

from engine.errors import AtlasError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def pick_device(preference: str | torch.device | None = "auto") -> torch.device:
    """Resolve ``"auto" | "cpu" | "cuda" | "cuda:N"`` (or a device) to a ``torch.device``.

    ``auto`` means CUDA when available, else CPU. Asking for CUDA on a machine without it is an
    error rather than a silent fallback, so a user who forced it learns why it is slow.
    """
    if isinstance(preference, torch.device):
        return preference
    pref = (preference or "auto").strip().lower()
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if pref == "cpu":
        return torch.device("cpu")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise AtlasError(f"device '{preference}' was requested but CUDA is not available on this machine")
        return torch.device(pref)
    raise AtlasError(f"unknown device '{preference}'; choose one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")


def default_threads() -> int:
    """Torch intra-op threads that leave one core for the UI on machines with few cores."""
    cores = os.cpu_count() or 1
    return max(1, cores - 1) if cores <= 4 else cores - 2


def cap_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count (default: ``default_threads()``) and return it."""
    n = default_threads() if not n or n <= 0 else int(n)
    torch.set_num_threads(n)
    return n
