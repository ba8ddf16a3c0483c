"""The editor driven through its real widgets (pytest-qt, offscreen)."""

from __future__ import annotations

import os
from pathlib import Path

import imageio.v2 as iio
import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from desktop.workspace import Workspace
from engine.directions import DirectionSet
from tests.desktop import slow_method

REPO = Path(__file__).resolve().parents[2]


def wait_preview(qtbot, win):
    qtbot.waitUntil(lambda: win.preview.image() is not None and not win.preview.renderer.busy, timeout=10000)


def open_set(qtbot, win, dirset):
    qtbot.waitUntil(lambda: len(win.ws.entries) == 1, timeout=10000)
    return win.ws.entries[0]


def test_drag_slider_changes_canvas(qtbot, make_window, dirset):
    win = make_window([dirset.path])
    entry = open_set(qtbot, win, dirset)
    qtbot.waitUntil(lambda: win.ws.current == (entry, 0) and len(win.preview.sliders()) == 1)
    wait_preview(qtbot, win)
    before = win.preview.image().copy()
    slider = win.preview.sliders()[0]._slider
    r = slider.rect()
    qtbot.mousePress(slider, Qt.MouseButton.LeftButton, pos=r.center())
    for x in np.linspace(r.center().x(), r.right() - 2, 6):
        qtbot.mouseMove(slider, QPoint(int(x), r.center().y()))
        qtbot.wait(15)
    qtbot.mouseRelease(slider, Qt.MouseButton.LeftButton, pos=QPoint(r.right() - 2, r.center().y()))
    qtbot.waitUntil(lambda: win.ws.shift(entry, 0) > 3.0, timeout=5000)
    wait_preview(qtbot, win)
    after = win.preview.image()
    assert np.abs(after.astype(int) - before).mean() > 1.0
    # before/after toggle shows the unedited image again without a new render
    qtbot.mouseClick(win.preview.before, Qt.MouseButton.LeftButton)
    assert np.array_equal(win.preview.image(), before)


def test_several_sliders_combine_and_reset(qtbot, make_window, dirset):
    win = make_window([dirset.path])
    entry = open_set(qtbot, win, dirset)
    win.ws.pin(entry, 0)
    win.ws.select(entry, 1)
    assert len(win.preview.sliders()) == 2
    win.preview.sliders()[0].setValue(4.0)
    win.preview.sliders()[1].setValue(-4.0)
    qtbot.waitUntil(lambda: len(win.preview.current_request().shifts) == 2)
    wait_preview(qtbot, win)
    win.preview.reset_btn.click()
    assert win.preview.current_request().shifts == ()
    assert [s.value() for s in win.preview.sliders()] == [0.0, 0.0]


def test_annotations_survive_closing_the_window(qtbot, make_window, dirset):
    win = make_window([dirset.path])
    entry = open_set(qtbot, win, dirset)
    win.ws.select(entry, 2)
    qtbot.keyClicks(win.editor.name, "smile")
    win.editor.rating.buttons[3].click()  # 4 stars
    win.editor.interp_buttons["yes"].click()
    win.editor.tags.setText("face, mouth")
    win.editor.tags.textEdited.emit("face, mouth")
    # on disk at once, before the window closes
    assert DirectionSet.load(dirset.path).directions[2].annotation.name == "smile"
    win.close()

    win2 = make_window([dirset.path])
    entry2 = open_set(qtbot, win2, dirset)
    a = entry2.direction(2).annotation
    assert (a.name, a.rating, a.interpretable, a.tags) == ("smile", 4, "yes", ["face", "mouth"])
    win2.ws.select(entry2, 2)
    assert win2.editor.name.text() == "smile" and win2.editor.rating.rating() == 4
    items = win2.browser._items[(entry2.uid, 2)]
    assert items[1].text() == "smile" and items[3].text() == "★★★★" and items[4].text() == "✓"


def test_undo_redo_rating(qtbot, make_window, dirset):
    win = make_window([dirset.path])
    entry = open_set(qtbot, win, dirset)
    view = win.grid.view
    win.show_dock("grid")
    win.ws.select(entry, 1)
    qtbot.waitUntil(lambda: view.currentIndex().row() == 1)
    qtbot.keyClick(view, "4")
    assert entry.direction(1).annotation.rating == 4
    qtbot.keyClick(view, "2")
    assert entry.direction(1).annotation.rating == 2
    win.undo_action.trigger()
    assert entry.direction(1).annotation.rating == 4
    assert DirectionSet.load(dirset.path).directions[1].annotation.rating == 4
    win.undo_action.trigger()
    assert entry.direction(1).annotation.rating is None
    assert win.editor.rating.rating() is None
    win.redo_action.trigger()
    win.redo_action.trigger()
    assert DirectionSet.load(dirset.path).directions[1].annotation.rating == 2


