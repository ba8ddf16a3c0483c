"""The discovery panel: pick a method, fill its ``Params`` form, run it on a worker.

The form is built from the method's frozen ``Params`` dataclass (ints, floats, bools, strings,
``Literal`` / enum / ``metadata["choices"]`` choices, optional values and tuples), with each
field's ``metadata["help"]`` as its tooltip. While the job runs, every scalar in
``Progress.metrics`` is plotted against the step (loss, RCA, ...), array-valued metrics
(an eigenvalue spectrum) are drawn as bars, and a partial ``DirectionSet`` appears in the browser
at once (read-only until the job ends). The finished set is saved to the library and opened.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import math
import typing
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from desktop.job_process import JobSpec, function_path, model_ref_of
from desktop.widgets import error_text, on_screen, show_error
from desktop.workers import BackgroundCall, ProcessJobRunner, torch_threads
from desktop.workspace import SetEntry, Workspace
from engine.directions import DirectionSet
from engine.discovery.registry import MethodSpec, methods
from engine.errors import AtlasError
from engine.export import slug
from engine.jobs import Eta, Progress
from engine.params import field_hints, optional_inner, parse_value

pg.setConfigOptions(antialias=True)
MAX_CURVES = 6
REDRAW_MS = 1000  # plots of a running job
STATUS_MS = 250  # its status line and progress bar


def _is_scalar(v) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float, np.floating, np.integer)):
        return True
    return hasattr(v, "ndim") and getattr(v, "ndim", 1) == 0


def _as_array(v) -> np.ndarray | None:
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) for x in v):
        return np.asarray(v, dtype=float)
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    if isinstance(v, np.ndarray) and v.ndim == 1 and v.size >= 1:
        return v.astype(float)
    return None


class ParamField:
    """One form widget for one dataclass field; ``value()`` parses it back (AtlasError if bad)."""

    def __init__(self, f: dataclasses.Field, hint, gen, parent: QWidget, owner: str = "") -> None:
        self.field = f
        self.name = f.name
        self.default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )  # type: ignore[misc]
        self.owner = owner
        self.full_hint = hint
        hint, self.optional = optional_inner(hint)
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        self.hint = hint
        choices = f.metadata.get("choices")
        if choices is None and origin is typing.Literal:
            choices = list(args)
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            choices = list(hint)
        if (
            choices is None
            and hint is str
            and (f.name == "layer" or f.name.endswith("_layer"))
            and gen is not None
            and gen.editable_layers()
        ):
            # a weight layer to edit: offer the model's editable layers, keep the default (e.g. "auto")
            choices = [i.name for i in gen.editable_layers()]
            if self.default not in choices:
                choices.insert(0, self.default)
            self.editable_choice = True
        else:
            self.editable_choice = False
        self.choices = list(choices) if choices is not None else None

        if self.choices is not None:
            w = QComboBox(parent)
            w.setEditable(self.editable_choice or self.optional)
            for c in self.choices:
                w.addItem(c.name if isinstance(c, enum.Enum) else str(c), c)
            self._set_combo(w, self.default)
        elif hint is bool:
            w = QCheckBox(parent)
            w.setChecked(bool(self.default))
        elif hint is int and not self.optional:
            w = QSpinBox(parent)
            lo, hi = f.metadata.get("min", -2_000_000_000), f.metadata.get("max", 2_000_000_000)
            w.setRange(int(max(lo, -2_000_000_000)), int(min(hi, 2_000_000_000)))
            w.setValue(int(self.default or 0))
            w.setMinimumWidth(90)
        else:
            w = QLineEdit(parent)
            w.setText(self._text(self.default))
            if self.optional:
                w.setPlaceholderText("default (none)")
        self.widget = w
        helptext = f.metadata.get("help", "")
        w.setToolTip(helptext)
        w.setObjectName(f"param_{f.name}")

    @staticmethod
    def _text(v) -> str:
        if v is None:
            return ""
        if isinstance(v, (tuple, list)):
            return ", ".join(str(x) for x in v)
        return repr(v) if isinstance(v, float) else str(v)

    def _set_combo(self, w: QComboBox, value) -> None:
        for i in range(w.count()):
            if w.itemData(i) == value:
                w.setCurrentIndex(i)
                return
        if value is not None and w.isEditable():
            w.setEditText(str(value))

    def reset(self) -> None:
        w = self.widget
        if isinstance(w, QComboBox):
            self._set_combo(w, self.default)
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(self.default))
        elif isinstance(w, QSpinBox):
            w.setValue(int(self.default or 0))
        else:
            w.setText(self._text(self.default))

    def value(self):
        """The widget's value (text parsed by ``engine.params.parse_value``; bounds and choices are
        checked by the spec's ``make_params``)."""
        w = self.widget
        if isinstance(w, QComboBox):
            if w.isEditable() and w.currentText() != w.itemText(w.currentIndex()):
                return self._parse(w.currentText())
            return w.currentData()
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QSpinBox):
            return int(w.value())
        return self._parse(w.text())

    def _parse(self, text: str):
        return parse_value(text, self.full_hint, name=self.name, owner=self.owner)


