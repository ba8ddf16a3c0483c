"""The main window: preview in the centre, browser and annotations on the left, grid inspector and
discovery on the right (dock widgets; their layout is saved), menus, settings, model loading."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, QThreadPool, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSpinBox,
)
from superqt.utils import create_worker

from desktop.analysis_views import AnalysisPanel
from desktop.app import settle_garbage
from desktop.browser import DirectionBrowser
from desktop.discovery import DiscoveryPanel
from desktop.export_dialog import ExportContext, ExportDialog
from desktop.grid import GridInspector
from desktop.job_process import CANCEL_GRACE_S
from desktop.preview import PreviewPanel
from desktop.projection_dialog import ProjectionDialog
from desktop.settings import Settings
from desktop.tagging import AnnotationEditor
from desktop.widgets import error_text, show_error
from desktop.workers import BackgroundCall, LatestWins, job_pool, shutdown_job_process
from desktop.workspace import SetEntry, Workspace
from engine.device import DEVICE_CHOICES, cap_threads, default_threads
from engine.directions import DirectionSet, library_sets
from engine.errors import AtlasError

SHORTCUTS = [
    (
        "Preview",
        [
            ("[ / ]", "previous / next seed"),
            ("Ctrl+R", "random seed"),
            ("B", "before / after"),
            ("Ctrl+0", "reset all shifts"),
            ("Ctrl+I", "open an image: project a photo, edit it as seed @name"),
        ],
    ),
    (
        "Grid inspector",
        [
            ("↑ / ↓", "previous / next direction"),
            ("← / →", "shift column"),
            ("1 … 5", "rate (0 clears)"),
            ("I / U / X", "interpretable: yes / unsure / no"),
            ("N", "name"),
            ("P", "pin to preview"),
            ("Enter", "open the cell in the preview"),
            ("click", "load a cell (seed, shift) into the preview"),
        ],
    ),
    (
        "Everywhere",
        [
            ("Ctrl+Z / Ctrl+Shift+Z", "undo / redo an annotation"),
            ("F2", "rename the current direction"),
            ("Ctrl+O", "open a direction set"),
            ("Ctrl+Shift+O", "open a model"),
            ("Ctrl+E", "export"),
            ("Ctrl+1 / 2 / 3 / 4", "show grid / discovery / browser / analysis"),
            ("F1", "this list"),
        ],
    ),
]


def read_latent(path: str, gen):
    """A ``.latent`` file checked against ``gen`` (worker thread: it hashes the tuned weights)."""
    from engine.latents import load_latent

    return load_latent(path, gen)


def _load_model(spec: str, device: str):
    from engine.models import load_generator

    gen = load_generator(spec or None, device=device)
    if gen.num_classes:
        gen.class_names()  # ImageNet names come from torchvision: imported here, on the worker
    return gen


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings = settings
        f = QFormLayout(self)
        self.device = QComboBox(self)
        self.device.addItems(list(DEVICE_CHOICES))
        self.device.setCurrentText(settings.device)
        self.device.setToolTip("auto: CUDA when present, else CPU (takes effect when the model is reloaded)")
        f.addRow("Device", self.device)
        self.threads = QSpinBox(self)
        self.threads.setRange(0, 256)
        self.threads.setSpecialValueText(f"auto ({default_threads()})")
        self.threads.setValue(settings.threads)
        self.threads.setToolTip("CPU threads for torch; auto leaves a core for the interface on small machines")
        f.addRow("CPU threads", self.threads)
        row = QHBoxLayout()
        self.library = QLineEdit(str(settings.library), self)
        row.addWidget(self.library, 1)
        b = QPushButton("Browse…", self)
        b.clicked.connect(self._browse)
        row.addWidget(b)
        f.addRow("Library folder", row)
        f.addRow("", QLabel(f"Settings file: {settings.path}"))
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        bb.accepted.connect(self.accept)
        bb.rejected.connect(self.reject)
        f.addRow(bb)

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Library folder", self.library.text())
        if path:
            self.library.setText(path)


class MainWindow(QMainWindow):
    """The editor. ``model``: built-in name / checkpoint / adapter (default: the built-in model);
    ``gen``: an already loaded generator (tests); ``open_sets``: direction sets to open; ``class_name``:
    the class to show first on a class-conditional model (an index or a name)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        model: str | None = None,
        gen=None,
        open_sets=(),
        scan: bool = True,
        class_name: str | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.setWindowTitle("GAN Atlas")
        self.setObjectName("mainWindow")
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowTabbedDocks)
        self.ws = Workspace(self)
        self.scan = scan
        self._library_stamp = 0  # the latest library listing asked for (refresh_library)
        self._pending_sets: list[str] = [str(p) for p in open_sets]
        self._loaders: set = set()
        self._restoring_pins = False
        self.model_spec = model
        self._initial_class = class_name

        self.preview = PreviewPanel(self.ws, self)
        self.setCentralWidget(self.preview)
        self.browser = DirectionBrowser(self.ws, self)
        self.editor = AnnotationEditor(self.ws, self)
        self.grid = GridInspector(self.ws, self)
        self.discovery = DiscoveryPanel(self.ws, lambda: self.settings.library, self, settings=self.settings)
        self.analysis = AnalysisPanel(self)
        self.docks = {}
        for key, title, widget, area in (
            ("browser", "Directions", self.browser, Qt.DockWidgetArea.LeftDockWidgetArea),
            ("editor", "Annotation", self.editor, Qt.DockWidgetArea.LeftDockWidgetArea),
            ("grid", "Grid inspector", self.grid, Qt.DockWidgetArea.RightDockWidgetArea),
            ("discovery", "Discovery", self.discovery, Qt.DockWidgetArea.RightDockWidgetArea),
            ("analysis", "Analysis", self.analysis, Qt.DockWidgetArea.RightDockWidgetArea),
        ):
            dock = QDockWidget(title, self)
            dock.setObjectName(f"dock_{key}")
            dock.setWidget(widget)
            dock.setFeatures(
                QDockWidget.DockWidgetFeature.DockWidgetMovable
                | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                | QDockWidget.DockWidgetFeature.DockWidgetClosable
            )
            self.addDockWidget(area, dock)
            self.docks[key] = dock
        self.splitDockWidget(self.docks["browser"], self.docks["editor"], Qt.Orientation.Vertical)
        self.tabifyDockWidget(self.docks["grid"], self.docks["discovery"])
        self.tabifyDockWidget(self.docks["discovery"], self.docks["analysis"])
        self.docks["grid"].raise_()
        # the grid and the plots work only while on screen; they catch up when their tab is chosen
        for key, widget in (("grid", self.grid), ("discovery", self.discovery.plots)):
            self.docks[key].visibilityChanged.connect(
                lambda on, w=widget: on and QTimer.singleShot(0, w.shown)  # after the dock has moved in
            )
        self._fit_to_screen()

        self.loader = LatestWins(_load_model, self)
        self.loader.result.connect(self._model_loaded)
        self.loader.failed.connect(self._model_failed)

        self._connect()
        self._menus()
        self.status_label = QLabel("", self)
        self.statusBar().addPermanentWidget(self.status_label)
        self._restore_layout()

        if gen is not None:
            self._model_loaded(0, gen)
        else:
            self.load_model(model or "")

    def _fit_to_screen(self) -> None:
        screen = QApplication.primaryScreen()
        avail = screen.availableGeometry() if screen is not None else None
        w, h = 1560, 960
        if avail is not None and avail.width() > 0:
            w, h = min(w, avail.width() - 20), min(h, avail.height() - 40)
            self.move(avail.x() + (avail.width() - w) // 2, avail.y() + max(0, (avail.height() - h) // 3))
        self.resize(w, h)

    # ---- wiring ----------------------------------------------------------------------------------
    def _connect(self) -> None:
        ws = self.ws
        self.browser.openRequested.connect(self.open_in_preview)
        self.browser.showInGrid.connect(self.show_in_grid)
        self.browser.exportRequested.connect(lambda e: self.export_dialog("video", e))
        self.browser.openModelRequested.connect(self._open_other_model)
        self.browser.closeSetRequested.connect(self.ws.remove_set)
        self.grid.cellActivated.connect(self._cell_activated)
        self.grid.openRequested.connect(self.open_in_preview)
        self.discovery.setFinished.connect(self._discovery_finished)
        self.preview.psi.valueChanged.connect(lambda v: self.grid.set_psi(float(v)))
        self.preview.smooth.toggled.connect(self.grid.set_smooth)
        ws.saveFailed.connect(lambda msg: show_error(self, AtlasError(msg)))
        ws.annotationChanged.connect(self._annotation_saved)
        ws.currentChanged.connect(self._update_title)
        for sig in (ws.currentChanged, ws.modelChanged):
            sig.connect(self._analysis_target)
        ws.setUpdated.connect(lambda _e: self._analysis_target())
        ws.classChanged.connect(self._analysis_target)
        ws.setsChanged.connect(self._remember_sets)
        ws.activeChanged.connect(self._remember_pins)

    def _menus(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        self._action(m, "Open &model…", "Ctrl+Shift+O", self.open_model_dialog)
        self.recent_models = m.addMenu("Recent models")
        self._action(m, "&Open direction set…", QKeySequence.StandardKey.Open, self.open_set_dialog)
        self.recent_sets = m.addMenu("Recent direction sets")
        m.aboutToShow.connect(self._fill_recent)
        m.addSeparator()
        self._action(m, "&Export…", "Ctrl+E", lambda: self.export_dialog("video"))
        self._action(m, "Export current &image…", None, lambda: self.export_dialog("image"))
        self._action(m, "Export &grid…", None, lambda: self.export_dialog("grid"))
        self._action(m, "Export every &interpretable direction…", None, lambda: self.export_dialog("batch"))
        m.addSeparator()
        self._action(m, "&Settings…", QKeySequence.StandardKey.Preferences, self.settings_dialog)
        m.addSeparator()
        self._action(m, "&Quit", QKeySequence.StandardKey.Quit, self.close)

        m = mb.addMenu("&Edit")
        undo = self.ws.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcut(QKeySequence.StandardKey.Undo)
        redo = self.ws.undo_stack.createRedoAction(self, "&Redo")
        # the platform's redo keys, plus Ctrl+Shift+Z where the platform lacks it: a key bound twice
        # is an "ambiguous shortcut" that Qt ignores (Linux lists Ctrl+Shift+Z itself)
        keys = QKeySequence.keyBindings(QKeySequence.StandardKey.Redo)
        if QKeySequence("Ctrl+Shift+Z") not in keys:
            keys.append(QKeySequence("Ctrl+Shift+Z"))
        redo.setShortcuts(keys)
        m.addAction(undo)
        m.addAction(redo)
        self.undo_action, self.redo_action = undo, redo
        m.addSeparator()
        self._action(m, "Rename direction", "F2", self.rename_current)
        self._action(m, "Pin / unpin direction", None, self._toggle_pin)

        m = mb.addMenu("&Preview")
        self._action(m, "Random seed", "Ctrl+R", self.preview.random_seed)
        self._action(m, "Reset shifts", "Ctrl+0", self.ws.reset_shifts)
        m.addSeparator()
        self._action(m, "Open &image…", "Ctrl+I", self.open_image_dialog)
        self._action(m, "Open projected &latent…", None, self.open_latent_dialog)
        m.addSeparator()
        self._action(m, "Unpin all", None, self._unpin_all)

        m = mb.addMenu("&View")
        self._action(m, "Grid inspector", "Ctrl+1", lambda: self.show_dock("grid"))
        self._action(m, "Discovery", "Ctrl+2", lambda: self.show_dock("discovery"))
        self._action(m, "Analysis of the current direction", "Ctrl+4", lambda: self.show_dock("analysis"))
        self._action(m, "Directions", "Ctrl+3", lambda: self.show_dock("browser"))
        m.addSeparator()
        for dock in self.docks.values():
            m.addAction(dock.toggleViewAction())
        self._action(m, "Reset layout", None, self._reset_layout)

        m = mb.addMenu("&Help")
        self._action(m, "Keyboard shortcuts", "F1", self.shortcuts_dialog)

    def _action(self, menu, text, shortcut, slot) -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut) if isinstance(shortcut, str) else shortcut)
        a.triggered.connect(lambda _=False: slot())
        menu.addAction(a)
        return a

    # ---- model -----------------------------------------------------------------------------------
    def load_model(self, spec: str) -> None:
        """Load a model on a worker (the window stays usable); ``""`` = the built-in model."""
        cap_threads(self.settings.threads or None)
        self.status_label.setText(f"loading {spec or 'the built-in model'}…")
        self.preview.canvas.placeholder = f"Loading {spec or 'the built-in model'}…"
        self.preview.canvas.update()
        self._loading_spec = spec
        self.loader.submit(spec, self.settings.device)

    def _model_loaded(self, _stamp: int, gen) -> None:
        self.model_spec = getattr(self, "_loading_spec", self.model_spec)
        self.ws.set_generator(gen)
        wanted, self._initial_class = self._initial_class, None
        if wanted is not None:
            try:
                self.ws.set_class(gen.find_class(wanted))
            except AtlasError as exc:
                show_error(self, exc)
        self.settings.add_recent("models", gen.source or self.model_spec or "")
        self.preview.canvas.placeholder = "Rendering…"
        self._update_title()
        self.refresh_library()
        pending, self._pending_sets = self._pending_sets, []
        for path in pending:
            self.open_set(path)
        # the model, torch and Qt are long-lived now: freeze them out of the UI thread's collections
        QTimer.singleShot(0, settle_garbage)

    def _model_failed(self, _stamp: int, exc: Exception) -> None:
        tried = getattr(self, "_loading_spec", "") or "the built-in model"
        gen = self.ws.gen
        if gen is not None:  # the model that was loaded before still works: say so
            self._update_title()
            self.status_label.setText(f"{gen.name} is still loaded (could not open {Path(tried).name})")
            self.status_label.setToolTip(f"could not open {tried}: {error_text(exc)}")
            self.preview.canvas.placeholder = "Rendering…"
        else:
            self.status_label.setText("no model loaded")
            self.preview.canvas.placeholder = "No model loaded: File ▸ Open model…"
        self.preview.canvas.update()
        self._pending_sets = []  # they were waiting for the model that failed
        show_error(self, exc)

    def refresh_library(self, open_found: bool = True) -> BackgroundCall | None:
        """List the library's sets; with ``open_found``, open the ones found on the loaded model.

        The folder is read on a worker (``engine.directions.library_sets`` reads every set's
        manifest: a large library on a slow disk would stall the editor); the listing arrives on
        the UI thread, and a listing older than the latest request is dropped. Returns the call.
        """
        if not self.scan:
            return None
        self._library_stamp += 1
        stamp = self._library_stamp
        return BackgroundCall(
            library_sets,
            self.settings.library,
            done=lambda sets: self._library_read(stamp, sets, open_found),
            failed=lambda exc: stamp == self._library_stamp and show_error(self, exc),
            parent=self,
        )

    def _library_read(self, stamp: int, sets: list, open_found: bool) -> None:
        if stamp != self._library_stamp:
            return  # a newer listing was asked for (another library folder, another model)
        self.browser.set_library(sets)
        ident = self.ws.gen.identity if self.ws.gen is not None else None
        if open_found:
            for s in sets:
                if ident and s.model_identity == ident:
                    self.open_set(str(s.path), remember=False)

    def _analysis_target(self) -> None:
        """The analysis dock follows the current direction (finished sets only)."""
        cur = self.ws.current
        gen = self.ws.conditioned_gen()  # analyses of class-conditional models run on the class shown
        if cur is None or cur[0].running:
            self.analysis.set_target(gen, None, 0)
        else:
            self.analysis.set_target(gen, cur[0].dset, cur[1])

    def _update_title(self) -> None:
        gen = self.ws.gen
        bits = ["GAN Atlas"]
        if gen is not None:
            bits.append(gen.name)
            self.status_label.setText(
                f"{gen.name} · {gen.resolution}px · {gen.device} · torch threads "
                f"{__import__('torch').get_num_threads()}"
            )
        if self.ws.current is not None:
            bits.append(self.ws.current[0].title)
        self.setWindowTitle(" — ".join(bits))

    # ---- sets ------------------------------------------------------------------------------------
    def open_set(self, path: str, remember: bool = True) -> None:
        """Load a direction set on a worker and add it to the workspace."""
        if self.ws.gen is None:
            self._pending_sets.append(path)
            return
        worker = create_worker(DirectionSet.load, path, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._set_loaded if remember else self._set_loaded_quiet)
        worker.errored.connect(self._set_failed)
        worker.finished.connect(lambda w=worker: self._loaders.discard(w))
        self._loaders.add(worker)
        worker.start()

    def _set_loaded_quiet(self, dset: DirectionSet) -> None:
        self._set_loaded(dset, remember=False)

    def _set_loaded(self, dset: DirectionSet, remember: bool = True) -> SetEntry | None:
        try:
            entry = self.ws.add_set(dset)
        except AtlasError as exc:
            show_error(self, exc)
            return None
        if remember and dset.path is not None:
            self.settings.add_recent("sets", str(dset.path))
        self._restore_pins(entry)
        if entry.foreign:
            self.statusBar().showMessage(f"{entry.title}: {entry.foreign}", 8000)
        if self.ws.current is None and len(dset):
            self.ws.select(entry, 0)
        return entry

    # ---- pins (remembered per set file, with their shifts) ----------------------------------
    PINS_KEY = "preview/pins"

    def _remember_pins(self) -> None:
        """Store the pinned directions of every open set file (and their shifts); the pins of
        sets not open now are kept as they were."""
        if self._restoring_pins:
            return
        stored = self.settings.get(self.PINS_KEY, {})
        stored = stored if isinstance(stored, dict) else {}
        for e in self.ws.entries:
            if e.dset.path is None or e.running:
                continue
            key = str(Path(e.dset.path).resolve())
            pins = [[k, self.ws.shift(e, k)] for pe, k in self.ws.pinned if pe is e]
            if pins:
                stored[key] = pins
            else:
                stored.pop(key, None)
        self.settings.set(self.PINS_KEY, stored)

    def _restore_pins(self, entry: SetEntry) -> None:
        if entry.dset.path is None:
            return
        stored = self.settings.get(self.PINS_KEY, {})
        pins = stored.get(str(Path(entry.dset.path).resolve())) if isinstance(stored, dict) else None
        if not isinstance(pins, list):
            return
        self._restoring_pins = True
        try:
            for item in pins:
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int)):
                    continue
                k, t = item
                if 0 <= k < len(entry.dset) and not self.ws.is_pinned(entry, k):
                    self.ws.pin(entry, k)
                    if isinstance(t, (int, float)) and t:
                        self.ws.set_shift(entry, k, float(t))
        finally:
            self._restoring_pins = False

    def _set_failed(self, exc: Exception) -> None:
        show_error(self, exc)

    def _remember_sets(self) -> None:
        self._update_title()

    def _open_other_model(self, source: str, set_path: str) -> None:
        if not source:
            show_error(self, AtlasError(f"{set_path}: the set does not record which model it was found on"))
            return
        self._pending_sets.append(set_path)
        self.load_model(source)

    def _discovery_finished(self, entry: SetEntry) -> None:
        if entry.dset.path is not None:
            self.settings.add_recent("sets", str(entry.dset.path))
        self.refresh_library(open_found=False)
        if len(entry.dset):
            self.ws.select(entry, 0)
        self.grid.show_set(entry)

    # ---- actions ---------------------------------------------------------------------------------
    def open_model_dialog(self) -> None:
        from engine.models import builtin_models

        names = [m.name for m in builtin_models()]
        choice, ok = QInputDialog.getItem(
            self,
            "Open model",
            "Built-in model, or choose 'File…' for a checkpoint (.pt, .pkl, a BigGAN .bin) or adapter (.py):",
            names + ["File…"],
            0,
            False,
        )
        if not ok:
            return
        if choice == "File…":
            path, _ = QFileDialog.getOpenFileName(
                self, "Open model", "", "Checkpoints and adapters (*.pt *.pth *.pkl *.tar *.bin *.py);;All files (*)"
            )
            if not path:
                return
            choice = path
        self.load_model(choice)

    def open_set_dialog(self) -> None:
        start = str(self.settings.library)
        paths, _ = QFileDialog.getOpenFileNames(self, "Open direction set", start, "Direction sets (*.json)")
        for p in paths:
            self.open_set(p)

    def _fill_recent(self) -> None:
        for menu, kind, fn in (
            (self.recent_models, "models", self.load_model),
            (self.recent_sets, "sets", self.open_set),
        ):
            menu.clear()
            items = self.settings.recent(kind)
            for item in items:
                a = menu.addAction(item)
                a.triggered.connect(lambda _=False, i=item, f=fn: f(i))
            menu.setEnabled(bool(items))

    def export_dialog(self, tab: str = "video", entry: SetEntry | None = None) -> ExportDialog | None:
        if self.ws.gen is None:
            show_error(self, AtlasError("no model is loaded yet"))
            return None
        cur = self.ws.current
        entry = entry or (cur[0] if cur else (self.ws.entries[-1] if self.ws.entries else None))
        current = cur[1] if cur and cur[0] is entry else None
        pinned = [k for e, k in self.ws.pinned if e is entry]
        req = self.preview.current_request()
        folder = Path(self.settings.get("export/folder") or self.settings.library)
        ctx = ExportContext(
            self.ws.conditioned_gen(),  # seeds of class-conditional models export on the class shown
            entry,
            current,
            pinned,
            req.seeds,
            req.psi,
            req.space,
            req.layers,
            self.preview.image(),
            folder,
            images=dict(self.ws.images),
        )
        dlg = ExportDialog(ctx, tab, self)
        dlg.finished.connect(lambda _r: dlg.last_folder and self.settings.set("export/folder", str(dlg.last_folder)))
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.open()
        self.last_export_dialog = dlg
        return dlg

    # ---- projected images ------------------------------------------------------------------------
    def open_image_dialog(self, path: str | None = None) -> ProjectionDialog | None:
        """Preview ▸ Open image…: project a photo; "Use as seed" adds it as ``@name``."""
        if self.ws.gen is None:
            show_error(self, AtlasError("no model is loaded yet"))
            return None
        folder = Path(self.settings.get("project/folder", str(Path.home())))
        dlg = ProjectionDialog(self.ws.conditioned_gen(), self, image=path, folder=folder)  # fit on the class shown
        dlg.projected.connect(self.add_projected)
        dlg.finished.connect(lambda _r: self.settings.set("project/folder", str(dlg.default_save_path().parent)))
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.open()
        self.last_projection_dialog = dlg
        return dlg

    def open_latent_dialog(self) -> None:
        start = self.settings.get("project/folder", str(Path.home()))
        path, _ = QFileDialog.getOpenFileName(self, "Open projected latent", start, "Projected latents (*.latent)")
        if path:
            self.open_latent(path)

    def open_latent(self, path: str) -> BackgroundCall | None:
        """Load a ``.latent`` file (from ``main.py project`` or the dialog) as a seed; the file is
        read and hashed on a worker, then the seed appears in the preview."""
        if self.ws.gen is None:
            show_error(self, AtlasError("no model is loaded yet"))
            return None
        gen = self.ws.gen
        self.statusBar().showMessage(f"reading {Path(path).name}…", 5000)

        def loaded(lat) -> None:
            if self.ws.gen is gen:  # not if another model was loaded meanwhile
                self.add_projected(lat)

        return BackgroundCall(
            read_latent, path, gen, done=loaded, failed=lambda exc: show_error(self, exc), parent=self
        )

    def add_projected(self, lat) -> str | None:
        """Make a projected image the seed ``@name`` and show it in the preview."""
        try:
            name = self.ws.add_image(lat)
        except AtlasError as exc:
            show_error(self, exc)
            return None
        self.preview.show_image_seed(name)
        self.statusBar().showMessage(
            f"@{name}: the projected image is a seed; type @{name} in any seed field (preview, grid, export)", 10000
        )
        return name

    def settings_dialog(self) -> None:
        dlg = SettingsDialog(self.settings, self)

        def apply() -> None:
            old_device = self.settings.device
            self.settings.device = dlg.device.currentText()
            self.settings.threads = dlg.threads.value()
            self.settings.library = dlg.library.text()
            cap_threads(self.settings.threads or None)
            self._update_title()
            if self.settings.device != old_device and self.ws.gen is not None:
                self.load_model(self.ws.gen.source)
            else:
                self.refresh_library()

        dlg.accepted.connect(apply)
        dlg.open()

    def shortcuts_dialog(self) -> None:
        rows = []
        for section, items in SHORTCUTS:
            rows.append(f"<tr><td colspan=2><b>{section}</b></td></tr>")
            rows += [f"<tr><td style='padding-right:14px'><code>{k}</code></td><td>{v}</td></tr>" for k, v in items]
        box = QMessageBox(self)
        box.setWindowTitle("Keyboard shortcuts")
        box.setText("<table>" + "".join(rows) + "</table>")
        box.open()

    def show_dock(self, key: str) -> None:
        dock = self.docks[key]
        dock.show()
        dock.raise_()
        dock.widget().setFocus()
        if key == "grid":
            self.grid.view.setFocus()

    def show_in_grid(self, entry: SetEntry) -> None:
        self.grid.show_set(entry)
        self.show_dock("grid")

    def open_in_preview(self) -> None:
        self.preview.focus_sliders()

    def _cell_activated(self, entry: SetEntry, k: int, t: float, seed: int) -> None:
        self.ws.select(entry, k)
        self.ws.set_shift(entry, k, t)
        self.preview.set_seeds([seed])

    def rename_current(self) -> None:
        if self.docks["grid"].isVisible() and self.grid.view.hasFocus():
            idx = self.grid.view.currentIndex()
            if idx.isValid():
                self.grid.view.edit(idx.siblingAtColumn(0))
                return
        self.editor.focus_name()

    def _toggle_pin(self) -> None:
        if self.ws.current:
            e, k = self.ws.current
            self.ws.pin(e, k, not self.ws.is_pinned(e, k))

    def _unpin_all(self) -> None:
        for e, k in list(self.ws.pinned):
            self.ws.pin(e, k, False)

    def _annotation_saved(self, entry: SetEntry, k: int) -> None:
        if entry.dset.path is not None:
            self.statusBar().showMessage(f"saved {entry.dset.path.name}", 2500)

    # ---- layout ----------------------------------------------------------------------------------
    def _restore_layout(self) -> None:
        geo = self.settings.load_bytes("window/geometry")
        state = self.settings.load_bytes("window/state")
        if geo is not None:
            self.restoreGeometry(geo)
        if state is not None:
            self.restoreState(state)
        self._sized = state is not None

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._sized:  # dock sizes only apply once the window has its real size
            self._sized = True
            QTimer.singleShot(0, self._default_sizes)

    def _default_sizes(self) -> None:
        w = self.width()
        self.resizeDocks(
            [self.docks["browser"], self.docks["grid"]], [int(w * 0.25), int(w * 0.45)], Qt.Orientation.Horizontal
        )
        self.resizeDocks(
            [self.docks["browser"], self.docks["editor"]],
            [int(self.height() * 0.55), int(self.height() * 0.45)],
            Qt.Orientation.Vertical,
        )

    def _reset_layout(self) -> None:
        for key in ("browser", "editor"):
            self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.docks[key])
        for key in ("grid", "discovery", "analysis"):
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.docks[key])
        for dock in self.docks.values():
            dock.setFloating(False)
            dock.show()
        self.splitDockWidget(self.docks["browser"], self.docks["editor"], Qt.Orientation.Vertical)
        self.tabifyDockWidget(self.docks["grid"], self.docks["discovery"])
        self.tabifyDockWidget(self.docks["discovery"], self.docks["analysis"])
        self.docks["grid"].raise_()
        self._default_sizes()

    def closeEvent(self, event) -> None:  # noqa: N802
        self.settings.save_bytes("window/geometry", self.saveGeometry())
        self.settings.save_bytes("window/state", self.saveState())
        self.discovery.remember()
        self._remember_pins()  # with the shifts they have now
        if self.discovery.running:
            self.discovery.cancel()
        self.analysis.runner.cancel()
        for dlg in self.findChildren(ExportDialog):
            dlg.runner.cancel()
        for dlg in self.findChildren(ProjectionDialog):
            dlg.runner.cancel()
        for renderer in (self.preview.renderer, self.grid.model.renderer, self.loader):
            renderer.shutdown()
        # the long-job process: let a cancelled discovery report (and its partial set be saved)
        deadline = time.monotonic() + CANCEL_GRACE_S + 1.0
        while self.discovery.running and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.02)
        # let running jobs stop at their next step and deliver their last signals (which may
        # save a cancelled discovery's partial result)
        pools = (job_pool(), QThreadPool.globalInstance())
        for pool in pools:
            pool.waitForDone(15000)
        QApplication.processEvents()
        for pool in pools:
            pool.waitForDone(15000)
        shutdown_job_process()
        super().closeEvent(event)
