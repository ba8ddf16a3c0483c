"""The export dialog and the preview's seed field parse with engine.selection (the CLI's parsers)."""

from __future__ import annotations

import pytest

from engine.errors import AtlasError
from tests.desktop.conftest import make_set


def test_export_dialog_takes_more_than_sixteen_directions(qtbot, tiny_gen, tmp_path):
    from desktop.export_dialog import ExportContext, ExportDialog
    from desktop.workspace import SetEntry

    dset = make_set(tiny_gen, tmp_path / "big.json", k=40)
    dlg = ExportDialog(ExportContext(gen=tiny_gen, entry=SetEntry(dset), current=0, images={}), "grid")
    qtbot.addWidget(dlg)
    assert dlg._indices("0-31") == list(range(32))  # was cut to 16 by the preview's seed parser
    assert dlg._indices("all") == list(range(40))
    with pytest.raises(AtlasError, match=r"directions '0-40': the set has 40 directions \(0..39\)"):
        dlg._indices("0-40")
    with pytest.raises(AtlasError, match="directions 'abc'"):
        dlg._indices("abc")
    assert dlg._seed_list("0-19") == list(range(20))
    with pytest.raises(AtlasError, match="seeds '0-100000000': more than 1024 seeds"):
        dlg._seed_list("0-100000000")


def test_preview_seed_field_shows_the_first_seeds_of_a_huge_range():
    from desktop.preview import MAX_SEEDS, parse_seed_text

    assert parse_seed_text("3,0-4000000000") == (3, *range(MAX_SEEDS - 1))
    assert parse_seed_text("@photo,2", {"photo": "LAT"}) == ("LAT", 2)
    for bad in ("x", "", "@nope", "-1"):
        with pytest.raises(ValueError):
            parse_seed_text(bad, {})