class ParamsForm(QWidget):
    """The form of one method's ``Params``."""

    def __init__(self, spec: MethodSpec, gen, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        lay = QFormLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        lay.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        lay.setVerticalSpacing(4)
        hints = field_hints(spec.params)
        self.fields: list[ParamField] = []
        for f in dataclasses.fields(spec.params):
            if not f.init:
                continue
            pf = ParamField(f, hints[f.name], gen, self, owner=spec.owner)
            label = QLabel(f.name.replace("_", " "), self)
            helptext = f.metadata.get("help", "")
            label.setToolTip(helptext)
            if not isinstance(pf.widget, QCheckBox):
                pf.widget.setMinimumWidth(150)
            row = QHBoxLayout()
            row.setSpacing(10)
            row.addWidget(pf.widget)
            if helptext:
                note = QLabel(helptext, self)
                note.setStyleSheet("color: palette(mid);")
                note.setWordWrap(True)
                row.addWidget(note, 1)
            else:
                row.addStretch(1)
            lay.addRow(label, row)
            self.fields.append(pf)

    def values(self) -> dict:
        return {pf.name: pf.value() for pf in self.fields}

    def make_params(self):
        return self.spec.make_params(**self.values())

    def reset(self) -> None:
        for pf in self.fields:
            pf.reset()

    def state(self) -> dict:
        """What the widgets show, as plain JSON values (the text of choices and text fields)."""
        out = {}
        for pf in self.fields:
            w = pf.widget
            if isinstance(w, QComboBox):
                out[pf.name] = w.currentText()
            elif isinstance(w, QCheckBox):
                out[pf.name] = w.isChecked()
            elif isinstance(w, QSpinBox):
                out[pf.name] = int(w.value())
            else:
                out[pf.name] = w.text()
        return out

    def restore(self, state: dict) -> None:
        """Show a ``state()`` again; values that no longer fit (a layer the model lacks, a choice
        that is gone, a wrong type) keep their defaults."""
        for pf in self.fields:
            if pf.name not in state:
                continue
            value, w = state[pf.name], pf.widget
            if isinstance(w, QComboBox) and isinstance(value, str):
                i = w.findText(value)
                if i >= 0:
                    w.setCurrentIndex(i)
                elif w.isEditable() and not pf.editable_choice:
                    w.setEditText(value)
            elif isinstance(w, QCheckBox) and isinstance(value, bool):
                w.setChecked(value)
            elif isinstance(w, QSpinBox) and isinstance(value, int) and not isinstance(value, bool):
                if w.minimum() <= value <= w.maximum():
                    w.setValue(value)
            elif isinstance(w, QLineEdit) and isinstance(value, str):
                w.setText(value)

    def set_value(self, name: str, value) -> None:
        """Set one field's widget (for scripting and tests)."""
        pf = next(p for p in self.fields if p.name == name)
        w = pf.widget
        if isinstance(w, QComboBox):
            pf._set_combo(w, value)
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, QSpinBox):
            w.setValue(int(value))
        else:
            w.setText(pf._text(value))


