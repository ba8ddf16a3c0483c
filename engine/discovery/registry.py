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
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.errors import AtlasError


@dataclass(frozen=True)
class MethodSpec:
    name: str
    params: type  # a frozen dataclass whose defaults are the paper's settings
    run: Callable[..., Iterator[Any]]
    kind: str  # "latent" | "param"
    summary: str = ""
    resumable: bool = False
    models: tuple[str, ...] = ()  # empty: any model; else the model kinds it supports ("dcgan", "stylegan2", ...)

    def make_params(self, **overrides) -> Any:
        """Params with ``overrides`` (unknown names are an error listing the valid ones)."""
        fields = {f.name for f in dataclasses.fields(self.params)}
        bad = sorted(set(overrides) - fields)
        if bad:
            raise AtlasError(f"method '{self.name}' has no parameter {', '.join(bad)}; its parameters are {', '.join(sorted(fields))}")
        return self.params(**overrides)


_METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, params: type, *, kind: str, summary: str = "", resumable: bool = False,
                    models: tuple[str, ...] = ()):
    if not dataclasses.is_dataclass(params) or not params.__dataclass_params__.frozen:
        raise TypeError(f"method '{name}': Params must be a frozen dataclass")

    def deco(fn):
        if name in _METHODS:
            raise ValueError(f"method '{name}' registered twice")
        _METHODS[name] = MethodSpec(name, params, fn, kind, summary, resumable, models)
        return fn

    return deco


def methods() -> list[MethodSpec]:
    return list(_METHODS.values())


def get_method(name: str) -> MethodSpec:
    if name not in _METHODS:
        raise AtlasError(f"unknown discovery method '{name}'; valid methods: {', '.join(sorted(_METHODS)) or 'none'}")
    return _METHODS[name]
