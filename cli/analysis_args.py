"""Options shared by ``main.py analyze`` and ``main.py score``: Params fields from the command line,
and the model a direction set was found on."""

from __future__ import annotations

import dataclasses
import math
import typing

from cli.common import load_model_for_set as _load_model_for_set
from engine.errors import BadValueError


def add_set_option(p) -> None:
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any parameter of the analysis (repeatable), e.g. --set batch_size=32",
    )


def params_from_args(spec, args, shortcuts: dict[str, str]):
    """The analysis' ``Params`` from ``--set NAME=VALUE`` and shortcut flags (``dest -> field``)."""
    hints = typing.get_type_hints(spec.params)
    names = {f.name for f in dataclasses.fields(spec.params)}
    raw: dict[str, str] = {}
    for text in args.sets:
        if "=" not in text:
            raise BadValueError(f"--set {text}: expected NAME=VALUE")
        name, value = (s.strip() for s in text.split("=", 1))
        raw[name] = value
    for dest, name in shortcuts.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if name not in names:  # a flag of another analysis: refused, not silently ignored
            flag = "--" + dest.replace("_", "-")
            raise BadValueError(
                f"{flag} does not apply to analysis '{spec.name}'; its parameters are {', '.join(sorted(names))}"
            )
        raw[name] = str(value)
    values = {}
    for name, text in raw.items():
        if name not in names:
            raise BadValueError(
                f"analysis '{spec.name}' has no parameter '{name}'; its parameters are {', '.join(sorted(names))}"
            )
        values[name] = _parse(name, text, hints[name])
    field = {f.name: f for f in dataclasses.fields(spec.params)}
    for name, value in values.items():
        choices = field[name].metadata.get("choices")
        if choices and value not in choices:
            raise BadValueError(f"{name} '{value}': choose one of {', '.join(map(str, choices))}")
    return spec.make_params(**values)


def _parse(name: str, text: str, hint):
    args = typing.get_args(hint)
    if type(None) in args:
        if text.lower() in ("", "none", "default"):
            return None
        hint = next(a for a in args if a is not type(None))
    try:
        if hint is int:
            return int(text)
        if hint is float:
            v = float(text)
            if not math.isfinite(v):
                raise BadValueError(f"{name} '{text}': must be a finite number")
            return v
        if hint is bool:
            return text.lower() in ("1", "true", "yes", "on")
    except ValueError:
        raise BadValueError(f"{name} '{text}': expected {hint.__name__}") from None
    return text


def load_model_for_set(args, dset):
    """``--model`` if given, else the model the set was found on (``cli.common.load_model_for_set``)."""
    gen = _load_model_for_set(args, dset)
    if gen.num_classes and dset.classes:
        # analyses compare each latent's edited and unedited images: one class (the set's first) for all
        gen = gen.conditioned(classes=dset.classes[:1])
    return gen
