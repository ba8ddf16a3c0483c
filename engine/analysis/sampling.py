"""How the analyses pick latents and shifts and render edited images.

Every analysis measures an edit the same way: latents ``z`` drawn with ``gen.sample_latents``
from a fixed seed (so runs repeat), each rendered unedited and at shifts ``t`` of one direction
through ``engine.render.render_batch``, i.e. one batched forward serves many (z, t) pairs
(a parameter edit runs the layers before the edited one once per z). Shifts are in the
direction's own units (see ``engine.directions``): latent units, or a fraction of the edited
layer's weight norm.

Jobs render in paced pieces (``render_pieces``: at most ``batch_size`` images, fewer when a
piece would take longer than ``engine.jobs.PASS_SECONDS``) and yield after each, so a slow
generator never keeps a cancel waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from engine.directions import Direction, DirectionSet
from engine.errors import AtlasError
from engine.jobs import Pacer
from engine.render import check_set_fits, materialize, render_batch
from engine.selection import check_job_memory


def directions_of(dirset: DirectionSet, indices: Sequence[int] | None) -> list[tuple[int, Direction]]:
    """``(k, direction with its delta filled in)`` for ``indices`` (all when ``None``)."""
    n = len(dirset)
    idx = list(range(n)) if indices is None else [int(k) for k in indices]
    if not idx:
        raise AtlasError(f"{dirset.title}: no directions to analyse")
    bad = [k for k in idx if not 0 <= k < n]
    if bad:
        raise AtlasError(f"{dirset.title}: direction {bad[0]} does not exist (the set has {n}: 0..{n - 1})")
    return [(k, materialize(dirset, k)) for k in idx]


def shift_range(d: Direction, t_max: float | None) -> tuple[float, float]:
    """``[-t_max, t_max]`` if given, else the direction's suggested range."""
    if t_max is not None:
        if not t_max > 0:
            raise AtlasError(f"t_max must be positive, got {t_max}")
        return -float(t_max), float(t_max)
    lo, hi = float(d.range[0]), float(d.range[1])
    if not hi > lo:
        raise AtlasError(f"direction range {d.range} is empty; give t_max")
    return lo, hi


def shift_grid(d: Direction, steps: int, t_max: float | None = None) -> np.ndarray:
    """``steps`` shifts evenly over the range (an odd count on a symmetric range includes 0)."""
    if steps < 2:
        raise AtlasError(f"steps must be at least 2, got {steps}")
    lo, hi = shift_range(d, t_max)
    return np.linspace(lo, hi, steps)


def check_fits(gen, dirset: DirectionSet) -> None:
    """Refuse a set whose directions cannot apply to ``gen`` (wrong latent size or layer)."""
    check_set_fits(gen, dirset)


Rows = Callable[[slice], tuple[torch.Tensor, list | None]]  # rows -> (codes in z, their shifts or None)


def unedited_rows(z: torch.Tensor) -> Rows:
    """Row m is latent ``z[m]`` unedited."""
    return lambda sl: (z[sl], None)


def shift_rows(z: torch.Tensor, d: Direction, ts: Sequence[float]) -> Rows:
    """Row ``m * S + s`` is latent ``z[m]`` shifted by ``ts[s]`` along ``d`` (``S = len(ts)``)."""
    ts = [float(t) for t in ts]
    S = len(ts)

    def rows(sl: slice) -> tuple[torch.Tensor, list]:
        r = torch.arange(sl.start, sl.stop)
        return z[r // S], [((d, ts[i % S]),) if ts[i % S] != 0.0 else () for i in range(sl.start, sl.stop)]

    return rows


def render_pieces(gen, n: int, rows: Rows, pacer: Pacer, *, psi: float = 1.0) -> Iterator[tuple[slice, torch.Tensor]]:
    """``(sl, images [len, C, H, W] float32)`` for paced pieces ``sl`` of ``n`` rows.

    ``rows(sl)`` gives the pieces' codes (in z) and shifts. A piece is timed from its rendering
    to the caller's next request, so what the caller does with it (a distance, a feature
    network, its yield) counts too.
    """
    for sl in pacer.slices(n):
        codes, shifts = rows(sl)
        with torch.no_grad():
            imgs = render_batch(gen, codes, shifts, space="z", psi=psi)
        yield sl, imgs.float()


@torch.no_grad()
def render_shifts(
    gen, z: torch.Tensor, d: Direction, ts: Sequence[float], *, psi: float = 1.0, batch_size: int = 64
) -> torch.Tensor:
    """Images ``[len(z), len(ts), C, H, W]`` (float32 on the generator's device): z_m shifted by t_s."""
    M, S = z.shape[0], len(ts)
    pairs = [(m, float(t)) for m in range(M) for t in ts]
    out = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        codes = z[[m for m, _ in chunk]]
        shifts = [((d, t),) if t != 0.0 else () for _, t in chunk]
        out.append(render_batch(gen, codes, shifts, space="z", psi=psi).float())
    imgs = torch.cat(out)
    return imgs.reshape(M, S, *imgs.shape[1:])


@torch.no_grad()
def render_base(gen, z: torch.Tensor, *, psi: float = 1.0, batch_size: int = 64) -> torch.Tensor:
    """Unedited images ``[len(z), C, H, W]`` (float32 on the generator's device)."""
    out = [
        render_batch(gen, z[i : i + batch_size], None, space="z", psi=psi).float()
        for i in range(0, z.shape[0], batch_size)
    ]
    return torch.cat(out)


def latents(gen, n: int, seed: int, *, param: str = "samples", extra: float = 0.0, what: str = "") -> torch.Tensor:
    """``[n, z_dim]`` on the generator's device, reproducible from ``seed``.

    ``param`` names the parameter that asked for ``n``: more than ``engine.selection.MAX_JOB_BYTES``
    of latents (plus ``extra`` bytes per latent that the job keeps with each, ``what``) is refused
    before anything is drawn.
    """
    if n < 1:
        raise AtlasError(f"number of samples must be at least 1, got {n}")
    check_job_memory(param, n, 4 * gen.z_dim + extra, f"the latents{what}")
    return gen.sample_latents(n, seed).to(gen.device)
