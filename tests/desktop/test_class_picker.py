"""The class picker of class-conditional models (pytest-qt, offscreen)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt

from engine.directions import DirectionSet, model_ref
from tests.engine.tiny_generators import TINY_CLASS_NAMES, tiny_biggan


@pytest.fixture(scope="module")
def biggan():
    return tiny_biggan()


def wait_preview(qtbot, win):
    qtbot.waitUntil(lambda: win.preview.image() is not None and not win.preview.renderer.busy, timeout=10000)


def wait_new_image(qtbot, win, old):
    qtbot.waitUntil(
        lambda: (
            win.preview.image() is not None
            and not win.preview.renderer.busy
            and not np.array_equal(win.preview.image(), old)
        ),
        timeout=10000,
    )


def test_picker_is_hidden_for_unconditional_models(qtbot, make_window):
    win = make_window()
    assert not win.preview.class_picker.isVisible() and not win.preview.class_label.isVisible()
    assert win.preview.current_request().class_index is None


def test_picker_lists_the_classes_and_typing_a_name_changes_the_image(qtbot, make_window, biggan):
    win = make_window(gen=biggan)
    picker = win.preview.class_picker
    assert picker.isVisible() and picker.count() == len(TINY_CLASS_NAMES)
    assert picker.itemText(2) == "2  golden retriever" and win.ws.class_index == 0
    wait_preview(qtbot, win)
    first = win.preview.image().copy()
    assert "class 0  tench" in win.preview.canvas.caption

    # search: a part of a name, case-insensitive, lists the matching classes
    assert picker.matches("RETR") == [2] and picker.matches("t") == [0, 2, 3]
    picker.lineEdit().clear()
    qtbot.keyClicks(picker.lineEdit(), "retr")
    qtbot.waitUntil(lambda: picker.completer().completionCount() == 1)
    assert picker.completer().currentCompletion() == "2  golden retriever"
    qtbot.keyClick(picker.lineEdit(), Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: win.ws.class_index == 2)
    assert picker.currentIndex() == 2
    wait_new_image(qtbot, win, first)
    assert win.preview.current_request().class_index == 2 and "golden retriever" in win.preview.canvas.caption
    with torch.no_grad():  # the preview shows exactly seed 0 of class 2
        want = biggan.decode(biggan.seed_latents([0]), classes=2)
    from engine.render import to_uint8

    assert np.array_equal(win.preview.image(), to_uint8(want)[0])

    # an index works too, and the dropdown list picks by click
    picker.lineEdit().clear()
    qtbot.keyClicks(picker.lineEdit(), "4")
    qtbot.keyClick(picker.lineEdit(), Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: win.ws.class_index == 4)
    picker.activated.emit(3)
    qtbot.waitUntil(lambda: win.ws.class_index == 3)
    # nothing matches: the class stays
    picker.lineEdit().clear()
    qtbot.keyClicks(picker.lineEdit(), "zebra")
    qtbot.keyClick(picker.lineEdit(), Qt.Key.Key_Return)
    assert win.ws.class_index == 3


def test_a_set_shows_on_its_class_and_the_grid_follows_the_picker(qtbot, make_window, biggan, tmp_path):
    view = biggan.conditioned(classes=[4])
    dset = DirectionSet.latent("test", model_ref(view), torch.randn(3, biggan.z_dim), range_=(-2.0, 2.0))
    dset.save(tmp_path / "found-on-4.json")
    win = make_window([tmp_path / "found-on-4.json"], gen=biggan)
    qtbot.waitUntil(lambda: len(win.ws.entries) == 1 and win.ws.current is not None, timeout=10000)
    assert win.ws.class_index == 4 and win.preview.class_picker.currentIndex() == 4
    win.show_dock("grid")
    qtbot.waitUntil(lambda: 0 in win.grid.model.cache, timeout=15000)
    gen_before = win.grid.model.generation
    win.preview.class_picker.activated.emit(1)  # the user prefers another class: the grid re-renders
    qtbot.waitUntil(lambda: win.grid.model.generation > gen_before and 0 in win.grid.model.cache, timeout=15000)
    win.ws.select(win.ws.entries[0], 2)  # another direction of the same set keeps the user's class
    assert win.ws.class_index == 1


def test_discovery_in_the_editor_runs_on_the_picked_class(qtbot, make_window, biggan):
    win = make_window(gen=biggan)
    qtbot.waitUntil(lambda: win.discovery.method.count() > 0)
    win.preview.class_picker.activated.emit(3)
    panel = win.discovery
    win.show_dock("discovery")
    panel.select_method("sefa")
    panel.form.set_value("k", 4)
    with qtbot.waitSignal(panel.setFinished, timeout=60000) as blocker:
        qtbot.mouseClick(panel.start_btn, Qt.MouseButton.LeftButton)
    entry = blocker.args[0]
    assert entry.dset.classes == [3] and DirectionSet.load(entry.dset.path).classes == [3]
    assert win.ws.gen.bound_classes is None  # the job ran on a view; the shared generator is unchanged
