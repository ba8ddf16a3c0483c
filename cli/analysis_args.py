"""Options shared by ``main.py analyze`` and ``main.py score``: Params fields from the command line,
and the model a direction set was found on."""

from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path

from engine.errors import AtlasError


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
            raise AtlasError(f"--set {text}: expected NAME=VALUE")
        name, value = (s.strip() for s in text.split("=", 1))
        raw[name] = value
    for dest, name in shortcuts.items():
        value = getattr(args, dest, None)
        if value is not None and name in names:
            raw[name] = str(value)
    values = {}
    for name, text in raw.items():
        if name not in names:
            raise AtlasError(
                f"analysis '{spec.name}' has no parameter '{name}'; its parameters are {', '.join(sorted(names))}"
            )
        values[name] = _parse(name, text, hints[name])
    field = {f.name: f for f in dataclasses.fields(spec.params)}
    for name, value in values.items():
        choices = field[name].metadata.get("choices")
        if choices and value not in choices:
            raise AtlasError(f"{name} '{value}': choose one of {', '.join(map(str, choices))}")
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
            return float(text)
        if hint is bool:
            return text.lower() in ("1", "true", "yes", "on")
    except ValueError:
        raise AtlasError(f"{name} '{text}': expected {hint.__name__}") from None
    return text


def load_model_for_set(args, dset):
    """``--model`` if given, else the model the set names (built-in name or file), else the default."""
    from engine.device import cap_threads
    from engine.models import load_generator
    from engine.models.registry import builtin_models

    cap_threads(args.threads or None)
    spec = args.model
    if not spec:
        ref = dset.model or {}
        for cand in (ref.get("source"), ref.get("name")):
            if cand and (cand in {m.name for m in builtin_models()} or Path(str(cand)).exists()):
                spec = str(cand)
                break
    gen = load_generator(spec, device=args.device)
    ident = (dset.model or {}).get("identity")
    if ident and gen.identity and ident != gen.identity:
        print(
            f"warning: {dset.title} was found on model {dset.model.get('name')!r}, not on {gen.name!r}", file=sys.stderr
        )
    if gen.num_classes and dset.classes:
        # analyses compare each latent's edited and unedited images: one class (the set's first) for all
        gen = gen.conditioned(classes=dset.classes[:1])
    return gen
