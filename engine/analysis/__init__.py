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

# Each analysis module registers itself (engine.analysis.registry) when imported.
from engine.analysis import curves, locality, realism, reproduce, score  # noqa: F401
from engine.analysis.registry import ANALYSES, AnalysisSpec, get_analysis, register_analysis, spec_of_result
from engine.analysis.results import AnalysisResult, load_result

__all__ = [
    "ANALYSES",
    "AnalysisResult",
    "AnalysisSpec",
    "get_analysis",
    "load_result",
    "register_analysis",
    "spec_of_result",
]
