"""Locality heatmap: where in the image an edit acts.

Cherepkov et al. (2021) show ``|| G_{theta + t xi}(z) - G_theta(z) ||^2`` per pixel averaged over
1600 latents z and 20 shift magnitudes t ~ U[-T, T]; those are the defaults here. The squared
norm is over the pixel's colour channels, so ``heatmap[y, x]`` is in (image units)^2 with images
in [-1, 1]. Latent directions work the same way (``G(z + t d) - G(z)``).

``concentration`` summarises the map: the share of the total squared difference that falls in
the 10 % hottest pixels (0.1 for an edit spread evenly over the image, towards 1 for a local one).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.analysis.registry import AnalysisSpec, register_analysis
from engine.analysis.results import AnalysisResult, register_result
from engine.analysis.sampling import check_fits, directions_of, latents, render_pieces, shift_range
from engine.directions import DirectionSet
from engine.errors import AtlasError
from engine.jobs import Pacer, Progress
from engine.params import validate_params
from engine.render import render_batch, to_uint8

TOP_SHARE = 0.1


@dataclass(frozen=True)
class Params:
    samples: int = field(
        default=1600, metadata={"help": "latents z averaged over (paper: 1600)", "min": 1, "max": 1_000_000}
    )
    shifts: int = field(
        default=20, metadata={"help": "shifts t ~ U[-T, T] per latent (paper: 20)", "min": 1, "max": 10_000}
    )
    t_max: float | None = field(default=None, metadata={"help": "T; default: each direction's range", "min": 0.0})
    psi: float = field(default=1.0, metadata={"help": "truncation (style models)"})
    batch_size: int = field(default=64, metadata={"help": "images per forward pass", "min": 1, "max": 4096})
    seed: int = field(default=0, metadata={"help": "seed of the latents and shifts"})

    def __post_init__(self) -> None:
        validate_params(self)


@register_result
@dataclass
class LocalityResult(AnalysisResult):
    """``heatmap[k]`` ``[H, W]``: mean squared colour difference per pixel of direction k's edits."""

    kind = "locality"
    method: str
    model: str
    set_title: str
    indices: list[int]
    labels: list[str]
    samples: int
    shifts_per_sample: int
    heatmap: np.ndarray  # [K, H, W]
    shift_range: np.ndarray  # [K, 2]
    concentration: np.ndarray  # [K]
    example: np.ndarray  # [K, 2, H, W, 3] uint8: one unedited image and its edit at the range's end

    def draw(self, path: Path) -> Path:
        """The PNG figure of this result at ``path``."""
        from engine.analysis import plots

        K = len(self.indices)
        fig = plots.figure(8.4, 2.9 * K)
        for i in range(K):
            lo, hi = self.shift_range[i]
            ax0, ax1, ax2 = (fig.add_subplot(K, 3, 3 * i + j + 1) for j in range(3))
            ax0.imshow(self.example[i, 0], interpolation="nearest")
            ax0.set_title(f"direction {plots.direction_name(self, i)}: original", fontsize=8)
            ax1.imshow(self.example[i, 1], interpolation="nearest")
            ax1.set_title(f"edited, t = {hi:+.3g}", fontsize=8)
            im = ax2.imshow(self.heatmap[i], cmap=plots.HEATMAP_CMAP, interpolation="nearest")
            ax2.set_title(
                f"mean squared difference\n{self.samples} z x {self.shifts_per_sample} t ~ U[{lo:.3g}, {hi:.3g}]; "
                f"top-10% share {self.concentration[i]:.2f}",
                fontsize=7,
            )
            fig.colorbar(im, ax=ax2, fraction=0.046, pad=0.04)
            for ax in (ax0, ax1, ax2):
                ax.set_xticks([])
                ax.set_yticks([])
        fig.suptitle(f"Locality: {self.set_title} ({self.method}) on {self.model}", fontsize=9)
        return plots.save_figure(fig, path)

    def report_lines(self) -> list[str]:
        """The numbers worth printing, one line per direction."""
        lines = []
        for i, k in enumerate(self.indices):
            name = f"direction {k}" + (f" ({self.labels[i]})" if self.labels[i] else "")
            h = self.heatmap[i]
            y, x = np.unravel_index(int(np.argmax(h)), h.shape)
            lines.append(
                f"{name}: mean squared difference {h.mean():.4g} per pixel (max {h.max():.4g} at x={x}, y={y}); "
                f"the hottest 10% of pixels hold {100 * self.concentration[i]:.0f}% of it"
            )
        return lines