def test_grid_keyboard(qtbot, make_window, dirset):
    win = make_window([dirset.path])
    entry = open_set(qtbot, win, dirset)
    win.show_dock("grid")
    view = win.grid.view
    model = win.grid.model
    qtbot.waitUntil(lambda: 0 in model.cache, timeout=10000)
    view.setCurrentIndex(model.index(0, 3))
    qtbot.keyClick(view, Qt.Key.Key_Down)
    assert win.ws.current == (entry, 1)
    qtbot.keyClick(view, "i")
    qtbot.keyClick(view, Qt.Key.Key_Down)
    qtbot.keyClick(view, "x")
    qtbot.keyClick(view, "u")
    assert [entry.direction(k).annotation.interpretable for k in (1, 2)] == ["yes", "unsure"]
    qtbot.keyClick(view, "n")
    editor = view.focusWidget()
    qtbot.keyClicks(editor, "age")
    qtbot.keyClick(editor, Qt.Key.Key_Return)  # the view commits on its next event-loop turn
    qtbot.waitUntil(lambda: entry.direction(2).annotation.name == "age")
    # Enter on a shift column loads that cell into the preview
    view.setCurrentIndex(model.index(2, 7))
    qtbot.keyClick(view, Qt.Key.Key_Return)
    assert win.ws.shift(entry, 2) == pytest.approx(6.0)
    # a click on the second seed of a cell loads that seed
    rect = view.visualRect(model.index(2, 1))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(rect.center().x(), rect.bottom() - 3))
    assert win.preview.seed_values() == (1,) and win.ws.shift(entry, 2) == pytest.approx(-6.0)


def test_grid_renders_only_visible_rows_of_a_large_set(qtbot, make_window, tiny_gen, tmp_path):
    from tests.desktop.conftest import make_set

    big = make_set(tiny_gen, tmp_path / "big.json", k=200)
    win = make_window([big.path])
    open_set(qtbot, win, big)
    win.show_dock("grid")
    model = win.grid.model
    qtbot.waitUntil(lambda: 0 in model.cache and not model.renderer.busy, timeout=15000)
    shown = len(model.cache)
    assert 0 < shown < 60
    win.grid.view.scrollToBottom()
    qtbot.waitUntil(lambda: 199 in model.cache, timeout=15000)
    assert len(model.cache) < 120


def _run_discovery(qtbot, win, name, **params):
    panel = win.discovery
    win.show_dock("discovery")
    panel.select_method(name)
    for key, value in params.items():
        panel.form.set_value(key, value)
    with qtbot.waitSignal(panel.setFinished, timeout=60000) as blocker:
        qtbot.mouseClick(panel.start_btn, Qt.MouseButton.LeftButton)
    return blocker.args[0]


def test_discovery_from_the_panel_appears_in_the_browser(qtbot, make_window):
    win = make_window()
    qtbot.waitUntil(lambda: win.discovery.method.count() > 0)
    entry = _run_discovery(qtbot, win, slow_method.NAME, k=3, steps=5)
    assert entry in win.ws.entries and len(entry.dset) == 3 and not entry.running
    assert entry.dset.path.is_file() and entry.dset.path.is_relative_to(win.settings.library)
    assert (entry.uid, 2) in win.browser._items
    assert win.grid.model.entry is entry
    assert "residual" in win.discovery.plots.curves and "eigenvalues" in win.discovery.plots.bars
    # the saved set reloads with the eigenvalues as scores
    again = DirectionSet.load(entry.dset.path)
    assert [d.score for d in again.directions] == pytest.approx([d.score for d in entry.dset.directions])


def test_sefa_from_the_panel(qtbot, make_window):
    win = make_window()
    qtbot.waitUntil(lambda: win.discovery.method.count() > 0)
    entry = _run_discovery(qtbot, win, "sefa")
    assert entry.dset.method == "sefa" and len(entry.dset) > 0
    scores = [d.score for d in entry.dset.directions]
    assert scores == sorted(scores, reverse=True)
    assert (entry.uid, 0) in win.browser._items
    # the spectrum is drawn as bars, one per direction; no one-point line chart
    plots = win.discovery.plots
    assert list(plots.bars) == ["eigenvalues"] and not plots.curves
    bars = plots.bars["eigenvalues"].opts
    assert list(bars["height"]) == pytest.approx(scores, rel=1e-5) and len(bars["x"]) == len(scores)


