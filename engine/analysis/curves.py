"""Effect curves: how far an edit moves the image, as a function of the shift t.

For each direction, ``seeds`` latents are rendered at ``steps`` shifts over the direction's
range and compared with their unedited image: ``D_k(t) = mean_z d(G_t(z), G_0(z))`` (with its
standard deviation over z). ``d`` is a distance of ``engine.distances``: LPIPS (alex by default;
vgg, squeeze), or ``pixel``, the mean squared pixel difference, which needs no weights and is
labelled as not perceptual. Distances there are squared distances (LPIPS's own value is one),
so a linear edit gives a curve growing like t^2 near 0. Images smaller than 64 px are upsampled
(bilinear) to 64 px before a perceptual distance: the LPIPS backbones need at least about 32 px
and were calibrated on 64 px patches.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.analysis.registry import AnalysisSpec, register_analysis
from engine.analysis.results import AnalysisResult, register_result
from engine.analysis.sampling import (
    check_fits,
    directions_of,
    latents,
    render_pieces,
    shift_grid,
    shift_rows,
    unedited_rows,
)
from engine.directions import DirectionSet
from engine.distances import DISTANCES, load_distance
from engine.errors import AtlasError
from engine.jobs import Pacer, Progress, wait_for
from engine.params import validate_params

DistanceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PERCEPTUAL_MIN_SIZE = 64


@dataclass(frozen=True)
class Params:
    seeds: int = field(default=16, metadata={"help": "latents z averaged over", "min": 1, "max": 100_000})
    steps: int = field(
        default=11, metadata={"help": "shifts t over each direction's range (odd: includes 0)", "min": 2, "max": 1001}
    )
    t_max: float | None = field(
        default=None, metadata={"help": "use [-t_max, t_max] instead of each direction's range", "min": 0.0}
    )
    distance: str = field(default="lpips-alex", metadata={"help": "image distance", "choices": DISTANCES})
    psi: float = field(default=1.0, metadata={"help": "truncation (style models)"})
    batch_size: int = field(
        default=64,
        metadata={
            "help": "most images per forward pass (fewer when a pass would take over 0.3 s)",
            "min": 1,
            "max": 4096,
        },
    )
    seed: int = field(default=0, metadata={"help": "seed of the latents"})

    def __post_init__(self) -> None:
        validate_params(self)


@register_result
@dataclass
class CurvesResult(AnalysisResult):
    """``mean[k, s]`` = mean over z of d(G_{t_ks}(z), G_0(z)); ``std`` likewise."""

    kind = "curves"
    method: str
    model: str
    set_title: str
    indices: list[int]
    labels: list[str]
    distance: str
    distance_label: str
    seeds: int
    shifts: np.ndarray  # [K, S]
    mean: np.ndarray  # [K, S]
    std: np.ndarray  # [K, S]

    def draw(self, path: Path) -> Path:
        """The PNG figure of this result at ``path``."""
        from engine.analysis import plots

        fig = plots.figure(6.4, 4.2)
        ax = fig.add_subplot()
        for i in range(len(self.indices)):
            t, m, s = self.shifts[i], self.mean[i], self.std[i]
            (line,) = ax.plot(t, m, marker="o", ms=3, label=plots.direction_name(self, i))
            ax.fill_between(t, m - s, m + s, color=line.get_color(), alpha=0.15)
        ax.set_xlabel("shift t")
        ax.set_ylabel(f"distance ({self.distance})")
        ax.set_title(
            f"Effect curves: {self.set_title} ({self.method}) on {self.model}, mean ± std over {self.seeds} latents\n"
            + textwrap.fill(self.distance_label, 90),
            fontsize=8,
        )
        ax.grid(alpha=0.3)
        if len(self.indices) <= 12:
            ax.legend(title="direction", fontsize=7)
        return plots.save_figure(fig, path)

    def report_lines(self) -> list[str]:
        """The numbers worth printing, one line per direction."""
        lines = []
        for i, k in enumerate(self.indices):
            name = f"direction {k}" + (f" ({self.labels[i]})" if self.labels[i] else "")
            pts = ", ".join(f"{t:+.3g}: {m:.4g}" for t, m in zip(self.shifts[i], self.mean[i]))
            lines.append(f"{name}: {self.distance} distance by t  {pts}")
        return lines


def resolve_distance(name: str, device) -> tuple[DistanceFn, str]:
    """The distance ``name`` of ``engine.distances`` and its label (AtlasError if weights are missing)."""
    try:
        d = load_distance(name, device=device)
    except AtlasError as exc:
        raise AtlasError(f"{exc} (analyze curves: --distance pixel)") from None
    return d, d.label


def run(
    gen,
    dirset: DirectionSet,
    indices: Sequence[int] | None,
    params: Params = Params(),
    *,
    distance: DistanceFn | None = None,
    distance_label: str = "",
) -> Iterator[Progress]:
    """Job: effect curves of the directions ``indices`` (all when None). Returns a ``CurvesResult``.

    ``distance`` (``(a [B, C, H, W], b) -> [B]``) overrides ``params.distance`` (tests, custom metrics).
    """
    if params.seeds < 1:
        raise AtlasError(f"curves need at least 1 seed, got {params.seeds}")
    check_fits(gen, dirset)
    dirs = directions_of(dirset, indices)
    image = 4 * gen.img_channels * gen.resolution**2  # the unedited images are kept
    z = latents(gen, params.seeds, params.seed, param="seeds", extra=image, what=" and their unedited images")
    if distance is None:
        loading = Progress(0, 0, stage="loading the distance")
        yield loading
        distance, distance_label = yield from wait_for(resolve_distance, params.distance, gen.device, record=loading)
        name = params.distance
    else:
        name = getattr(distance, "name", "custom")
        distance_label = distance_label or getattr(distance, "label", name)
    M = z.shape[0]
    pacer = Pacer(params.batch_size, device=gen.device)
    total = M * (1 + len(dirs) * params.steps)  # images
    done = 0
    yield Progress(done, total, stage="unedited samples")
    parts = []
    for _, imgs in render_pieces(gen, M, unedited_rows(z), pacer, psi=params.psi):
        parts.append(imgs)
        done += imgs.shape[0]
        yield Progress(done, total, stage="unedited samples")
    base = torch.cat(parts)  # [M, C, H, W]
    grids, means, stds = [], [], []
    for k, d in dirs:
        ts = shift_grid(d, params.steps, params.t_max)
        dist = []
        for sl, imgs in render_pieces(gen, M * len(ts), shift_rows(z, d, ts), pacer, psi=params.psi):
            with torch.no_grad():
                dist.append(_measure(distance, imgs, base[torch.arange(sl.start, sl.stop) // len(ts)]))
            done += imgs.shape[0]
            yield Progress(done, total, stage="directions", message=f"direction {k}")
        dist = torch.cat(dist).double().cpu().numpy().reshape(M, len(ts))
        grids.append(ts)
        means.append(dist.mean(axis=0))
        stds.append(dist.std(axis=0))
        yield Progress(
            done, total, stage="directions", metrics={"max_distance": float(means[-1].max())}, message=f"direction {k}"
        )
    return CurvesResult(
        method=dirset.method,
        model=str(dirset.model.get("name", gen.name)),
        set_title=dirset.title,
        indices=[k for k, _ in dirs],
        labels=[dirset.directions[k].label for k, _ in dirs],
        distance=name,
        distance_label=distance_label,
        seeds=params.seeds,
        shifts=np.stack(grids),
        mean=np.stack(means),
        std=np.stack(stds),
    )


def _measure(distance: DistanceFn, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if getattr(distance, "perceptual", False) and a.shape[-1] < PERCEPTUAL_MIN_SIZE:
        size = (PERCEPTUAL_MIN_SIZE, PERCEPTUAL_MIN_SIZE)
        a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
        b = F.interpolate(b, size=size, mode="bilinear", align_corners=False)
    return distance(a, b).reshape(-1)


register_analysis(AnalysisSpec("curves", Params, run, "distance vs shift t", CurvesResult))
