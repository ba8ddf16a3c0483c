"""What keeps the editor's UI thread free while a job runs (bench/bench_gui_stall.py measures the
stalls; these tests check the behaviour that removes them, never a timing):

* hidden panels do no work: the grid renders no thumbnails and the metric plots draw nothing
  while another dock tab is in front, and catch up when shown;
* the metric plots hold a bounded number of points however long the job runs, and their axes
  move only when the data leave the view;
* the preview's images arrive converted and scaled for the canvas (the UI thread only copies
  them), and a canvas resize scales again once;
* the garbage collector freezes what was loaded, so that collections on the UI thread skip it,
  and still collects garbage made later.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

from desktop.widgets import on_screen
from engine.jobs import Progress
from tests.desktop.conftest import make_set
from tests.desktop.test_editor import wait_preview


def test_a_hidden_grid_renders_nothing_until_it_is_shown(qtbot, make_window, tiny_gen, tmp_path):
    s = make_set(tiny_gen, tmp_path / "hidden.json", k=12)
    win = make_window()
    win.show_dock("discovery")  # the grid's tab is behind the discovery panel's
    win.open_set(str(s.path))
    qtbot.waitUntil(lambda: len(win.ws.entries) == 1, timeout=10000)
    model = win.grid.model
    assert model.entry is not None and model.entry.dset.path == s.path
    qtbot.wait(300)
    assert not on_screen(win.grid.view) and not model.cache and not model.inflight
    assert list(model.visible_rows()) == []
    win.show_dock("grid")
    qtbot.waitUntil(lambda: 0 in model.cache, timeout=20000)


def _metric(step: int) -> Progress:
    return Progress(step, 10_000, metrics={"loss": 1.0 / step + 0.01 * (step % 7), "rca": 0.5 + 1e-5 * step})


def test_metric_plots_draw_only_when_visible_and_keep_few_points(qtbot, make_window):
    win = make_window()
    win.show_dock("grid")  # the discovery panel's tab is behind
    plots = win.discovery.plots
    for step in range(1, 4991):
        plots.add(_metric(step))
    assert not plots.redraw() and not plots.curves  # hidden: nothing drawn
    win.show_dock("discovery")
    qtbot.waitUntil(lambda: "loss" in plots.curves and "rca" in plots.curves, timeout=5000)
    x, y = plots.curves["loss"].getData()
    assert len(x) <= 2 * plots.MAX_POINTS
    # major ticks and grid lines only (the minor ones' grid lines were most of a repaint)
    assert all(p.getAxis(side).style["maxTickLevel"] == 0 for p in plots.plots.values() for side in ("left", "bottom"))
    # the decimated curve keeps the envelope: the extremes of the whole history are on it
    xs, ys = plots.history["loss"].data()
    assert y.max() == pytest.approx(ys.max()) and y.min() == pytest.approx(ys.min()) and x.max() <= xs.max()
    # the x axis shows the steps in 1-2-5 steps; new points inside the view do not move the axes
    view = plots.plots["rca"].getViewBox()
    (x0, x1), (y0, y1) = view.viewRange()
    assert x1 == 5000 and y0 <= 0.5 and y1 >= 0.55
    plots.add(_metric(4991))
    plots.redraw()
    assert view.viewRange()[0][1] == 5000 and view.viewRange()[1] == pytest.approx([y0, y1])
    plots.add(_metric(4992))
    plots.history["rca"].append(4993.0, 10.0)  # far outside: the y axis follows
    plots.dirty.add("rca")
    plots.redraw()
    assert view.viewRange()[1][1] > 10.0


def test_peak_decimation_keeps_every_bin_extreme():
    from desktop.discovery import peak_decimate

    x = np.arange(10_000, dtype=float)
    y = np.sin(x / 50.0)
    y[4321] = 7.0
    dx, dy = peak_decimate(x, y, 100)
    assert dx.size == dy.size == 200 and dy.max() == 7.0 and dy.min() == pytest.approx(y.min())
    assert np.all(np.diff(dx) >= 0)
    short = np.arange(50.0)
    assert peak_decimate(short, short, 100)[0] is short


def test_preview_frames_arrive_scaled_for_the_canvas(qtbot, make_window):
    win = make_window()
    wait_preview(qtbot, win)
    qtbot.wait(100)  # the first frame may come before the window's layout: render again
    win.preview.set_seeds([3])
    qtbot.waitUntil(lambda: "seed 3" in win.preview.canvas.caption and not win.preview.renderer.busy, timeout=10000)
    canvas, frames = win.preview.canvas, win.preview.frames
    assert frames is not None and canvas.view() == frames.after.scaled_for
    rect = canvas.target_rect()
    assert (frames.after.scaled.width(), frames.after.scaled.height()) == (rect.width(), rect.height())
    assert canvas._scaled is frames.after.scaled  # painted as it came: no scaling on the UI thread
    h, w = frames.result.after.shape[:2]
    assert rect.width() % w == 0 and rect.height() % h == 0  # crisp mode: whole-pixel zoom
    canvas.grab()  # paints
    assert canvas._scaled is frames.after.scaled
    # a resize scales once for the new size
    win.resize(win.width() - 200, win.height() - 100)
    qtbot.waitUntil(lambda: canvas.view() != frames.after.scaled_for, timeout=5000)
    canvas.grab()
    rect = canvas.target_rect()
    assert canvas._scaled_for == canvas.view()
    assert (canvas._scaled.width(), canvas._scaled.height()) == (rect.width(), rect.height())
    # and the pixels are the image's, each repeated (nearest)
    img = canvas._scaled
    zoom = rect.width() // w
    px = img.pixelColor(zoom * 3 + zoom // 2, zoom * 2 + zoom // 2)
    assert (px.red(), px.green(), px.blue()) == tuple(int(v) for v in frames.result.after[2, 3])


def test_garbage_collection_skips_what_was_loaded(qtbot, make_window):
    from desktop.app import settle_garbage

    gc.unfreeze()  # what earlier tests' windows froze
    assert gc.get_freeze_count() == 0
    win = make_window()
    wait_preview(qtbot, win)
    qtbot.waitUntil(lambda: gc.get_freeze_count() > 0, timeout=5000)  # frozen after the model loaded
    try:
        assert not gc.isenabled()  # collections run on the UI thread's timer only

        class Node:
            pass

        def cycle():
            a, b = Node(), Node()
            a.other, b.other = b, a
            return id(a)

        made = cycle()
        gc.collect()  # a full collection still finds garbage made after the freeze
        assert all(id(o) != made for o in gc.get_objects() if isinstance(o, Node))
        settle_garbage()  # again (a model load): unfrozen, collected, frozen
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_collections_run_by_generation_thresholds_on_the_timer(monkeypatch):
    """Automatic collection is off; the UI thread's timer collects the youngest generation whose
    count passed its threshold with every younger one (as the interpreter would), else nothing."""
    from desktop.app import UiGarbageCollector

    collector = UiGarbageCollector(interval_ms=10_000)
    collector.timer.stop()
    t0, t1, t2 = collector.threshold
    done: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda generation=2: done.append(generation) or 0)
    for counts, expected in [
        ((t0 - 1, t1 + 5, t2 + 5), []),  # the young generation is under its threshold: nothing
        ((t0 + 1, 0, 0), [0]),
        ((t0 + 1, t1 + 1, 0), [1]),
        ((t0 + 1, t1 + 1, t2 + 1), [2]),
    ]:
        done.clear()
        monkeypatch.setattr(gc, "get_count", lambda c=counts: c)
        collector.check()
        assert done == expected, counts
    collector.deleteLater()


def test_the_status_line_follows_a_fast_job_four_times_a_second(qtbot, make_window):
    """A job reporting 50 times at once updates the status line once, with the last record."""
    from desktop.discovery import STATUS_MS
    from engine.discovery import methods

    win = make_window()
    panel = win.discovery
    panel.spec = methods()[0]
    texts: list[str] = []
    real = panel.status.setText
    panel.status.setText = lambda text: texts.append(text) or real(text)
    for step in range(1, 51):
        panel._on_progress([Progress(step, 100, metrics={"loss": 1.0 / step})])
    assert texts == []  # nothing yet: the timer delivers
    qtbot.waitUntil(lambda: len(texts) == 1, timeout=5 * STATUS_MS)
    qtbot.wait(2 * STATUS_MS)
    assert len(texts) == 1 and "step 50/100" in texts[0]
    assert panel.bar.value() == 50


def test_the_library_is_read_on_a_worker_and_its_sets_open(qtbot, make_window, tiny_gen, monkeypatch):
    """``refresh_library`` reads every manifest of the library folder: on a worker thread, never
    the UI thread; the listing arrives on the UI thread and the sets of the loaded model open."""
    import threading
    from pathlib import Path

    import desktop.main_window as main_window
    from desktop.settings import Settings

    library = Path(Settings().library)
    ours = make_set(tiny_gen, library / "ours.json", k=3)
    threads: list[threading.Thread] = []
    real = main_window.library_sets

    def spy(folder):
        threads.append(threading.current_thread())
        return real(folder)

    monkeypatch.setattr(main_window, "library_sets", spy)
    win = make_window()
    qtbot.waitUntil(lambda: any(e.dset.path == ours.path for e in win.ws.entries), timeout=10000)
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert [s.path for s in win.browser.library] == [ours.path]
    # a listing older than the latest request is dropped
    win._library_read(win._library_stamp - 1, [], True)
    assert [s.path for s in win.browser.library] == [ours.path]


def test_status_text_of_any_length_never_resizes_the_plots(qtbot, make_window):
    """A status line that wraps onto another number of lines must not move the plots: a resize
    lays out every plot and axis again on the UI thread."""
    from PySide6.QtCore import QEvent, QObject

    win = make_window()
    win.show_dock("discovery")
    panel = win.discovery
    qtbot.wait(50)

    class Resizes(QObject):
        count = 0

        def eventFilter(self, obj, event):  # noqa: N802
            if event.type() == QEvent.Type.Resize:
                Resizes.count += 1
            return False

    spy = Resizes()
    panel.plots.installEventFilter(spy)
    long = "latent-recon · step 7/2000 · ETA 3 h · " + "a message long enough to wrap onto more lines · " * 6
    for i in range(6):
        panel.status.setText("short" if i % 2 else long)
        qtbot.wait(20)
    assert Resizes.count == 0
    assert panel.status.toolTip() == "short" and panel.status.text() == "short"


class _ScriptedProcess:
    """A stand-in for the long-job process: ``poll`` hands out the scripted batches of events."""

    def __init__(self, batches):
        self.batches = list(batches)

    def submit(self, spec) -> None:
        pass

    def cancel(self) -> None:
        pass

    def poll(self):
        return self.batches.pop(0) if self.batches else []


def test_direction_sets_from_the_job_process_are_read_on_a_worker_in_order(qtbot, tiny_gen, tmp_path, monkeypatch):
    """Partial and final sets arrive as files: they are read on a worker thread (a dense set is
    tens of MB), the signals keep the job's order, and a partial set replaced by a newer one
    already queued is never read."""
    import threading

    import desktop.job_process as job_process
    from desktop.workers import ProcessJobRunner
    from engine.directions import DirectionSet

    sets = [make_set(tiny_gen, tmp_path / f"s{i}.json", k=2 + i) for i in range(3)]
    read: list[tuple[str, threading.Thread]] = []
    real = job_process.load_portable

    def spy(value):
        read.append((value[1].name if isinstance(value, tuple) else value, threading.current_thread()))
        return real(value)

    monkeypatch.setattr(job_process, "load_portable", spy)
    file = [("dirset", s.path) for s in sets]
    runner = ProcessJobRunner(
        process=_ScriptedProcess(
            [
                [
                    ("progress", [Progress(1, 9, partial=file[0])]),  # replaced by the next one: not read
                    ("progress", [Progress(2, 9, metrics={"loss": 1.0}), Progress(3, 9, partial=file[1])]),
                    ("progress", [Progress(4, 9, metrics={"loss": 0.5})]),
                    ("finished", file[2]),
                ]
            ]
        )
    )
    seen: list[tuple] = []
    runner.progress.connect(lambda recs: seen.extend(("progress", r.step, r.partial) for r in recs))
    runner.finished.connect(lambda result: seen.append(("finished", result)))
    runner.start(None)
    qtbot.waitUntil(lambda: not runner.running, timeout=10000)
    assert [s[:2] for s in seen[:4]] == [("progress", 1), ("progress", 2), ("progress", 3), ("progress", 4)]
    assert len(seen) == 5 and seen[-1][0] == "finished"
    assert seen[0][2] is None and seen[1][2] is None and seen[3][2] is None
    assert isinstance(seen[2][2], DirectionSet) and len(seen[2][2]) == 3
    assert isinstance(seen[-1][1], DirectionSet) and len(seen[-1][1]) == 4
    assert [name for name, _ in read] == ["s1.json", "s2.json"]
    assert all(t is not threading.main_thread() for _, t in read)
