"""Options shared by ``main.py discover``, ``analyze`` and ``score``: Params fields from the command
line (``--set NAME=VALUE``, parsed by ``engine.params``), and the model a direction set was found on."""

from __future__ import annotations

import dataclasses

from cli.common import load_model_for_set as _load_model_for_set
from cli.common import set_pairs
from engine.errors import BadValueError


def params_from_args(spec, args, shortcuts: dict[str, str]):
    """The analysis' ``Params`` from ``--set NAME=VALUE`` and shortcut flags (``dest -> field``),
    parsed by ``engine.params`` (the editor's forms use the same rules)."""
    names = {f.name for f in dataclasses.fields(spec.params)}
    raw = set_pairs(args.sets)
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
    return spec.params_from_strings(raw)


def load_model_for_set(args, dset):
    """``--model`` if given, else the model the set was found on (``cli.common.load_model_for_set``)."""
    gen = _load_model_for_set(args, dset)
    if gen.num_classes and dset.classes:
        # analyses compare each latent's edited and unedited images: one class (the set's first) for all
        gen = gen.conditioned(classes=dset.classes[:1])
    return gen
