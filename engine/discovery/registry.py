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

Field metadata understood here (and by the GUI form and ``main.py discover --set``):
``help`` (one line), ``choices`` (allowed values), ``min`` / ``max`` (inclusive bounds),
``key`` (``False`` for fields that do not change a run's trajectory, such as the step count or
how often RCA is logged: a run may be resumed with a different value of those) and ``key_of``
(a function of the value giving what identifies the run instead of the value itself, e.g. the
content hash of a file a path names: the same file under another path is the same run).
``validate_params`` checks choices and bounds; Params classes call it from ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.errors import AtlasError, BadValueError


@dataclass(frozen=True)
class MethodSpec:
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

    def make_params(self, **overrides) -> Any:
        """Params with ``overrides`` (unknown names are an error listing the valid ones)."""
        fields = {f.name for f in dataclasses.fields(self.params)}
        bad = sorted(set(overrides) - fields)
        if bad:
            raise BadValueError(
                f"method '{self.name}' has no parameter {', '.join(bad)}; its parameters are {', '.join(sorted(fields))}"
            )
        params = self.params(**overrides)
        validate_params(params)  # also for a Params class whose __post_init__ does not
        return params

    def params_from_strings(self, pairs: dict[str, str]) -> Any:
        """Params from ``{"name": "text"}`` (``--set name=text``), each parsed by the field's type."""
        fields = {f.name: f for f in dataclasses.fields(self.params)}
        bad = sorted(set(pairs) - set(fields))
        if bad:
            raise BadValueError(
                f"method '{self.name}' has no parameter {', '.join(bad)}; its parameters are {', '.join(sorted(fields))}"
            )
        hints = typing.get_type_hints(self.params)
        params = self.params(**{k: parse_param_value(self.name, k, hints[k], v) for k, v in pairs.items()})
        validate_params(params)
        return params


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


def validate_params(params: Any) -> None:
    """Check every field of a Params instance against its ``choices`` / ``min`` / ``max`` metadata.

    Every number must be finite (``nan`` and ``inf`` are refused whatever the bounds). Raises
    ``BadValueError`` naming the parameter, the bad value and what is allowed.
    """
    for f in dataclasses.fields(params):
        v = getattr(params, f.name)
        meta = f.metadata
        if "choices" in meta and v not in meta["choices"]:
            raise BadValueError(
                f"parameter {f.name}={v!r} is not allowed; choose one of {', '.join(map(str, meta['choices']))}"
            )
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not math.isfinite(v):
            raise BadValueError(f"parameter {f.name}={v!r} must be a finite number")
        if isinstance(v, int) and not -(2**63) <= v < 2**63:
            raise BadValueError(f"parameter {f.name}={v!r} is out of range (a 64-bit integer)")
        if "min" in meta and v < meta["min"]:
            raise BadValueError(f"parameter {f.name}={v!r} is too small; it must be at least {meta['min']}")
        if "max" in meta and v > meta["max"]:
            raise BadValueError(f"parameter {f.name}={v!r} is too large; it must be at most {meta['max']}")


def key_fields(params: Any) -> dict[str, Any]:
    """The fields that identify a run (all but those with ``metadata={"key": False}``), each through
    its ``key_of`` function where it has one."""
    out = {}
    for f in dataclasses.fields(params):
        if f.metadata.get("key", True):
            value = getattr(params, f.name)
            out[f.name] = f.metadata["key_of"](value) if "key_of" in f.metadata else value
    return out


def parse_param_value(method: str, name: str, tp: Any, text: str) -> Any:
    """Parse ``text`` as a value of type ``tp`` (int, float, bool, str or ``X | None``)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    optional = type(None) in typing.get_args(tp)
    if optional and text.strip().lower() in ("none", "null", ""):
        return None
    if optional and len(args) == 1:
        tp = args[0]
    try:
        if tp is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
    except ValueError:
        kind = {bool: "true/false", int: "an integer", float: "a number"}[tp]
        raise BadValueError(f"method '{method}': parameter {name}={text!r} must be {kind}") from None
    return text