class _Series:
    """A growing ``(step, value)`` series in numpy buffers (amortised O(1) appends, no list copies)."""

    def __init__(self) -> None:
        self.x = np.empty(256)
        self.y = np.empty(256)
        self.n = 0

    def append(self, x: float, y: float) -> None:
        if self.n == self.x.size:
            self.x = np.concatenate([self.x, np.empty(self.x.size)])
            self.y = np.concatenate([self.y, np.empty(self.y.size)])
        self.x[self.n] = x
        self.y[self.n] = y
        self.n += 1

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x[: self.n], self.y[: self.n]


def peak_decimate(x: np.ndarray, y: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``2 * points`` samples of a long curve that keep its envelope: the minimum and the
    maximum of each of ``points`` consecutive bins, in step order (what a plot of that width can
    show anyway). Short curves come back as they are."""
    n = x.size
    if n <= 2 * points:
        return x, y
    step = -(-n // points)
    bins = -(-n // step)
    pad = bins * step - n
    grid = np.concatenate([y, np.full(pad, y[-1])]).reshape(bins, step)  # the last value repeated: no new extreme
    base = np.arange(bins) * step
    lo = np.minimum(base + grid.argmin(axis=1), n - 1)
    hi = np.minimum(base + grid.argmax(axis=1), n - 1)
    idx = np.sort(np.stack([lo, hi], axis=1), axis=1).reshape(-1)
    return x[idx], y[idx]


def nice_ceiling(v: float) -> float:
    """The smallest of 1, 2, 5 x 10^k that is >= v (v > 0)."""
    k = 10.0 ** math.floor(math.log10(v))
    for m in (1.0, 2.0, 5.0, 10.0):
        if m * k >= v:
            return m * k
    return 10 * k


class StatusLine(QLabel):
    """The panel's status line: word-wrapped at a fixed height of ``LINES`` lines, with the whole
    text in its tooltip. A running job rewrites it 4x a second; a text that wrapped onto another
    number of lines resized the plots next to it, and each resize laid out every plot and axis
    again (tens of ms on the UI thread)."""

    LINES = 2

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        margins = self.contentsMargins()
        self.setFixedHeight(self.LINES * self.fontMetrics().lineSpacing() + margins.top() + margins.bottom() + 2)
        self.setToolTip(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        super().setText(text)
        self.setToolTip(text)


class MetricPlots(pg.GraphicsLayoutWidget):
    """One small plot per scalar metric (against the step), bars for array metrics.

    Drawing runs on the UI thread, so it is kept cheap (the panel calls ``redraw`` about once a
    second while a job runs): curves hold at most ``2 * MAX_POINTS`` samples (peak-decimated:
    about one per pixel column of a small plot), drawn with a 1 px pen,
    and the axes move only when the data leave the visible range or fill under ``SHRINK`` of it
    (x grows in 1-2-5 steps): re-laying out axis labels is most of a plot's repaint; the axes
    draw major ticks and grid lines only. A hidden
    panel (another dock tab in front) draws nothing until it is shown.
    """

    MAX_POINTS = 150
    SHRINK = 0.3

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setBackground(None)
        self.history: dict[str, _Series | tuple[np.ndarray, np.ndarray]] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.bars: dict[str, pg.BarGraphItem] = {}
        self.plots: dict[str, pg.PlotItem] = {}
        self.dirty: set[str] = set()
        self.setMinimumHeight(200)

    def clear_all(self) -> None:
        self.clear()
        self.history.clear()
        self.curves.clear()
        self.bars.clear()
        self.plots.clear()
        self.dirty.clear()

    def _plot(self, key: str) -> pg.PlotItem:
        if key not in self.plots:
            n = len(self.plots)
            # no context menus: they make a plot ~3x slower to build, and this runs on the UI thread
            p = self.addPlot(row=n // 2, col=n % 2, title=key, enableMenu=False)
            p.showGrid(x=True, y=True, alpha=0.25)
            p.hideButtons()
            p.getAxis("left").setWidth(46)
            for side in ("left", "bottom"):
                # major ticks (and grid lines) only: the minor ticks' grid lines, long antialiased
                # lines across the plot, were most of a repaint (19 -> 7 ms for four plots)
                p.getAxis(side).setStyle(maxTickLevel=0)
            p.disableAutoRange()  # ranges are set in _fit (with hysteresis)
            self.plots[key] = p
        return self.plots[key]

    def add(self, rec: Progress) -> None:
        for key, v in rec.metrics.items():
            if _is_scalar(v):
                series = self.history.get(key)
                if series is None:
                    if len(self.curves) + sum(isinstance(h, _Series) for h in self.history.values()) >= MAX_CURVES:
                        continue
                    series = self.history[key] = _Series()
                series.append(float(rec.step), float(v))
                self.dirty.add(key)
            else:
                arr = _as_array(v)
                if arr is not None:
                    self.history[key] = (np.arange(1, arr.size + 1, dtype=float), arr)
                    self.bars.setdefault(key, None)
                    self.dirty.add(key)

    def shown(self) -> None:
        """The plots came on screen (their dock tab was chosen): draw what arrived while hidden."""
        while self.redraw():
            pass

    def redraw(self, force: bool = False) -> bool:
        """Draw what was added since the last call; returns True if plots are still to be
        created (one per call, so building several plots at once never stalls the event loop).
        Hidden, it draws nothing (``force``: draw anyway)."""
        if not force and not on_screen(self):
            return False
        created = False
        for key in list(self.history):
            if key not in self.dirty:
                continue
            if key not in self.plots:
                if created:
                    return True
                created = True
            self.dirty.discard(key)
            p = self._plot(key)
            if key in self.bars:
                xs, ys = self.history[key]
                if self.bars[key] is None:
                    self.bars[key] = pg.BarGraphItem(x=xs, height=ys, width=0.8, brush="#58a6ff")
                    p.addItem(self.bars[key])
                    p.setLabel("bottom", "index")
                else:
                    self.bars[key].setOpts(x=xs, height=ys)
                _fit(p, (0.4, xs.size + 0.6), (min(0.0, float(ys.min())), max(0.0, float(ys.max()))), self.SHRINK)
            else:
                xs, ys = self.history[key].data()
                if key not in self.curves:
                    # a 1 px cosmetic pen: an antialiased 2 px one costs Qt's raster engine 3-7x more
                    self.curves[key] = p.plot(pen=pg.mkPen("#58a6ff", width=1))
                    p.setLabel("bottom", "step")
                self.curves[key].setData(*peak_decimate(xs, ys, self.MAX_POINTS))
                finite = ys[np.isfinite(ys)]
                if finite.size:
                    last = float(xs[-1])
                    _fit(
                        p,
                        (float(xs[0]), nice_ceiling(max(last, 1.0))),
                        (float(finite.min()), float(finite.max())),
                        self.SHRINK,
                    )
        return False


def _fit(plot: pg.PlotItem, x: tuple[float, float], y: tuple[float, float], shrink: float) -> None:
    """Show ``x`` exactly and ``y`` with a margin, moving an axis only if its data left the view or
    fill under ``shrink`` of it (so the labels are not laid out again at every redraw)."""
    (vx0, vx1), (vy0, vy1) = plot.getViewBox().viewRange()
    if (x[0], x[1]) != (vx0, vx1):
        plot.setXRange(x[0], x[1], padding=0)
    lo, hi = y
    span = hi - lo
    inside = vy0 <= lo and hi <= vy1
    if not inside or span < shrink * (vy1 - vy0):
        pad = 0.1 * span if span > 0 else max(abs(hi), 1.0) * 0.1
        plot.setYRange(lo - pad, hi + pad, padding=0)


def save_set(dset: DirectionSet, path: Path) -> Path:
    """Write a discovery's result (runs on a worker: atomic, fsynced, possibly tens of MB)."""
    return dset.save(path)


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "…"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class DiscoveryPanel(QWidget):
    """Method picker, parameters, start/cancel, progress, plots."""

    setFinished = Signal(object)  # SetEntry of the saved result

    def __init__(self, ws: Workspace, library: callable, parent: QWidget | None = None, settings=None) -> None:
        super().__init__(parent)
        self.ws = ws
        self.library = library  # () -> Path: where finished sets are saved
        self.settings = settings  # desktop.settings.Settings: each method's parameters are remembered
        # discovery runs in the long-job process: its interpreter lock never delays the editor's
        self.runner = ProcessJobRunner(self)
        self.runner.progress.connect(self._on_progress)
        self.runner.finished.connect(self._on_finished)
        self.runner.failed.connect(self._on_failed)
        self.runner.cancelled.connect(self._on_cancelled)
        self.runner.stopped.connect(self._on_stopped)
        self.entry: SetEntry | None = None
        self.form: ParamsForm | None = None
        self.eta = Eta()
        self._eta: float | None = None
        self.last: Progress | None = None
        self.spec: MethodSpec | None = None
        self.params = None
        self.started_at = ""
        self.saving = 0  # results being written on a worker
        # plots redraw about once a second, the status line and the bar 4x and partial sets reach
        # the browser 2x a second, however often the job reports: the UI thread stays free for the
        # preview (bench/bench_gui_stall.py)
        self._pending_partial: tuple[DirectionSet, str] | None = None
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(REDRAW_MS)
        self._redraw_timer.timeout.connect(self._redraw)
        self._status_timer = QTimer(self)
        self._status_timer.setSingleShot(True)
        self._status_timer.setInterval(STATUS_MS)
        self._status_timer.timeout.connect(self._show_status)
        self._partial_timer = QTimer(self)
        self._partial_timer.setSingleShot(True)
        self._partial_timer.setInterval(500)
        self._partial_timer.timeout.connect(self._apply_partial)

        root = QVBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)
        root.setSpacing(6)
        top = QHBoxLayout()
        top.addWidget(QLabel("Method"))
        self.method = QComboBox(self)
        self.method.setObjectName("methodCombo")
        self.method.setMinimumWidth(160)
        self.method.currentIndexChanged.connect(self._method_changed)
        top.addWidget(self.method, 1)
        root.addLayout(top)
        self.summary = QLabel("", self)
        self.summary.setWordWrap(True)
        self.summary.setStyleSheet("color: palette(mid);")
        root.addWidget(self.summary)

        split = QSplitter(Qt.Orientation.Vertical, self)
        self.form_area = QScrollArea(self)
        self.form_area.setWidgetResizable(True)
        self.form_area.setMinimumHeight(120)
        split.addWidget(self.form_area)
        self.plots = MetricPlots(self)
        split.addWidget(self.plots)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 2)
        split.setSizes([220, 420])
        root.addWidget(split, 1)

        buttons = QHBoxLayout()
        self.defaults = QPushButton("Defaults", self)
        self.defaults.setToolTip("reset the parameters to the paper's settings")
        self.defaults.clicked.connect(lambda: self.form and self.form.reset())
        buttons.addWidget(self.defaults)
        buttons.addStretch(1)
        self.start_btn = QPushButton("Start", self)
        self.start_btn.setObjectName("startButton")
        self.start_btn.setDefault(True)
        self.start_btn.clicked.connect(self.start)
        buttons.addWidget(self.start_btn)
        self.cancel_btn = QPushButton("Cancel", self)
        self.cancel_btn.setObjectName("cancelButton")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        buttons.addWidget(self.cancel_btn)
        root.addLayout(buttons)
        self.bar = QProgressBar(self)
        self.bar.setTextVisible(True)
        root.addWidget(self.bar)
        self.status = StatusLine("Idle", self)
        self.status.setObjectName("discoveryStatus")
        root.addWidget(self.status)

        ws.modelChanged.connect(self.refresh_methods)
        self.refresh_methods()
        last = self.settings.get("discovery/method") if self.settings is not None else None
        if isinstance(last, str) and self.method.findData(last) >= 0:
            self.method.setCurrentIndex(self.method.findData(last))

    # ---- methods and form ------------------------------------------------------------------------
    def refresh_methods(self) -> None:
        current = self.method.currentData()
        self.method.blockSignals(True)
        self.method.clear()
        gen = self.ws.gen
        for spec in methods():
            self.method.addItem(f"{spec.name}  ({spec.kind})", spec.name)
            i = self.method.count() - 1
            reason = spec.unsupported_reason(gen) if gen is not None else None
            if reason:
                self.method.model().item(i).setEnabled(False)
                self.method.setItemData(i, reason, Qt.ItemDataRole.ToolTipRole)
        self.method.blockSignals(False)
        i = self.method.findData(current)
        self.method.setCurrentIndex(i if i >= 0 else 0)
        self._method_changed()

    def select_method(self, name: str) -> None:
        i = self.method.findData(name)
        if i < 0:
            raise AtlasError(f"no discovery method '{name}' is registered")
        self.method.setCurrentIndex(i)

    def remember(self) -> None:
        """Store the current method and its form (they come back after a restart)."""
        if self.settings is None or self.form is None:
            return
        self.settings.set("discovery/method", self.form.spec.name)
        self.settings.set(f"discovery/params/{self.form.spec.name}", self.form.state())

    def _method_changed(self, *_args) -> None:
        self.remember()  # the form being replaced
        name = self.method.currentData()
        if not name:
            self.summary.setText("No discovery method is installed.")
            self.form = None
            self.form_area.setWidget(QWidget())
            self.start_btn.setEnabled(False)
            return
        spec = next(s for s in methods() if s.name == name)
        needs = " or ".join(c.replace("_", " ") for c in spec.requires)
        self.summary.setText(f"{spec.summary}" + (f" — needs {needs}" if needs else ""))
        self.form = ParamsForm(spec, self.ws.gen, self)
        if self.settings is not None:
            stored = self.settings.get(f"discovery/params/{spec.name}")
            if isinstance(stored, dict):
                self.form.restore(stored)
        holder = QWidget()
        lay = QVBoxLayout(holder)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.form)
        lay.addStretch(1)
        self.form_area.setWidget(holder)
        self.start_btn.setEnabled(not self.runner.running and not self.saving and self.ws.gen is not None)

    # ---- running ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self.runner.running or self.form is None or self.saving:
            return
        gen = self.ws.conditioned_gen()  # class-conditional models: a view on the class shown (recorded in the set)
        if gen is None:
            show_error(self, AtlasError("no model is loaded yet"))
            return
        try:
            params = self.form.make_params()
        except AtlasError as exc:
            show_error(self, exc)
            return
        spec = self.form.spec
        self.remember()
        self.spec, self.params = spec, params
        self.started_at = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.entry = None
        self.last = None
        self.eta = Eta()
        self.plots.clear_all()
        self.bar.setRange(0, 0)
        self.status.setText(f"{spec.name}: starting…")
        self.start_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.method.setEnabled(False)
        job = JobSpec(
            model_ref_of(gen),
            function_path(spec.run),
            (params,),
            {"device": str(gen.device), "state": None},
            device=str(gen.device),
            threads=torch_threads(),
        )
        self.runner.start(job)

    def cancel(self) -> None:
        if self.runner.running:
            self.status.setText("cancelling at the next step…")
            self.cancel_btn.setEnabled(False)
            self.runner.cancel()

    @property
    def running(self) -> bool:
        return self.runner.running

    def _on_progress(self, records: list[Progress]) -> None:
        partial = None
        for rec in records:
            self.plots.add(rec)
            if isinstance(rec.partial, DirectionSet):
                partial = rec.partial
            self.last = rec
        if not self._redraw_timer.isActive():
            self._redraw_timer.start(REDRAW_MS)
        rec = self.last
        self._eta = self.eta.update(rec.step, rec.total)
        if not self._status_timer.isActive():
            self._status_timer.start()
        if partial is not None:
            status = f"running {int(100 * rec.fraction)}%"
            if self.entry is None or self.entry not in self.ws.entries:
                self.entry = self.ws.add_set(partial, running=True, status=status)
            else:
                self._pending_partial = (partial, status)
                if not self._partial_timer.isActive():
                    self._partial_timer.start()

    def _show_status(self) -> None:
        """The last record's step, stage, ETA and first metrics in the status line and the bar."""
        rec = self.last
        if rec is None or self.spec is None:
            return
        if rec.total > 0:
            self.bar.setRange(0, rec.total)
            self.bar.setValue(min(rec.step, rec.total))
        bits = [f"{self.spec.name}", f"step {rec.step}/{rec.total}" if rec.total else f"step {rec.step}"]
        if rec.stage:
            bits.append(rec.stage)
        if rec.total:
            bits.append(f"ETA {_fmt_seconds(self._eta)}")
        scalars = [f"{k} {float(v):.4g}" for k, v in rec.metrics.items() if _is_scalar(v)][:3]
        bits += scalars
        if rec.message:
            bits.append(rec.message)
        self.status.setText(" · ".join(bits))

    def _redraw(self) -> None:
        if self.plots.redraw():
            self._redraw_timer.start(50)  # the next new plot soon; each call builds one

    def _apply_partial(self) -> None:
        self._partial_timer.stop()
        pending, self._pending_partial = self._pending_partial, None
        if pending is not None and self.entry is not None and self.entry in self.ws.entries:
            self.ws.replace_partial(self.entry, *pending)

    def _flush(self) -> None:
        """Deliver what the timers still hold (the job has ended)."""
        self._apply_partial()
        self._status_timer.stop()
        self._redraw_timer.stop()
        while self.plots.redraw(force=True):
            pass

    def _set_path(self, suffix: str = "") -> Path:
        """``<library>/<model>/<method>-<time><suffix>.json``: where this run's result is saved."""
        gen = self.ws.gen
        folder = Path(self.library()) / slug(gen.name if gen is not None else "model", "model")
        return folder / f"{self.spec.name}-{self.started_at}{suffix}.json"

    def _save_later(self, dset: DirectionSet, suffix: str, done, failed) -> BackgroundCall:
        """Save ``dset`` on a worker (tens of MB with fsync for dense parameter sets), then call
        ``done(path)`` or ``failed(exc)`` on the UI thread."""
        if not dset.params and self.params is not None:
            dset.params = dataclasses.asdict(self.params)
        self.saving += 1

        def finish(callback, value) -> None:
            self.saving -= 1
            callback(value)
            self._on_stopped()

        return BackgroundCall(
            save_set,
            dset,
            self._set_path(suffix),
            done=lambda path: finish(done, path),
            failed=lambda exc: finish(failed, exc),
            parent=self,
        )

    def _on_finished(self, result) -> None:
        self._flush()
        if not isinstance(result, DirectionSet):
            self._on_failed(
                AtlasError(f"method {self.spec.name} returned {type(result).__name__}, not a direction set")
            )
            return
        entry, name = self.entry, self.spec.name
        self.status.setText(f"{name}: done, {len(result)} directions; saving…")

        def publish(path: Path | None) -> None:
            if entry is not None and entry in self.ws.entries:
                self.ws.finish(entry, result)
                shown = entry
            else:
                shown = self.ws.add_set(result)
            self.bar.setRange(0, 1)
            self.bar.setValue(1)
            self.status.setText(f"{name}: done, {len(result)} directions" + (f", saved to {path}" if path else ""))
            self.setFinished.emit(shown)

        def not_saved(exc: Exception) -> None:
            show_error(self, AtlasError(f"the result could not be saved: {error_text(exc)}"))
            publish(None)

        self._save_later(result, "", publish, not_saved)

    def _on_failed(self, exc: Exception) -> None:
        self._flush()
        if self.entry is not None:
            self.ws.remove_set(self.entry)
            self.entry = None
        self.status.setText(f"{self.spec.name if self.spec else 'job'} failed: {error_text(exc)}")
        show_error(self, exc)

    def _on_cancelled(self) -> None:
        self._flush()
        entry = self.entry
        step = f"{self.last.step}/{self.last.total}" if self.last else "the start"
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        if entry is None or entry not in self.ws.entries:
            self.status.setText(f"cancelled at step {step}, before the method produced any directions: nothing to keep")
            return
        self.status.setText(f"cancelled at step {step}; saving the partial result…")

        def kept(path: Path) -> None:
            self.ws.finish(entry, None, status=f"cancelled at step {step}")
            self.status.setText(f"cancelled at step {step}; the partial result is kept in {path}")
            self.status.setToolTip(str(path))

        def lost(exc: Exception) -> None:
            self.ws.finish(entry, None, status=f"cancelled at step {step}, not saved")
            self.status.setText(f"cancelled at step {step}; the partial result could not be saved: {error_text(exc)}")
            show_error(self, AtlasError(f"the partial result could not be saved: {error_text(exc)}"))

        self._save_later(entry.dset, "-partial", kept, lost)

    def _on_stopped(self) -> None:
        if self.runner.running:
            return
        # a new run waits until this one's result is on disk (it names its files by the same fields)
        self.start_btn.setEnabled(self.ws.gen is not None and self.form is not None and not self.saving)
        self.cancel_btn.setEnabled(False)
        self.method.setEnabled(not self.saving)
