"""The discovery form is built from any method's frozen Params dataclass."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

import pytest

from engine.discovery.registry import MethodSpec, methods
from engine.errors import AtlasError


class Mode(enum.Enum):
    FAST = "fast"
    EXACT = "exact"


@dataclass(frozen=True)
class AllKinds:
    k: int = field(default=16, metadata={"help": "directions", "min": 1, "max": 512})
    lr: float = field(default=1e-4, metadata={"help": "learning rate", "min": 0.0})
    use_bn: bool = True
    distance: Literal["alex", "vgg", "squeeze"] = "vgg"
    norm: str = field(default="auto", metadata={"choices": ("auto", "yes", "no")})
    layer: str = "auto"
    label: str = "run"
    limit: int | None = None
    shifts: tuple[float, ...] = (-2.0, 2.0)
    mode: Mode = Mode.EXACT


def _spec(params=AllKinds) -> MethodSpec:
    return MethodSpec("all-kinds", params, lambda *a, **k: iter(()), "latent")


def test_form_round_trips_every_field_kind(qtbot, tiny_gen):
    from desktop.discovery import ParamsForm

    form = ParamsForm(_spec(), tiny_gen)
    qtbot.addWidget(form)
    assert form.make_params() == AllKinds()
    layer_box = next(p for p in form.fields if p.name == "layer").widget
    assert [layer_box.itemText(i) for i in range(layer_box.count())][:2] == ["auto", "main.0"]  # editable layers
    for name, value in [
        ("k", 64),
        ("lr", 0.003),
        ("use_bn", False),
        ("distance", "alex"),
        ("norm", "no"),
        ("layer", "main.3"),
        ("label", "x y"),
        ("limit", 7),
        ("shifts", (-1.0, 0.0, 1.0)),
        ("mode", Mode.FAST),
    ]:
        form.set_value(name, value)
    assert form.make_params() == AllKinds(
        64, 0.003, False, "alex", "no", "main.3", "x y", 7, (-1.0, 0.0, 1.0), Mode.FAST
    )
    form.set_value("limit", None)
    assert form.make_params().limit is None
    form.reset()
    assert form.make_params() == AllKinds()


def test_form_rejects_bad_values_with_the_parameter_name(qtbot, tiny_gen):
    from desktop.discovery import ParamsForm

    form = ParamsForm(_spec(), tiny_gen)
    qtbot.addWidget(form)
    form.fields[1].widget.setText("fast")
    with pytest.raises(AtlasError, match="method 'all-kinds': parameter lr='fast' must be a finite number"):
        form.make_params()
    form.fields[1].widget.setText("-1")
    with pytest.raises(AtlasError, match="parameter lr=-1.0 is too small; it must be at least 0.0"):
        form.make_params()
    form.fields[1].widget.setText("0.001")
    shifts = next(p for p in form.fields if p.name == "shifts").widget
    shifts.setText("-1, x")
    with pytest.raises(AtlasError, match="parameter shifts='-1, x' must be comma-separated values, each a finite"):
        form.make_params()
    shifts.setText("-1; 0.5")  # the command line's rules: commas or semicolons
    assert form.make_params().shifts == (-1.0, 0.5)


@pytest.mark.parametrize("spec", methods(), ids=lambda s: s.name)
def test_every_registered_method_gets_a_form_with_its_defaults(qtbot, tiny_gen, spec):
    from desktop.discovery import ParamsForm

    form = ParamsForm(spec, tiny_gen)
    qtbot.addWidget(form)
    assert form.make_params() == spec.params()


def test_layer_choice_lists_the_mapping_layers_of_a_style_model(qtbot):
    from desktop.discovery import ParamsForm
    from engine.discovery import get_method
    from engine.models import load_generator

    gen = load_generator("procedural-stylegan2-32", device="cpu")
    form = ParamsForm(get_method("param-svd"), gen)
    qtbot.addWidget(form)
    box = next(p for p in form.fields if p.name == "layer").widget
    items = [box.itemText(i) for i in range(box.count())]
    assert items[1:4] == ["mapping.fc0", "mapping.fc1", "mapping.fc2"] and "synthesis.b8.conv0" in items
    form.set_value("layer", "mapping.fc2")
    assert form.make_params().layer == "mapping.fc2"