def concentration(heatmap: np.ndarray, top: float = TOP_SHARE) -> float:
    """Share of the map's total in its ``top`` fraction of hottest pixels."""
    flat = np.sort(heatmap.reshape(-1))[::-1]
    n = max(1, int(round(top * flat.size)))
    total = flat.sum()
    return float(flat[:n].sum() / total) if total > 0 else 0.0


def run(gen, dirset: DirectionSet, indices: Sequence[int] | None, params: Params = Params()) -> Iterator[Progress]:
    """Job: the locality heatmap of each direction ``indices`` (all when None). Returns a ``LocalityResult``."""
    if params.samples < 1 or params.shifts < 1:
        raise AtlasError(f"locality needs at least 1 sample and 1 shift, got {params.samples} and {params.shifts}")
    check_fits(gen, dirset)
    dirs = directions_of(dirset, indices)
    z_all = latents(gen, params.samples, params.seed, extra=4 * params.shifts, what=" and their shifts")
    g = torch.Generator().manual_seed(params.seed + 1)
    N, S = params.samples, params.shifts
    pacer = Pacer(params.batch_size, device=gen.device)
    total = len(dirs) * N * (S + 1)  # images: each latent unedited, then at its S shifts
    done = 0
    yield Progress(done, total, stage="heatmaps")
    maps, ranges, examples = [], [], []
    for k, d in dirs:
        lo, hi = shift_range(d, params.t_max)
        t = lo + (hi - lo) * torch.rand(N, S, generator=g)  # [N, S] ~ U[lo, hi], drawn latent by latent

        def rows(sl: slice, d=d, t=t) -> tuple[torch.Tensor, list]:
            """Row ``i * (S + 1)`` is latent i unedited, the next S rows the same latent at its shifts."""
            r = torch.arange(sl.start, sl.stop)
            latent, j = (r // (S + 1)).tolist(), (r % (S + 1)).tolist()
            return z_all[r // (S + 1)], [((d, float(t[i, s - 1])),) if s else () for i, s in zip(latent, j)]

        acc, base = None, None
        for sl, imgs in render_pieces(gen, N * (S + 1), rows, pacer, psi=params.psi):
            # a latent's unedited image comes first in its rows and may sit in an earlier piece
            first = torch.arange(sl.start, sl.stop) % (S + 1) == 0
            bases = torch.empty_like(imgs)
            for j in range(imgs.shape[0]):
                if first[j]:
                    base = imgs[j]
                bases[j] = base
            sq = ((imgs[~first] - bases[~first]) ** 2).sum(dim=1)  # [n, H, W]: squared norm over colour
            part = sq.double().sum(dim=0).cpu()
            acc = part if acc is None else acc + part
            done += imgs.shape[0]
            yield Progress(done, total, stage="heatmaps", message=f"direction {k}")
        heat = (acc / (N * S)).numpy()
        maps.append(heat)
        ranges.append((lo, hi))
        with torch.no_grad():
            pair = render_batch(gen, z_all[:1].repeat(2, 1), [(), ((d, hi),)], space="z", psi=params.psi)
        examples.append(to_uint8(pair))
    heatmap = np.stack(maps)
    return LocalityResult(
        method=dirset.method,
        model=str(dirset.model.get("name", gen.name)),
        set_title=dirset.title,
        indices=[k for k, _ in dirs],
        labels=[dirset.directions[k].label for k, _ in dirs],
        samples=params.samples,
        shifts_per_sample=params.shifts,
        heatmap=heatmap,
        shift_range=np.asarray(ranges, dtype=np.float64),
        concentration=np.array([concentration(h) for h in heatmap]),
        example=np.stack(examples),
    )


register_analysis(AnalysisSpec("locality", Params, run, "where in the image the edit acts", LocalityResult))