def test_cancel_a_running_discovery(qtbot, make_window):
    win = make_window()
    panel = win.discovery
    panel.select_method(slow_method.NAME)
    panel.form.set_value("steps", 400)
    panel.form.set_value("delay", 0.02)
    panel.start_btn.click()
    # the job process may still be starting (an interpreter importing torch, niced below the editor):
    # on a loaded machine the first steps take as long as _run_discovery allows
    qtbot.waitUntil(lambda: panel.entry is not None and panel.last is not None and panel.last.step >= 3, timeout=60000)
    assert panel.entry.running and not panel.entry.editable  # partial results browsable, read-only
    assert (panel.entry.uid, 0) in win.browser._items
    with qtbot.waitSignal(panel.runner.stopped, timeout=20000):
        panel.cancel_btn.click()
    assert "cancelled" in panel.status.text()
    assert panel.last.step < 400
    entry = panel.entry
    qtbot.waitUntil(lambda: not entry.running, timeout=20000)  # saved on a worker, then finished
    assert entry.dset.path.name.endswith("-partial.json") and entry.dset.path.is_file()
    assert str(entry.dset.path) in panel.status.text()  # says where
    assert panel.start_btn.isEnabled() and not panel.cancel_btn.isEnabled()


def test_export_two_second_mp4(qtbot, make_window, dirset, tmp_path):
    win = make_window([dirset.path])
    open_set(qtbot, win, dirset)
    wait_preview(qtbot, win)
    dlg = win.export_dialog("video")
    out = tmp_path / "two-seconds.mp4"
    dlg.video_out.setText(str(out))
    dlg.video_seeds.setText("0,1")
    dlg.frames.setValue(60)
    dlg.fps.setValue(30)
    dlg.video_size.setValue(32)
    with qtbot.waitSignal(dlg.runner.stopped, timeout=60000):
        dlg.export_btn.click()
    assert dlg.result == out
    reader = iio.get_reader(out)
    assert reader.get_meta_data()["fps"] == 30
    frames = [f for f in reader]
    assert len(frames) == 60 and frames[0].shape == (32, 68, 3)


def test_cancel_an_export(qtbot, make_window, dirset, tmp_path):
    win = make_window([dirset.path])
    open_set(qtbot, win, dirset)
    dlg = win.export_dialog("video")
    out = tmp_path / "long.mp4"
    dlg.video_out.setText(str(out))
    dlg.frames.setValue(2000)
    dlg.video_size.setValue(128)
    dlg.export_btn.click()
    qtbot.waitUntil(lambda: dlg.bar.value() > 0, timeout=20000)
    with qtbot.waitSignal(dlg.runner.stopped, timeout=20000):
        dlg.cancel_btn.click()
    assert "cancelled" in dlg.status.text() and not out.exists() and not list(tmp_path.glob(".long*"))


def test_export_image_and_grid(qtbot, make_window, dirset, tmp_path):
    win = make_window([dirset.path])
    open_set(qtbot, win, dirset)
    wait_preview(qtbot, win)
    dlg = win.export_dialog("image")
    dlg.image_out.setText(str(tmp_path / "img.png"))
    dlg.image_size.setValue(48)
    dlg.export_btn.click()
    assert iio.imread(tmp_path / "img.png").shape == (48, 48, 3)
    dlg.tabs.setCurrentIndex(1)
    dlg.grid_out.setText(str(tmp_path / "grid.png"))
    dlg.grid_which.setText("0-2")
    dlg.grid_steps.setValue(5)
    dlg.grid_size.setValue(16)
    with qtbot.waitSignal(dlg.runner.stopped, timeout=30000):
        dlg.export_btn.click()
    assert iio.imread(tmp_path / "grid.png").shape[:2] == (3 * 1 * 18 + 2, 5 * 18 + 2)


def test_a_registered_export_format_is_offered_and_written_by_the_dialog(qtbot, make_window, dirset, tmp_path):
    """A format registered from outside (``tests.engine.toy_writer``) shows in the dialog's file filters
    and batch formats, and its grid and video tabs write it, with no edit to the dialog."""
    from desktop.export_dialog import _filters
    from tests.engine.toy_writer import TOY_IMAGE, TOY_VIDEO, read_toy

    win = make_window([dirset.path])
    open_set(qtbot, win, dirset)
    wait_preview(qtbot, win)
    dlg = win.export_dialog("grid")
    formats = [dlg.batch_format.itemData(i) for i in range(dlg.batch_format.count())]
    assert formats[:4] == ["png", "jpg", "mp4", "gif"] and {TOY_IMAGE, TOY_VIDEO} <= set(formats)
    assert "*.toyimg" in _filters("image") and "*.toyvid" in _filters("video") and "*.toyvid" not in _filters("image")
    dlg.grid_out.setText(str(tmp_path / "grid.toyimg"))
    dlg.grid_which.setText("0-1")
    dlg.grid_steps.setValue(3)
    dlg.grid_size.setValue(16)
    with qtbot.waitSignal(dlg.runner.stopped, timeout=30000):
        dlg.export_btn.click()
    assert read_toy(tmp_path / "grid.toyimg").shape == (2 * 18 + 2, 3 * 18 + 2, 3)
    dlg.tabs.setCurrentIndex(2)
    dlg.video_out.setText(str(tmp_path / "morph.toyvid"))
    dlg.frames.setValue(4)
    dlg.video_size.setValue(16)
    with qtbot.waitSignal(dlg.runner.stopped, timeout=30000):
        dlg.export_btn.click()
    assert dlg.result == tmp_path / "morph.toyvid" and read_toy(dlg.result).shape[:3] == (4, 16, 16)


