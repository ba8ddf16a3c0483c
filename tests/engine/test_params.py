"""One set of rules turns text into Params values: ``main.py discover / analyze / score --set`` and
the editor's forms all use ``engine.params`` (before, three parsers disagreed on bools and tuples)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

import pytest

from engine.analysis.registry import ANALYSES
from engine.discovery.registry import MethodSpec, methods
from engine.errors import BadValueError
from engine.params import make_params, params_from_text, parse_value


class Mode(enum.Enum):
    FAST = "fast"
    EXACT = "exact"


@dataclass(frozen=True)
class Every:
    k: int = field(default=16, metadata={"min": 1})
    lr: float = 1e-4
    flag: bool = True
    limit: int | None = None
    shifts: tuple[float, ...] = (-2.0, 2.0)
    pair: tuple[int, int] = (0, 1)
    names: list[str] = field(default_factory=list)
    net: Literal["alex", "vgg"] = "vgg"
    mode: Mode = Mode.EXACT
    label: str = "run"


OWNER = "method 'every'"


@pytest.mark.parametrize(
    "name, text, value",
    [
        ("flag", "true", True),
        ("flag", "Yes", True),
        ("flag", "ON", True),
        ("flag", "1", True),
        ("flag", "false", False),
        ("flag", "no", False),
        ("flag", "off", False),
        ("flag", "0", False),
        ("k", " 12 ", 12),
        ("lr", "3e-4", 3e-4),
        ("limit", "", None),
        ("limit", "None", None),
        ("limit", "7", 7),
        ("shifts", "-1, 0,1", (-1.0, 0.0, 1.0)),
        ("shifts", "-1;1", (-1.0, 1.0)),
        ("shifts", "", ()),
        ("pair", "3,4", (3, 4)),
        ("names", "a, b", ["a", "b"]),
        ("net", "alex", "alex"),
        ("mode", "fast", Mode.FAST),
        ("mode", "EXACT", Mode.EXACT),
        ("label", "  two words ", "two words"),
    ],
)
def test_text_to_value(name, text, value):
    assert params_from_text(Every, OWNER, {name: text}) == Every(**{name: value})


@pytest.mark.parametrize(
    "name, text, words",
    [
        ("flag", "maybe", "true or false"),  # the editor's and analyze's parsers read this as False
        ("flag", "", "true or false"),
        ("k", "1.5", "a whole number"),
        ("k", "many", "a whole number"),
        ("lr", "inf", "a finite number"),
        ("lr", "nan", "a finite number"),
        ("shifts", "1,x", "comma-separated values, each a finite number"),
        ("pair", "1,2,3", "2 comma-separated values"),
        ("net", "resnet", "one of alex, vgg"),
        ("mode", "slow", "one of fast, exact"),
    ],
)
def test_bad_text_is_one_line_naming_owner_parameter_and_rule(name, text, words):
    with pytest.raises(BadValueError) as err:
        params_from_text(Every, OWNER, {name: text})
    msg = str(err.value)
    assert msg.startswith(f"{OWNER}: parameter {name}='{text}' must be {words}") and "\n" not in msg


def test_names_and_bounds_are_checked_for_text_and_values_alike():
    with pytest.raises(BadValueError, match="method 'every' has no parameter kk; its parameters are flag, k"):
        params_from_text(Every, OWNER, {"kk": "1"})
    with pytest.raises(BadValueError, match="parameter k=0 is too small; it must be at least 1"):
        params_from_text(Every, OWNER, {"k": "0"})
    with pytest.raises(BadValueError, match="parameter k=0 is too small"):
        make_params(Every, OWNER, {"k": 0})
    assert parse_value("on", bool, name="x") is True


def test_every_method_and_analysis_parses_its_defaults_back_from_text():
    """Each registered Params round-trips: the text a form shows for a default parses to it."""
    for spec in [*methods(), *ANALYSES.values()]:
        default = spec.params()
        pairs = {}
        for f in default.__dataclass_fields__.values():
            v = getattr(default, f.name)
            if isinstance(v, bool):
                pairs[f.name] = "yes" if v else "no"
            elif isinstance(v, (tuple, list)):
                pairs[f.name] = ", ".join(map(str, v))
            elif isinstance(v, enum.Enum):
                pairs[f.name] = v.name
            elif v is None:
                pairs[f.name] = "none"
            else:
                pairs[f.name] = repr(v) if isinstance(v, float) else str(v)
        assert spec.params_from_strings(pairs) == default, spec.name


def test_methods_and_analyses_share_make_params():
    spec = MethodSpec("every", Every, lambda *a, **k: iter(()), "latent")
    assert spec.params_from_strings({"flag": "off", "shifts": "1,2"}) == Every(flag=False, shifts=(1.0, 2.0))
    with pytest.raises(BadValueError, match="^analysis 'curves' has no parameter nope"):
        ANALYSES["curves"].make_params(nope=1)
    with pytest.raises(BadValueError, match="^analysis 'curves': parameter seeds='x' must be a whole number"):
        ANALYSES["curves"].params_from_strings({"seeds": "x"})
