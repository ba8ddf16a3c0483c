"""Starting the editor: the QApplication, its look, the thread budget, the main window."""

from __future__ import annotations

import atexit
import gc
import os
import sys

from PySide6.QtCore import QObject, QThreadPool, QTimer
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

from desktop.settings import Settings
from desktop.workers import job_process, prewarm
from engine.device import cap_threads

# Worker threads: a preview render, a grid page, a discovery and an export may run at once.
POOL_THREADS = 4
SWITCH_INTERVAL_S = 0.001


def dark_palette() -> QPalette:
    p = QPalette()
    c = {
        QPalette.ColorRole.Window: "#1f2328",
        QPalette.ColorRole.WindowText: "#e6edf3",
        QPalette.ColorRole.Base: "#161b22",
        QPalette.ColorRole.AlternateBase: "#1c2128",
        QPalette.ColorRole.ToolTipBase: "#30363d",
        QPalette.ColorRole.ToolTipText: "#e6edf3",
        QPalette.ColorRole.Text: "#e6edf3",
        QPalette.ColorRole.Button: "#2d333b",
        QPalette.ColorRole.ButtonText: "#e6edf3",
        QPalette.ColorRole.BrightText: "#ff7b72",
        QPalette.ColorRole.Highlight: "#2f81f7",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: "#58a6ff",
        QPalette.ColorRole.PlaceholderText: "#8b949e",
        QPalette.ColorRole.Mid: "#8b949e",
        QPalette.ColorRole.Dark: "#0d1117",
        QPalette.ColorRole.Light: "#444c56",
    }
    for role, color in c.items():
        p.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6e7681"))
    return p


STYLE = """
QDockWidget::title { padding: 5px 8px; background: #2d333b; }
QDockWidget { titlebar-close-icon: none; }
QTabBar::tab { padding: 5px 14px; }
QHeaderView::section { background: #22272e; padding: 4px 6px; border: 0; border-right: 1px solid #30363d; }
QProgressBar { border: 1px solid #30363d; border-radius: 3px; text-align: center; height: 16px; }
QProgressBar::chunk { background: #2f81f7; }
QToolTip { border: 1px solid #444c56; }
QToolButton#pinButton { padding: 2px 8px; border: 1px solid #444c56; border-radius: 3px; }
QToolButton#pinButton:checked { background: #2f81f7; color: white; border-color: #2f81f7; }
QToolButton#resetShift { padding: 2px 8px; border: 1px solid #444c56; border-radius: 3px; background: #2d333b; }
QToolButton#resetShift:hover { border-color: #8b949e; }
QToolButton#resetShift:pressed { background: #444c56; }
QFrame#sliderRow { border-bottom: 1px solid #30363d; }
"""


class UiGarbageCollector(QObject):
    """Python's cyclic garbage collector, run only on the UI thread, and cheaply.

    Automatic collection is off; a timer collects each generation when its count passes the
    usual threshold (as pyqtgraph's ``GarbageCollector``). Why the UI thread: a collection starts
    in whichever thread happens to allocate; started in a worker (a job importing torch's compiler
    stack allocates a lot) it destroys unreachable Qt objects, such as a closed panel's plots, on
    that thread. Qt objects must die on their own thread: the worker, inside ``QObject::~QObject``
    and holding a Qt lock, waited for the interpreter lock that the UI thread held while it waited
    for that Qt lock, and the editor froze for good.

    Why cheaply: with torch, Qt and a model loaded the process holds ~250 000 tracked objects, and
    a full (generation 2) collection walks them all: 120 ms of the UI thread, a visible stall, each
    time it runs. ``settle()`` (after start-up and after each model load) collects once and then
    freezes the survivors (``gc.freeze``: moved to a permanent generation that collections skip),
    so later full collections see only what was allocated since: well under a millisecond.
    """

    def __init__(self, parent: QObject | None = None, interval_ms: int = 500) -> None:
        super().__init__(parent)
        self.threshold = gc.get_threshold()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.check)
        self.timer.start()

    def check(self) -> None:
        c0, c1, c2 = gc.get_count()
        t0, t1, t2 = self.threshold
        if c0 > t0:
            generation = 2 if (c1 > t1 and c2 > t2) else 1 if c1 > t1 else 0
            gc.collect(generation)

    def settle(self) -> None:
        """Collect everything once, then freeze what survives (start-up, a model just loaded)."""
        gc.unfreeze()  # what an earlier model left may be garbage now
        gc.collect()
        gc.freeze()


def collect_garbage_on_ui_thread(app: QApplication) -> UiGarbageCollector:
    """Install the UI-thread garbage collector (``UiGarbageCollector``) once; returns it."""
    if getattr(app, "_atlas_gc", None) is None:
        app._atlas_gc = UiGarbageCollector(app)
    return app._atlas_gc


def settle_garbage() -> None:
    """Collect once and freeze the survivors, if the editor's collector is installed (see
    ``UiGarbageCollector.settle``); call it on the UI thread when a model has loaded."""
    app = QApplication.instance()
    collector = getattr(app, "_atlas_gc", None) if app is not None else None
    if collector is not None:
        collector.settle()


def make_app(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    collect_garbage_on_ui_thread(app)
    app.setApplicationName("GAN Atlas")
    app.setOrganizationName("gan-atlas")
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    app.setStyleSheet(STYLE)
    f = QFont(app.font())
    if f.pointSizeF() < 9.5:
        f.setPointSizeF(9.5)
        app.setFont(f)
    return app


def configure_threads(settings: Settings) -> int:
    """Cap torch's threads (one core stays with the UI on small machines) and size the pool.

    The GIL switch interval drops from 5 ms to 1 ms: a worker running Python between torch ops
    then hands the interpreter back to the UI thread within a millisecond instead of five
    (bench/bench_gui_stall.py measures the effect).
    """
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    n = cap_threads(settings.threads or None)
    QThreadPool.globalInstance().setMaxThreadCount(POOL_THREADS)
    return n


def run(
    model: str | None = None,
    open_sets=(),
    *,
    device: str | None = None,
    threads: int | None = None,
    panel: str | None = None,
    select: int | None = None,
    class_name: str | None = None,
) -> int:
    """Open the editor and run the event loop; returns the exit code."""
    app = make_app()
    settings = Settings()
    if device:
        settings.device = device
    if threads is not None:
        settings.threads = threads
    configure_threads(settings)
    from desktop.main_window import MainWindow

    win = MainWindow(settings, model=model, open_sets=open_sets, class_name=class_name)
    win.show()
    win._prewarm = prewarm()
    job_process()  # the long-job process starts (and imports torch) in the background now
    if panel:
        win.show_dock(panel)
    if select is not None:

        def pick() -> None:
            if win.ws.entries and select < len(win.ws.entries[-1].dset):
                win.ws.select(win.ws.entries[-1], select)

        win.ws.setsChanged.connect(pick)
    rc = app.exec()
    exit_now(rc)
    return rc


def exit_now(rc: int) -> None:
    """End the process as soon as the event loop has ended.

    Nothing is left to save by then: annotations are written as they change, and the window's
    ``closeEvent`` stored the layout, cancelled running jobs and waited for them (a cancelled
    discovery's partial set is on disk). What remains is the interpreter's teardown, which
    garbage-collects the module graphs of torch and Qt and took seconds after the window had
    gone. The exit handlers still run and the output is flushed; ``GAN_ATLAS_SLOW_EXIT=1``
    keeps the normal teardown (``bench/bench_exit.py`` compares the two).
    """
    if os.environ.get("GAN_ATLAS_SLOW_EXIT"):
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(rc)