def test_errors_are_dialogs_not_tracebacks(qtbot, make_window, tmp_path):
    from PySide6.QtWidgets import QMessageBox

    from engine.models.dcgan import DCGANGenerator
    from tests.desktop.conftest import make_set

    other = DCGANGenerator(nz=5, ngf=8, n_up=2)
    other.name, other.identity = "other", "other-id"
    wrong = make_set(other, tmp_path / "wrong.json")
    win = make_window([wrong.path])
    qtbot.waitUntil(lambda: any(b.objectName() == "errorDialog" for b in win.findChildren(QMessageBox)), timeout=10000)
    box = next(b for b in win.findChildren(QMessageBox) if b.objectName() == "errorDialog")
    assert "wrong.json" in box.text() and "5 dimensions" in box.text()
    assert win.ws.entries == []


def test_settings_persist(qtbot, make_window, dirset):
    win = make_window([dirset.path])
    open_set(qtbot, win, dirset)
    win.docks["editor"].hide()
    win.close()
    win2 = make_window()
    assert str(dirset.path) in win2.settings.recent("sets")
    assert "tiny-dcgan" in win2.settings.recent("models")
    assert not win2.docks["editor"].isVisible() and win2.docks["browser"].isVisible()  # the layout came back
    assert win2.settings.path.is_relative_to(os.environ["GAN_ATLAS_CONFIG_DIR"])  # the test's own settings


def test_latest_wins_drops_stale_results(qtbot):
    import time

    from desktop.workers import LatestWins

    def slow(x):
        time.sleep(0.05)
        return x

    got = []
    lw = LatestWins(slow)
    lw.result.connect(lambda stamp, value: got.append(value))
    for i in range(10):
        lw.submit(i)
    qtbot.waitUntil(lambda: not lw.busy, timeout=5000)
    assert got == [0, 9]  # the first ran at once; 1..8 were replaced while it ran


def test_workspace_rejects_edits_of_running_sets(qtbot, dirset):
    ws = Workspace()
    entry = ws.add_set(dirset, running=True)
    msgs = []
    ws.saveFailed.connect(msgs.append)
    ws.annotate(entry, 0, "rating", 3)
    assert entry.direction(0).annotation.rating is None and "still being computed" in msgs[0]


def test_style_model_spaces_truncation_and_layer_range(qtbot, make_window, shared_fixtures, tmp_path):
    import torch

    from engine.directions import model_ref
    from engine.models import load_generator

    gen = load_generator(str(shared_fixtures / "rosinality_s32_narrow.pt"), device="cpu")
    g = torch.Generator().manual_seed(3)
    wset = DirectionSet.latent(
        "test-w", model_ref(gen), torch.randn(3, gen.w_dim, generator=g) * 2, space="w", range_=(-5.0, 5.0)
    )
    wset.save(tmp_path / "w.json")
    win = make_window([wset.path], gen=gen)
    entry = open_set(qtbot, win, wset)
    p = win.preview
    assert p.space.isVisible() and p.psi.isVisible() and [p.space.itemText(i) for i in range(3)] == ["z", "w", "w+"]
    wait_preview(qtbot, win)
    plain = p.image().copy()
    p.psi.setValue(0.5)
    wait_preview(qtbot, win)
    assert not np.array_equal(p.image(), plain)  # truncation acts
    win.ws.set_shift(entry, 0, 5.0)
    wait_preview(qtbot, win)
    all_layers = p.image().copy()
    p.space.setCurrentText("w+")
    assert p.layers.isVisible()
    p.layers.setValue((0, 2))  # coarse layers only
    wait_preview(qtbot, win)
    coarse = p.image().copy()
    p.layers.setValue((2, 2))  # empty range: no edit at all
    wait_preview(qtbot, win)
    p.before.setChecked(True)
    unedited = p.image().copy()
    p.before.setChecked(False)
    assert np.array_equal(p.image(), unedited)
    assert not np.array_equal(coarse, all_layers) and not np.array_equal(coarse, unedited)


