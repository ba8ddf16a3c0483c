"""The papers' analyses of directions, as jobs (see docs/ARCHITECTURE.md, "Jobs").

Each module holds one analysis: a frozen ``Params`` dataclass, a result dataclass (saved as
JSON + NPZ by ``AnalysisResult.save``, drawn by ``AnalysisResult.plot``) and a job::

    def run(gen, dirset, indices, params, **inputs) -> Iterator[Progress]: ... return result

=============  ================================================================  ==============
name           what it measures                                                  module
=============  ================================================================  ==============
``curves``     image distance (LPIPS or pixel) vs shift t                        curves.py
``locality``   mean per-pixel squared difference over many z and t               locality.py
``fid``        Fréchet distance (FID, or regressor features) vs shift t          realism.py
``reproduce``  residual of the best latent shift imitating a parameter edit      reproduce.py
``score``      ground truth: how cleanly each direction moves one known factor   score.py
=============  ================================================================  ==============

Jobs run on the generator's device and are cancelled by closing them at any yield.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

from engine.analysis import curves, locality, realism, reproduce, score
from engine.analysis.results import AnalysisResult, load_result
from engine.errors import AtlasError


@dataclass(frozen=True)
class AnalysisSpec:
    """One analysis: its name, ``Params`` dataclass, job and what it needs."""

    name: str
    params: type
    run: Callable[..., Iterator[Any]]
    summary: str
    param_only: bool = False  # only parameter directions make sense
    needs_factors: bool = False  # needs a factor model (the procedural regressor)

    def make_params(self, **overrides) -> Any:
        """``Params`` with ``overrides`` (unknown names are an error listing the valid ones)."""
        names = {f.name for f in fields(self.params)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise AtlasError(
                f"analysis '{self.name}' has no parameter {', '.join(bad)}; "
                f"its parameters are {', '.join(sorted(names))}"
            )
        return self.params(**overrides)


ANALYSES: dict[str, AnalysisSpec] = {
    "curves": AnalysisSpec("curves", curves.Params, curves.run, "distance vs shift t"),
    "locality": AnalysisSpec("locality", locality.Params, locality.run, "where in the image the edit acts"),
    "fid": AnalysisSpec("fid", realism.Params, realism.run, "realism (Fréchet distance) vs shift t"),
    "reproduce": AnalysisSpec(
        "reproduce", reproduce.Params, reproduce.run, "can a latent shift reproduce a parameter edit?", param_only=True
    ),
    "score": AnalysisSpec("score", score.Params, score.run, "ground-truth purity and coverage", needs_factors=True),
}


def get_analysis(name: str) -> AnalysisSpec:
    if name not in ANALYSES:
        raise AtlasError(f"unknown analysis '{name}'; choose one of {', '.join(ANALYSES)}")
    return ANALYSES[name]


__all__ = ["ANALYSES", "AnalysisResult", "AnalysisSpec", "get_analysis", "load_result"]
