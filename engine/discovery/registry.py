"""The method registry: each discovery method registers a frozen ``Params`` dataclass and a job.

A method module looks like::

    @dataclass(frozen=True)
    class Params:
        k: int = 16                      # field metadata "help" is shown in the GUI form / CLI
        layers: str = "all"

    @register_method("sefa", Params, kind="latent", summary="closed-form factorisation (Shen & Zhou)")
    def run(gen, params: Params, *, device, state=None) -> Iterator[Progress]:
        ...
        yield Progress(step, total, metrics={...}, partial=partial_set, state=resumable_state)
        return direction_set

``state`` is what a previous, cancelled run of the same method and params yielded last as
``Progress.state`` (a dict of tensors / plain data); a method that supports resuming continues
from it. ``engine.discovery.checkpoint`` saves and loads such states.

Params field metadata (``help``, ``choices``, ``min`` / ``max``, ``key``), the text parser of the
CLI's ``--set`` and the editor's form, and ``validate_params`` (which Params classes call from
``__post_init__``) live in ``engine.params``, shared with the analyses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.errors import AtlasError, BadValueError
from engine.params import HasParams


@dataclass(frozen=True)
class MethodSpec(HasParams):
    """A registered method: ``make_params`` / ``params_from_strings`` come from ``engine.params``."""

    name: str
    params: type  # a frozen dataclass whose defaults are the paper's settings
    run: Callable[..., Iterator[Any]]
    kind: str  # "latent" | "param"
    summary: str = ""
    resumable: bool = False
    # capabilities (engine.models.base), any one of which the method needs; empty: any model
    requires: tuple[str, ...] = ()

    def unsupported_reason(self, gen) -> str | None:
        """Why this method cannot run on ``gen`` (one line), or ``None`` when it can."""
        if self.requires and not any(gen.supports(c) for c in self.requires):
            need = " or ".join(c.replace("_", " ") for c in self.requires)
            notes = [gen.capability_notes[c] for c in self.requires if c in gen.capability_notes]
            why = f" ({notes[0]})" if notes else ""
            return f"{self.name} needs a model with {need}; model '{gen.name}' ({gen.family}) has none{why}"
        if self.kind == "param" and not gen.editable_layers():
            return f"{self.name} edits weights; model '{gen.name}' ({gen.family}) has no editable layers"
        return None

    def check_model(self, gen) -> None:
        reason = self.unsupported_reason(gen)
        if reason:
            raise AtlasError(reason)


_METHODS: dict[str, MethodSpec] = {}


def register_method(
    name: str, params: type, *, kind: str, summary: str = "", resumable: bool = False, requires: tuple[str, ...] = ()
):
    if not dataclasses.is_dataclass(params) or not params.__dataclass_params__.frozen:
        raise TypeError(f"method '{name}': Params must be a frozen dataclass")

    def deco(fn):
        if name in _METHODS:
            raise ValueError(f"method '{name}' registered twice")
        _METHODS[name] = MethodSpec(name, params, fn, kind, summary, resumable, requires)
        return fn

    return deco


def methods() -> list[MethodSpec]:
    return list(_METHODS.values())


def get_method(name: str) -> MethodSpec:
    if name not in _METHODS:
        raise BadValueError(
            f"unknown discovery method '{name}'; valid methods: {', '.join(sorted(_METHODS)) or 'none'}"
        )
    return _METHODS[name]
