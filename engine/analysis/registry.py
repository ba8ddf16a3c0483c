"""The registry of analyses: each analysis module registers itself with one ``AnalysisSpec``.

An analysis is one module (``engine/analysis/NAME.py``) holding a frozen ``Params`` dataclass, a
result class (``AnalysisResult`` subclass with ``kind``, ``draw(path)`` for the PNG figure and
``report_lines()`` for the CLI), a job ``run(gen, dirset, indices, params, **inputs)``, and the
call ``register_analysis(AnalysisSpec(...))``; ``engine/analysis/__init__.py`` imports it. The CLI
(``main.py analyze NAME``) and the editor's analysis panel list the registry; the editor draws a
result with its own view where it has one and with the result's PNG figure otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.errors import AtlasError, BadValueError
from engine.params import HasParams


@dataclass(frozen=True)
class AnalysisSpec(HasParams):
    """One analysis: its name, ``Params`` dataclass, job, result class and what it needs
    (``make_params`` / ``params_from_strings``: ``engine.params``)."""

    what = "analysis"  # how messages name it: "analysis 'curves'"

    name: str
    params: type
    run: Callable[..., Iterator[Any]]
    summary: str
    result: type  # the AnalysisResult subclass the job returns
    param_only: bool = False  # only parameter directions make sense
    needs_factors: bool = False  # needs a factor model (the procedural regressor): ``main.py score``


ANALYSES: dict[str, AnalysisSpec] = {}


def register_analysis(spec: AnalysisSpec) -> AnalysisSpec:
    if spec.name in ANALYSES:
        raise ValueError(f"analysis '{spec.name}' registered twice")
    ANALYSES[spec.name] = spec
    return spec


def get_analysis(name: str) -> AnalysisSpec:
    if name not in ANALYSES:
        raise BadValueError(f"unknown analysis '{name}'; choose one of {', '.join(ANALYSES)}")
    return ANALYSES[name]


def spec_of_result(result) -> AnalysisSpec:
    """The analysis that produces results of ``result``'s kind."""
    for spec in ANALYSES.values():
        if spec.result.kind == result.kind:
            return spec
    raise AtlasError(f"no registered analysis produces results of kind '{result.kind}'")