def test_parameter_directions_in_preview_and_grid(qtbot, make_window, tiny_gen, tmp_path):
    import torch

    from engine.directions import Direction, model_ref

    w = tiny_gen.layer_weight("main.3").detach()
    g = torch.Generator().manual_seed(5)
    dirs = []
    for _ in range(2):
        delta = torch.randn(w.shape, generator=g)
        dirs.append(Direction("param", layer="main.3", delta=delta * (w.norm() / delta.norm()), range=(-0.5, 0.5)))
    pset = DirectionSet("test-param", model_ref(tiny_gen), dirs)
    pset.save(tmp_path / "param.json")
    win = make_window([pset.path])
    entry = open_set(qtbot, win, pset)
    wait_preview(qtbot, win)
    plain = win.preview.image().copy()
    win.preview.sliders()[0].setValue(0.5)
    qtbot.waitUntil(lambda: win.ws.shift(entry, 0) == 0.5)
    wait_preview(qtbot, win)
    assert np.abs(win.preview.image().astype(int) - plain).mean() > 1.0
    win.show_dock("grid")
    qtbot.waitUntil(lambda: 1 in win.grid.model.cache, timeout=10000)


CRASH_SCRIPT = r"""
import os, signal, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
sys.path.insert(0, sys.argv[2])
import torch
from PySide6.QtWidgets import QApplication
from desktop.main_window import MainWindow
from desktop.settings import Settings
from engine.directions import DirectionSet
from engine.models.dcgan import DCGANGenerator

app = QApplication([])
gen = DCGANGenerator(nz=8, ngf=8, n_up=2).eval()
gen.name, gen.identity = "tiny-dcgan", "tiny-dcgan-identity"
win = MainWindow(Settings(), gen=gen, open_sets=[sys.argv[1]], scan=False)
win.show()
while not win.ws.entries:
    app.processEvents()
entry = win.ws.entries[0]
win.ws.select(entry, 4)
win.editor.name.setText("eyebrows")
win.editor.name.textEdited.emit("eyebrows")
win.editor.rating.buttons[4].click()
win.editor.notes.setPlainText("only on seeds 0-3")
os.kill(os.getpid(), signal.SIGKILL)  # no close, no atexit, no flushing
"""


