"""engine.selection: the one parser of seeds, direction indices and shifts, with its bounds; and
finite-number checks of every Params."""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
import pytest

from engine.errors import BadValueError
from engine.selection import (
    MAX_SEED,
    MAX_SEEDS,
    MAX_SHIFTS,
    check_render_size,
    parse_indices,
    parse_seeds,
    parse_shifts,
)


def test_seeds():
    assert parse_seeds("0-3,9") == [0, 1, 2, 3, 9]
    assert parse_seeds(" 5 ") == [5]
    assert parse_seeds(f"{MAX_SEED}") == [MAX_SEED]
    for text, msg in [
        ("x", "'x' is not a seed or a range"),
        ("", "no seeds given"),
        (",", "no seeds given"),
        ("-5", "seeds are whole numbers from 0 to"),
        (f"{MAX_SEED + 1}", "seeds are whole numbers from 0 to"),
        ("5-3", "runs backwards"),
        ("@photo", "'@photo' is not a seed"),
    ]:
        with pytest.raises(BadValueError, match=msg):
            parse_seeds(text)


def test_huge_seed_ranges_are_refused_or_clipped_without_expanding_them():
    """(Expanding 4e9 seeds first would take minutes and gigabytes.)"""
    with pytest.raises(BadValueError, match=f"more than {MAX_SEEDS} seeds"):
        parse_seeds("0-4000000000")
    assert parse_seeds("0-4000000000", limit=16, clip=True) == list(range(16))
    assert parse_seeds("3,0-4000000000", limit=4, clip=True) == [3, 0, 1, 2]


def test_seeds_with_projected_images():
    images = {"photo": "LATENT"}
    assert parse_seeds("@photo,2", images=images) == ["LATENT", 2]
    with pytest.raises(BadValueError, match=r"no projected image @other \(open ones: @photo\)"):
        parse_seeds("@other", images=images)


def test_indices_are_checked_against_the_set_size():
    assert parse_indices("all", 3) == [0, 1, 2]
    assert parse_indices("0-31", 40) == list(range(32))  # not capped like a preview's seeds
    assert parse_indices("2,0", 3) == [2, 0]
    for text, msg in [
        ("abc", "--index 'abc': 'abc' is not a direction index"),
        ("3", r"the set has 3 directions \(0..2\); 3 is out of range"),
        ("0-100000000", "100000000 is out of range"),
        ("-1", "-1 is out of range"),
        ("@a", "is not a direction index"),
        (" ", "no direction given"),
    ]:
        with pytest.raises(BadValueError, match=msg):
            parse_indices(text, 3)
    with pytest.raises(BadValueError, match="^directions 'x'"):
        parse_indices("x", 3, what="directions")


def test_shifts_are_finite_and_bounded():
    np.testing.assert_allclose(parse_shifts("-3:3:7"), np.linspace(-3, 3, 7))
    np.testing.assert_allclose(parse_shifts("-2, 0,2"), [-2, 0, 2])
    assert len(parse_shifts(f"0:1:{MAX_SHIFTS}")) == MAX_SHIFTS
    for text, msg in [
        ("nan:nan:2", "start 'nan': must be a finite number"),
        ("0:inf:2", "stop 'inf': must be a finite number"),
        (",", "no shifts given"),
        ("1,nan", "must be a finite number"),
        ("-3:3:100000000", f"the count must be from 1 to {MAX_SHIFTS}"),
        ("-3:3:0", "the count must be from 1"),
        ("-3:3:x", "the count 'x' is not a whole number"),
        ("1:2", "expected start:stop:count"),
        ("a", "not a number"),
        (",".join(["1"] * (MAX_SHIFTS + 1)), f"at most {MAX_SHIFTS}"),
    ]:
        with pytest.raises(BadValueError, match=msg):
            parse_shifts(text)


def test_render_size_is_bounded_up_front():
    check_render_size(1024, 256)
    with pytest.raises(BadValueError, match="too many at once; at most"):
        check_render_size(100_000, 1024)
    with pytest.raises(BadValueError, match="the grid: "):
        check_render_size(2000, 1024, raw=True, what="the grid")


def _float_fields(params_cls):
    hints = typing.get_type_hints(params_cls)
    for f in dataclasses.fields(params_cls):
        tp = hints[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if tp is float or args == [float]:
            yield f.name


def test_every_params_refuses_non_finite_numbers():
    """Each discovery method's and analysis' Params refuses nan / inf in every float field."""
    from engine.analysis import ANALYSES
    from engine.discovery import methods

    specs = [(m.name, m.make_params, m.params) for m in methods()]
    specs += [(a.name, a.make_params, a.params) for a in ANALYSES.values()]
    checked = 0
    for _name, make, cls in specs:
        for field in _float_fields(cls):
            for bad in (math.nan, math.inf, -math.inf):
                with pytest.raises(BadValueError, match=f"parameter {field}=(nan|inf|-inf)"):
                    make(**{field: bad})
                checked += 1
    assert checked >= 3 * 20


def test_analysis_counts_must_be_positive():
    from engine.analysis import get_analysis

    with pytest.raises(BadValueError, match="parameter seeds=0 is too small"):
        get_analysis("curves").make_params(seeds=0)
    with pytest.raises(BadValueError, match="parameter batch_size=0 is too small"):
        get_analysis("locality").make_params(batch_size=0)
