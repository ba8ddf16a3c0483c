"""A toy analysis registered the way a new one would be: one module, one ``register_analysis`` call.

Tests import it to check that the CLI and the editor pick up any registered analysis without
edits of their own. It measures the mean absolute pixel change of each direction at the end of
its range, on a few seeds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.analysis.registry import ANALYSES, AnalysisSpec, register_analysis
from engine.analysis.results import AnalysisResult, register_result
from engine.analysis.sampling import directions_of, latents, render_base, render_shifts
from engine.jobs import Progress

NAME = "toy-change"


@dataclass(frozen=True)
class Params:
    seeds: int = field(default=2, metadata={"help": "latents", "min": 1})


@register_result
@dataclass
class ToyResult(AnalysisResult):
    kind = "toy-change"
    indices: list[int]
    labels: list[str]
    change: np.ndarray  # [K]

    def draw(self, path: Path) -> Path:
        from engine.analysis import plots

        fig = plots.figure(3, 2)
        fig.add_subplot().bar(range(len(self.change)), self.change)
        return plots.save_figure(fig, path)

    def report_lines(self) -> list[str]:
        return [f"direction {k}: mean |change| {c:.4g}" for k, c in zip(self.indices, self.change)]


def run(gen, dirset, indices: Sequence[int] | None, params: Params = Params()) -> Iterator[Progress]:
    dirs = directions_of(dirset, indices)
    z = latents(gen, params.seeds, 0)
    base = render_base(gen, z)
    out = []
    for j, (_, d) in enumerate(dirs):
        imgs = render_shifts(gen, z, d, torch.tensor([d.range[1]]))[:, 0]
        out.append(float((imgs - base).abs().mean()))
        yield Progress(j + 1, len(dirs))
    return ToyResult([k for k, _ in dirs], [d.label for _, d in dirs], np.array(out))


if NAME not in ANALYSES:
    register_analysis(AnalysisSpec(NAME, Params, run, "toy: mean pixel change at the range end", ToyResult))
