"""``Params``: the frozen dataclasses that configure discovery methods and analyses.

A method or analysis declares its settings as a frozen dataclass whose defaults are the paper's.
Field metadata understood everywhere (the GUI forms, ``main.py discover / analyze / score --set``):
``help`` (one line), ``choices`` (allowed values), ``min`` / ``max`` (inclusive bounds),
``key`` (``False`` for fields that do not change a run's trajectory, such as the step count: a
run may be resumed with a different value of those) and ``key_of`` (a function of the value giving
what identifies the run instead of the value itself, e.g. the content hash of a file a path names).

This module is the one place that turns what users give into a ``Params``:

* ``make_params(cls, owner, values)``: from Python values (unknown names are an error listing
  the valid ones; every value is checked by ``validate_params``);
* ``params_from_text(cls, owner, {"name": "text"})``: from text, each value parsed by its
  field's type with ``parse_value``; the editor's form fields use ``parse_value`` too.

The rules of ``parse_value`` (one set for the command line and the editor):

* ``bool``: ``true / false``, ``yes / no``, ``on / off``, ``1 / 0`` (any case); anything else
  is refused (not read as false);
* ``int``: a whole number (``12``, ``-3``); ``float``: any finite number (``3e-4``);
* ``X | None``: empty text or ``none`` (any case) is ``None``, else parsed as ``X``;
* ``tuple[X, ...]`` / ``list[X]``: items separated by commas (or semicolons), each parsed as
  ``X``; empty text is the empty tuple; a fixed-length ``tuple[X, Y]`` needs exactly that many;
* ``Literal[...]`` and ``enum.Enum``: one of the values (an enum by its name or value);
* ``str``: the text, stripped of surrounding blanks.

Every refusal is one ``BadValueError`` line naming the owner, the parameter, the text and what
it must be.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from engine.errors import BadValueError

TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")
NONE_WORDS = ("", "none")


def field_hints(cls: type) -> dict[str, Any]:
    """The type of each field of the dataclass ``cls`` (annotations resolved; where they cannot be,
    the type of the field's default)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to the defaults' types
        hints = {}
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in hints:
            out[f.name] = hints[f.name]
        elif f.default is not dataclasses.MISSING:
            out[f.name] = type(f.default)
        else:
            out[f.name] = str
    return out


def optional_inner(hint: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None`` (``Optional[X]``), else ``(hint, False)``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        return (rest[0] if len(rest) == 1 else str), True
    return hint, False


def type_name(hint: Any) -> str:
    """What a value of type ``hint`` must be, in words (for error messages)."""
    hint, optional = optional_inner(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        words = "true or false (or yes/no, on/off, 1/0)"
    elif hint is int:
        words = "a whole number"
    elif hint is float:
        words = "a finite number"
    elif origin is typing.Literal:
        words = "one of " + ", ".join(map(str, args))
    elif isinstance(hint, type) and issubclass(hint, enum.Enum):
        words = "one of " + ", ".join(m.name.lower() for m in hint)
    elif origin in (tuple, list):
        elem = args[0] if args else str
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            words = f"{len(args)} comma-separated values"
        else:
            words = f"comma-separated values, each {type_name(elem)}"
    else:
        words = "text"
    return words + (" (empty or none: no value)" if optional else "")


def parse_value(text: str, hint: Any, *, name: str, owner: str = "") -> Any:
    """``text`` as a value of type ``hint``, by the rules in this module's docstring."""
    text = str(text).strip()
    where = f"{owner}: " if owner else ""
    try:
        return _parse(text, hint)
    except (ValueError, TypeError, KeyError):
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise BadValueError(f"{where}parameter {name}='{shown}' must be {type_name(hint)}") from None


def _parse(text: str, hint: Any) -> Any:
    hint, optional = optional_inner(hint)
    if optional and text.lower() in NONE_WORDS:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        low = text.lower()
        if low in TRUE_WORDS:
            return True
        if low in FALSE_WORDS:
            return False
        raise ValueError(text)
    if hint is int:
        return int(text)
    if hint is float:
        v = float(text)
        if not math.isfinite(v):
            raise ValueError(text)
        return v
    if origin is typing.Literal:
        for a in args:
            if str(a) == text:
                return a
        raise ValueError(text)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        for m in hint:
            if text.lower() in (m.name.lower(), str(m.value).lower()):
                return m
        raise ValueError(text)
    if origin in (tuple, list):
        parts = [p.strip() for p in text.replace(";", ",").split(",")] if text else []
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(parts) != len(args):
                raise ValueError(text)
            return tuple(_parse(p, a) for p, a in zip(parts, args))
        elem = args[0] if args else str
        items = [_parse(p, elem) for p in parts]
        return tuple(items) if origin is tuple else items
    return text


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


def _check_names(cls: type, owner: str, names) -> None:
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    bad = sorted(set(names) - fields)
    if bad:
        raise BadValueError(
            f"{owner} has no parameter {', '.join(bad)}; its parameters are {', '.join(sorted(fields))}"
        )


def make_params(cls: type, owner: str, values: Mapping[str, Any]) -> Any:
    """``cls(**values)``, checked: unknown names and bad values are one ``BadValueError`` line.

    ``owner`` names whose parameters these are in messages, e.g. ``"method 'sefa'"``.
    """
    _check_names(cls, owner, values)
    try:
        params = cls(**values)
    except TypeError as exc:  # e.g. a Params class with a field that has no default
        raise BadValueError(f"{owner}: {exc}") from None
    validate_params(params)  # also for a Params class whose __post_init__ does not
    return params


def params_from_text(cls: type, owner: str, pairs: Mapping[str, str]) -> Any:
    """``make_params`` from ``{"name": "text"}`` (``--set name=text``), each parsed by its field's type."""
    _check_names(cls, owner, pairs)
    hints = field_hints(cls)
    return make_params(cls, owner, {k: parse_value(v, hints[k], name=k, owner=owner) for k, v in pairs.items()})


class HasParams:
    """Mixin of a registry entry (``MethodSpec``, ``AnalysisSpec``) with a ``name`` and a ``params``
    dataclass: ``make_params`` / ``params_from_strings`` with the entry named in messages."""

    name: str
    params: type
    what: str = "method"

    @property
    def owner(self) -> str:
        return f"{self.what} '{self.name}'"

    def make_params(self, **overrides) -> Any:
        """Params with ``overrides`` (unknown names are an error listing the valid ones)."""
        return make_params(self.params, self.owner, overrides)

    def params_from_strings(self, pairs: Mapping[str, str]) -> Any:
        """Params from ``{"name": "text"}`` (``--set name=text``, a form's text), by ``parse_value``."""
        return params_from_text(self.params, self.owner, pairs)