@pytest.mark.slow
def test_a_killed_session_loses_no_annotation(dirset, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT)
    repo = Path(__file__).resolve().parents[2]
    res = subprocess.run(
        [sys.executable, str(script), str(dirset.path), str(repo)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert res.returncode == -9, res.stderr[-2000:]
    a = DirectionSet.load(dirset.path).directions[4].annotation
    assert (a.name, a.rating, a.notes) == ("eyebrows", 5, "only on seeds 0-3")


def test_analysis_dock_follows_the_current_direction(qtbot, make_window, dirset):
    win = make_window([dirset.path])
    entry = open_set(qtbot, win, dirset)
    win.ws.select(entry, 2)
    win.show_dock("analysis")
    assert win.analysis.dset is entry.dset and win.analysis.index == 2
    assert "direction 2" in win.analysis.target_label.text() and win.analysis.run_btn.isEnabled()


def test_param_svd_from_the_panel_into_preview_and_grid(qtbot, make_window):
    win = make_window()
    qtbot.waitUntil(lambda: win.discovery.method.count() > 0)
    assert win.discovery.method.findData("param-svd") >= 0
    entry = _run_discovery(qtbot, win, "param-svd", k=4, layer="main.3")
    assert len(entry.dset) == 4 and entry.direction(0).kind == "param" and entry.direction(0).layer == "main.3"
    wait_preview(qtbot, win)
    plain = win.preview.image().copy()
    win.ws.set_shift(entry, 0, entry.direction(0).range[1])
    wait_preview(qtbot, win)
    assert not np.array_equal(win.preview.image(), plain)
    win.show_dock("grid")
    qtbot.waitUntil(lambda: 3 in win.grid.model.cache, timeout=15000)


def _window_shortcuts(win) -> list[tuple[str, str]]:
    """``(key, owner)`` of every window-wide shortcut: menu actions and QShortcut objects."""
    from PySide6.QtGui import QAction, QShortcut

    keys = []
    for a in win.findChildren(QAction):
        if a.shortcutContext() in (Qt.ShortcutContext.WindowShortcut, Qt.ShortcutContext.ApplicationShortcut):
            keys += [(k.toString(), a.text()) for k in a.shortcuts() if not k.isEmpty()]
    for s in win.findChildren(QShortcut):
        if s.context() in (Qt.ShortcutContext.WindowShortcut, Qt.ShortcutContext.ApplicationShortcut):
            keys += [(k.toString(), "QShortcut") for k in s.keys() if not k.isEmpty()]
    return keys


def test_no_key_is_bound_twice_and_ctrl_shift_z_redoes(qtbot, make_window, dirset):
    """A key sequence registered twice is ambiguous and Qt ignores it: Ctrl+Shift+Z was bound by
    StandardKey.Redo (on Linux) and again literally, and did nothing."""
    from collections import Counter

    from PySide6.QtGui import QKeySequence

    win = make_window([dirset.path])
    entry = open_set(qtbot, win, dirset)
    counts = Counter(k for k, _ in _window_shortcuts(win))
    assert [k for k, n in counts.items() if n > 1] == []
    # every key the platform binds to redo (the first of them is Ctrl+Shift+Z on Linux desktops,
    # Ctrl+Y here), and Ctrl+Shift+Z, each exactly once
    platform = [k.toString() for k in QKeySequence.keyBindings(QKeySequence.StandardKey.Redo)]
    redo = [k.toString() for k in win.redo_action.shortcuts()]
    assert set(redo) == set(platform) | {"Ctrl+Shift+Z"} and len(redo) == len(set(redo))
    win.activateWindow()
    win.ws.annotate(entry, 1, "rating", 3)
    qtbot.keyClick(win.preview.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert entry.direction(1).annotation.rating is None
    shift = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    qtbot.keyClick(win.preview.canvas, Qt.Key.Key_Z, shift)
    assert entry.direction(1).annotation.rating == 3


def test_a_failed_model_open_keeps_the_previous_model(qtbot, make_window, dirset, tmp_path):
    """After a model fails to open, the status bar says the previous model is still loaded (it
    is: the preview still renders it), not "no model loaded"."""
    from PySide6.QtWidgets import QMessageBox

    win = make_window([dirset.path])
    open_set(qtbot, win, dirset)
    wait_preview(qtbot, win)
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    win.load_model(str(bad))
    qtbot.waitUntil(lambda: any(b.objectName() == "errorDialog" for b in win.findChildren(QMessageBox)), timeout=10000)
    text = win.status_label.text()
    assert "no model" not in text and "tiny-dcgan" in text and "still loaded" in text and "broken.pt" in text
    assert win.ws.gen.name == "tiny-dcgan" and win.model_spec != str(bad)
    win.preview.set_seeds([5])  # and it still renders
    qtbot.waitUntil(lambda: win.preview.result is not None and "5" in win.preview.canvas.caption, timeout=10000)


def test_closing_the_window_does_not_wait_for_the_start_up_warm_up(qtbot, make_window, monkeypatch):
    """The start-up import of torch's compiler stack takes seconds on a busy machine; closing the
    window right after start-up used to wait for it (it ran in the job pool that closing joins)."""
    import threading
    import time

    import desktop.workers as workers

    release, done = threading.Event(), []

    def slow_import():
        release.wait(20)
        done.append(True)

    monkeypatch.setattr(workers, "_import_torch_compiler", slow_import)
    win = make_window()
    warm = workers.prewarm()
    time.sleep(0.05)
    win.close()
    assert not done  # the window closed while the warm-up was still running
    release.set()
    if hasattr(warm, "join"):
        warm.join(5)


def test_the_process_ends_at_once_with_its_exit_handlers_run(tmp_path):
    """``desktop.app.exit_now`` skips the interpreter's seconds-long teardown but still runs the
    exit handlers and flushes the output (``bench/bench_exit.py`` measures the difference)."""
    import subprocess
    import sys

    script = tmp_path / "ends.py"
    script.write_text(
        "import atexit, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from desktop.app import exit_now\n"
        f"atexit.register(lambda: open({str(tmp_path / 'handler-ran')!r}, 'w').close())\n"
        "print('unflushed output', end='')\n"
        "exit_now(3)\n"
        "print('never')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GAN_ATLAS_SLOW_EXIT"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 3 and proc.stdout == "unflushed output"
    assert (tmp_path / "handler-ran").exists()


def test_latent_recon_from_the_panel_shows_its_directions_at_once_and_keeps_them_on_cancel(qtbot, make_window):
    """latent-recon measures RCA every 500 steps: its directions must reach the browser from the
    first steps, and Cancel before the first RCA must keep them as -partial.json and say where."""
    win = make_window()
    panel = win.discovery
    panel.select_method("latent-recon")
    for key, value in dict(k=4, batch_size=4, steps=5000, rca_samples=16).items():
        panel.form.set_value(key, value)
    panel.start_btn.click()
    qtbot.waitUntil(lambda: panel.last is not None and panel.last.step >= 12, timeout=60000)
    qtbot.waitUntil(lambda: panel.entry is not None, timeout=5000)
    entry = panel.entry
    assert entry.running and len(entry.dset) == 4 and (entry.uid, 3) in win.browser._items
    assert panel.last.step < 500 and "rca" not in entry.dset.metrics  # long before the first RCA
    with qtbot.waitSignal(panel.runner.stopped, timeout=20000):
        panel.cancel_btn.click()
    qtbot.waitUntil(lambda: not entry.running, timeout=20000)
    path = entry.dset.path
    assert path is not None and path.name.startswith("latent-recon-") and path.name.endswith("-partial.json")
    assert path.is_file() and path.is_relative_to(win.settings.library)
    assert f"kept in {path}" in panel.status.text()
    again = DirectionSet.load(path)
    assert len(again) == 4 and again.method == "latent-recon"


def test_cancel_before_the_first_result_says_nothing_is_kept(qtbot, make_window, monkeypatch):
    win = make_window()
    panel = win.discovery
    panel.select_method(slow_method.NAME)
    panel.form.set_value("steps", 50)
    panel.form.set_value("delay", 0.02)
    monkeypatch.setattr(panel.runner, "start", lambda make_job: panel.runner.cancelled.emit())
    panel.start_btn.click()
    assert "nothing to keep" in panel.status.text() and panel.entry is None


def test_a_new_discovery_row_stays_in_view(qtbot, make_window, tiny_gen, tmp_path):
    """A running discovery's set is appended below the open sets; when it arrives, the browser
    shows it instead of unfolding the current (long) set over it again."""
    from tests.desktop.conftest import make_set

    big = make_set(tiny_gen, tmp_path / "big.json", k=60)
    win = make_window([big.path])
    entry = open_set(qtbot, win, big)
    view = win.browser.view
    qtbot.waitUntil(lambda: win.ws.current == (entry, 0))
    assert view.isExpanded(win.browser.proxy.mapFromSource(win.browser._set_items[entry.uid].index()))
    panel = win.discovery
    panel.select_method(slow_method.NAME)
    panel.form.set_value("steps", 400)
    panel.form.set_value("delay", 0.02)
    panel.start_btn.click()
    qtbot.waitUntil(lambda: panel.entry is not None and panel.last.step >= 3, timeout=60000)  # as above

    def row_visible(uid: int, k: int | None = None) -> bool:
        item = win.browser._set_items[uid] if k is None else win.browser._items[(uid, k)][0]
        rect = view.visualRect(win.browser.proxy.mapFromSource(item.index()))
        return rect.isValid() and view.viewport().rect().contains(rect.center())

    assert row_visible(panel.entry.uid) and row_visible(panel.entry.uid, 0)
    qtbot.wait(700)  # more partial results arrive (replaced in place)
    assert row_visible(panel.entry.uid)
    with qtbot.waitSignal(panel.runner.stopped, timeout=20000):
        panel.cancel_btn.click()


def test_garbage_is_collected_on_the_ui_thread_only(qtbot):
    """A worker that allocates must not run the cyclic garbage collector: it would destroy
    unreachable Qt objects (closed panels' plots) on the worker, which froze the editor."""
    import threading

    from desktop.app import make_app

    make_app()
    where: list[bool] = []

    class Cycle:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            where.append(threading.current_thread() is threading.main_thread())

    kept: list = []

    def churn() -> None:  # container allocations kept alive: they trigger automatic collections
        kept.extend([] for _ in range(20000))

    Cycle()
    worker = threading.Thread(target=churn)
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: bool(where), timeout=10000)  # the UI thread's timer collects
    assert where == [True]


def test_discovery_parameters_survive_a_restart(qtbot, make_window):
    win = make_window()
    panel = win.discovery
    panel.select_method(slow_method.NAME)
    panel.form.set_value("k", 3)
    panel.form.set_value("steps", 33)
    panel.form.set_value("delay", 0.25)
    panel.form.set_value("normalise", False)
    panel.form.set_value("mode", "identity")
    panel.select_method("sefa")
    panel.form.set_value("k", 7)
    panel.select_method(slow_method.NAME)  # back: the values typed before are still there
    assert panel.form.values()["steps"] == 33
    win.close()

    panel = make_window().discovery
    assert panel.method.currentData() == slow_method.NAME  # the last method used
    assert panel.form.values() == {"k": 3, "steps": 33, "delay": 0.25, "normalise": False, "mode": "identity"}
    panel.select_method("sefa")
    assert panel.form.values()["k"] == 7
    panel.form.reset()  # Defaults still gives the paper's settings
    assert panel.form.values()["k"] == get_sefa_default_k()


def get_sefa_default_k() -> int:
    from engine.discovery import get_method

    return get_method("sefa").params().k


def test_export_dialog_starts_in_the_last_export_folder_or_the_library(qtbot, make_window, dirset, tmp_path):
    win = make_window([dirset.path])
    open_set(qtbot, win, dirset)
    dlg = win.export_dialog("grid")
    assert Path(dlg.grid_out.text()).parent == win.settings.library  # not the home folder
    assert Path(dlg.video_out.text()).parent == win.settings.library
    out = tmp_path / "exports" / "labelled.png"
    dlg.grid_out.setText(str(out))
    dlg.grid_which.setText("0,1")
    dlg.grid_steps.setValue(3)
    dlg.grid_size.setValue(16)
    dlg.grid_labels.setChecked(True)
    with qtbot.waitSignal(dlg.runner.stopped, timeout=30000):
        dlg.export_btn.click()
    img = iio.imread(out)
    plain = (2 * 18 + 2, 3 * 18 + 2)  # rows = 2 directions x the preview's one seed, columns = 3 shifts
    assert img.shape[0] > plain[0] and img.shape[1] > plain[1] + 20  # room for the labels
    dlg.close_btn.click()
    dlg2 = win.export_dialog("image")
    assert Path(dlg2.image_out.text()).parent == out.parent and Path(dlg2.grid_out.text()).parent == out.parent
    dlg2.close_btn.click()
    win.close()
    again = make_window().export_dialog("image")  # after a restart too
    assert Path(again.image_out.text()).parent == out.parent


def test_pins_and_their_shifts_survive_a_restart(qtbot, make_window, dirset):
    win = make_window([dirset.path])
    entry = open_set(qtbot, win, dirset)
    win.ws.pin(entry, 1)
    win.ws.pin(entry, 3)
    win.ws.set_shift(entry, 3, 2.5)
    win.ws.pin(entry, 4)
    win.ws.pin(entry, 4, False)
    win.close()

    win2 = make_window([dirset.path])
    entry2 = open_set(qtbot, win2, dirset)
    qtbot.waitUntil(lambda: len(win2.ws.pinned) == 2, timeout=5000)
    assert [k for e, k in win2.ws.pinned if e is entry2] == [1, 3]
    assert win2.ws.shift(entry2, 3) == 2.5 and win2.ws.shift(entry2, 1) == 0.0
    assert len(win2.preview.sliders()) >= 2


def test_grid_row_header_texts_never_overlap(qtbot, make_window, dirset):
    """ "pinned" used to be drawn over the end of a long direction name."""
    from PySide6.QtCore import QRect
    from PySide6.QtGui import QFontMetrics, QImage, QPainter

    from desktop.grid import LABEL_WIDTH

    win = make_window([dirset.path])
    entry = open_set(qtbot, win, dirset)
    win.show_dock("grid")
    win.ws.annotate(entry, 2, "name", "warm light from the upper left, with a long shadow")
    win.ws.annotate(entry, 2, "rating", 4)
    win.ws.annotate(entry, 2, "interpretable", "yes")
    win.ws.pin(entry, 2)
    delegate = win.grid.delegate

    class Recording:
        """A QPainter that records the box of every text it draws."""

        def __init__(self, painter: QPainter) -> None:
            self.painter, self.boxes = painter, []

        def __getattr__(self, name):
            return getattr(self.painter, name)

        def drawText(self, x, y, text):  # noqa: N802
            fm = QFontMetrics(self.painter.font())
            self.boxes.append((text, QRect(x, y - fm.ascent(), fm.horizontalAdvance(text), fm.height())))
            self.painter.drawText(x, y, text)

    image = QImage(LABEL_WIDTH, 120, QImage.Format.Format_RGB32)
    painter = QPainter(image)
    rec = Recording(painter)
    rect = QRect(0, 0, LABEL_WIDTH, 120)
    delegate._paint_label(rec, rect, 2, win.grid.view.palette(), False)
    painter.end()
    texts = [t for t, _ in rec.boxes]
    assert "pinned" in texts and any(t.startswith("#2") for t in texts)
    for i, (a, ra) in enumerate(rec.boxes):
        assert rect.contains(ra), a
        for b, rb in rec.boxes[i + 1 :]:
            assert not ra.intersects(rb), (a, b)


def test_switching_to_w_plus_keeps_the_dock_layout(qtbot, make_window, tmp_path):
    """Showing the w+ layer range used to widen the preview's minimum size, so every dock
    shrank, and the narrower layout was saved with the window."""
    from engine.models import load_generator

    gen = load_generator("procedural-stylegan2-32", device="cpu")
    win = make_window(gen=gen)
    win.show_dock("grid")
    qtbot.wait(300)  # the default dock sizes apply once the window is shown

    def widths():
        return {k: d.width() for k, d in win.docks.items() if d.isVisible()}, win.preview.minimumSizeHint().width()

    before, min_before = widths()
    win.preview.space.setCurrentText("w+")
    qtbot.waitUntil(lambda: win.preview.layers.isVisible(), timeout=5000)
    qtbot.wait(300)
    after, min_after = widths()
    assert min_after <= min_before  # the layer range takes a row of its own, not width
    assert after == before
    win.preview.space.setCurrentText("z")
    qtbot.wait(300)
    assert widths()[0] == before
