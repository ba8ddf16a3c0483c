"""Views of the analyses (engine.analysis) and a panel that runs them.

Each view is a self-contained widget with ``set_result(result)`` taking the engine's result
object: ``EffectCurvesView`` (distance vs t), ``LocalityView`` (heatmap beside an example edit),
``RealismView`` (Fréchet distance vs t), ``ScoreTable`` (ground-truth effects, purity, coverage)
and ``ReproduceView`` (residual, optimisation curve, original / parameter edit / best latent
shift). ``view_for(result)`` picks the right one.

``AnalysisPanel`` runs any analysis for a (generator, direction set, direction index) given with
``set_target``: a form built from the analysis' ``Params``, Run / Cancel, a progress bar, and the
result's view when it ends. The job runs on a superqt worker (``desktop.workers.JobRunner``,
cancelled with the worker's ``quit()``), so the UI never blocks; results can be saved as the
CLI writes them (PNG + JSON + NPZ).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.discovery import ParamsForm
from desktop.widgets import error_text, show_error
from desktop.workers import JobRunner
from engine.analysis import ANALYSES, AnalysisResult, spec_of_result
from engine.errors import AtlasError
from engine.render import compose_grid

HEATMAP = "inferno"


def _pen(i: int) -> pg.mkPen:
    return pg.mkPen(pg.intColor(i, hues=9, values=1, maxValue=220), width=2)


def _dir_name(r, i: int) -> str:
    label = r.labels[i] if i < len(r.labels) else ""
    return f"{r.indices[i]}" + (f" {label}" if label else "")


def _image_item(img: np.ndarray, **kw) -> pg.ImageItem:
    return pg.ImageItem(np.ascontiguousarray(img), axisOrder="row-major", **kw)


def _image_box(layout: pg.GraphicsLayoutWidget, row: int, col: int, title: str) -> pg.ViewBox:
    layout.addLabel(title, row=row, col=col, size="8pt")
    vb = layout.addViewBox(row=row + 1, col=col, lockAspect=True, invertY=True, enableMouse=False)
    return vb


class _ShiftCurvesView(pg.PlotWidget):
    """A plot against the shift t with one line per direction (``curves``) and a legend."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground(None)
        self.showGrid(x=True, y=True, alpha=0.3)
        self.setLabel("bottom", "shift t")
        self.addLegend(offset=(10, 10))
        self.result = None
        self.curves: list[pg.PlotDataItem] = []

    def _curve(self, r, i: int, t, y) -> pg.PlotDataItem:
        """Direction ``i``'s line through ``(t, y)``, in its colour, named in the legend."""
        pen = _pen(i)
        return self.plot(
            t, y, pen=pen, symbol="o", symbolSize=5, symbolBrush=pen.color(), name=f"direction {_dir_name(r, i)}"
        )


class EffectCurvesView(_ShiftCurvesView):
    """Distance vs shift t, one line per direction, with a band of one standard deviation over z."""

    def set_result(self, r) -> None:
        self.result = r
        self.clear()
        self.curves = []
        self.setLabel("left", r.distance_label)
        self.setTitle(f"Effect curves ({r.seeds} latents)", size="9pt")
        for i in range(len(r.indices)):
            t, m, s = r.shifts[i], r.mean[i], r.std[i]
            lo = pg.PlotDataItem(t, m - s, pen=None)
            hi = pg.PlotDataItem(t, m + s, pen=None)
            color = _pen(i).color()
            color.setAlpha(40)
            self.addItem(pg.FillBetweenItem(lo, hi, brush=color))
            self.curves.append(self._curve(r, i, t, m))


class RealismView(_ShiftCurvesView):
    """Fréchet distance (FID or regressor features) vs shift t, one line per direction."""

    def set_result(self, r) -> None:
        self.result = r
        self.clear()
        self.setLabel("left", "FID" if r.features == "inception" else "Fréchet distance")
        self.setTitle(
            f"{r.features_label}: {r.samples} edited vs {r.reference} unedited; t = 0 is the floor", size="8pt"
        )
        self.curves = [self._curve(r, i, r.shifts[i], r.distance[i]) for i in range(len(r.indices))]


class _OneDirectionView(QWidget):
    """A view of one direction of a result at a time: a direction chooser and an info line on top
    (``lay`` takes the rest); ``_show(i)`` draws direction ``i``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.lay = lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        self.choice = QComboBox(self)
        self.choice.currentIndexChanged.connect(self._show)
        top.addWidget(QLabel("direction", self))
        top.addWidget(self.choice, 1)
        lay.addLayout(top)
        self.info = QLabel("", self)
        self.info.setWordWrap(True)
        lay.addWidget(self.info)
        self.result = None

    def set_result(self, r) -> None:
        self.result = r
        self.choice.blockSignals(True)
        self.choice.clear()
        self.choice.addItems([_dir_name(r, i) for i in range(len(r.indices))])
        self.choice.blockSignals(False)
        self._show(0)

    def _show(self, i: int) -> None:
        raise NotImplementedError


class LocalityView(_OneDirectionView):
    """The heatmap of one direction (chosen in a combo box) with a colour bar, beside an example edit."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = self.lay
        self.canvas = pg.GraphicsLayoutWidget(self)
        self.canvas.setBackground(None)
        lay.addWidget(self.canvas, 1)
        self.original_box = _image_box(self.canvas, 0, 0, "original")
        self.edited_box = _image_box(self.canvas, 0, 1, "edited (range end)")
        self.heat_box = _image_box(self.canvas, 0, 2, "mean squared difference")
        self.original = _image_item(np.zeros((2, 2, 3), np.uint8))
        self.edited = _image_item(np.zeros((2, 2, 3), np.uint8))
        self.heat = _image_item(np.zeros((2, 2)))
        self.heat.setColorMap(pg.colormap.get(HEATMAP))
        for vb, item in (
            (self.original_box, self.original),
            (self.edited_box, self.edited),
            (self.heat_box, self.heat),
        ):
            vb.addItem(item)
        self.colorbar = pg.ColorBarItem(colorMap=pg.colormap.get(HEATMAP), interactive=False, width=12)
        self.colorbar.setImageItem(self.heat)
        self.canvas.addItem(self.colorbar, row=1, col=3)

    def heatmap(self) -> np.ndarray:
        """The raw map shown now (``[H, W]``)."""
        return self.heat.image

    def _show(self, i: int) -> None:
        r = self.result
        if r is None or i < 0:
            return
        heat = r.heatmap[i].astype(np.float32)
        self.original.setImage(np.ascontiguousarray(r.example[i, 0]))
        self.edited.setImage(np.ascontiguousarray(r.example[i, 1]))
        self.heat.setImage(heat)
        top = float(heat.max()) or 1.0
        self.heat.setLevels((0.0, top))
        self.colorbar.setLevels((0.0, top))
        lo, hi = r.shift_range[i]
        self.info.setText(
            f"{r.samples} latents x {r.shifts_per_sample} shifts t ~ U[{lo:.3g}, {hi:.3g}]; "
            f"mean {heat.mean():.4g}, max {heat.max():.4g} per pixel; the hottest 10% of pixels "
            f"hold {100 * r.concentration[i]:.0f}% of the difference"
        )
        for vb in (self.original_box, self.edited_box, self.heat_box):
            vb.autoRange(padding=0)


class ScoreTable(QWidget):
    """Ground-truth score: one row per direction (main factor, purity, clean, effect per factor)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.summary = QLabel("", self)
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)
        self.table = QTableWidget(self)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSortingEnabled(False)
        lay.addWidget(self.table, 1)
        self.result = None

    def set_result(self, r) -> None:
        self.result = r
        names = list(r.factor_names)
        heads = ["direction", "main factor", "purity", "clean", *names]
        self.table.clear()
        self.table.setColumnCount(len(heads))
        self.table.setHorizontalHeaderLabels(heads)
        self.table.setRowCount(len(r.indices))
        top = float(r.effect.max()) or 1.0
        for i in range(len(r.indices)):
            cells = [
                _dir_name(r, i),
                names[int(r.main_factor[i])],
                f"{r.purity[i]:.2f}",
                "yes" if r.clean[i] else "no",
                *(f"{v:.2f}" for v in r.effect[i]),
            ]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c >= 4:
                    shade = int(255 - 150 * min(1.0, float(r.effect[i, c - 4]) / top))
                    item.setBackground(QBrush(QColor(shade, 255, shade)))
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if c == 3 and r.clean[i]:
                    item.setBackground(QBrush(QColor(200, 240, 200)))
                self.table.setItem(i, c, item)
        self.table.resizeColumnsToContents()
        covered = ", ".join(r.covered) or "none"
        self.summary.setText(
            f"{r.set_title} ({r.method}): coverage {r.coverage}/{len(names)} ({covered}); "
            f"{int(r.clean.sum())} of {len(r.indices)} directions clean (purity >= "
            f"{r.purity_threshold:g}, effect >= {r.min_effect:g} std); {r.seeds} seeds"
        )


class ReproduceView(_OneDirectionView):
    """Residual of the best latent shift, its optimisation curve and example images."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = self.lay
        self.plot = pg.PlotWidget(self)
        self.plot.setBackground(None)
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.plot.setLabel("bottom", "Adam step")
        self.plot.setLabel("left", "relative loss")
        lay.addWidget(self.plot, 1)
        self.images = pg.GraphicsLayoutWidget(self)
        self.images.setBackground(None)
        self.images_box = _image_box(self.images, 0, 0, "rows: original, parameter edit, best latent shift")
        self.grid = _image_item(np.zeros((2, 2, 3), np.uint8))
        self.images_box.addItem(self.grid)
        lay.addWidget(self.images, 1)

    def _show(self, i: int) -> None:
        r = self.result
        if r is None or i < 0:
            return
        self.plot.clear()
        curve = r.loss_curve[i]
        self.plot.plot(np.arange(1, len(curve) + 1), curve, pen=_pen(0))
        self.plot.addLine(y=1.0, pen=pg.mkPen("gray", style=Qt.PenStyle.DashLine))
        self.plot.addLine(y=float(r.residual[i]), pen=pg.mkPen((200, 60, 60)))
        self.info.setText(
            f"direction {_dir_name(r, i)}, t = {r.t[i]:+.3g}, h in {r.space}: relative residual "
            f"<b>{r.residual[i]:.3f}</b> on held-out latents (0 = a latent shift reproduces the "
            f"edit, 1 = none does better than nothing); |h| = {r.h_norm[i]:.3g} code std"
        )
        self.grid.setImage(compose_grid(r.examples[i]))
        self.images_box.autoRange(padding=0)


class FigureView(QWidget):
    """Any analysis result without a dedicated view: its PNG figure (the result's own ``draw``)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        self.label = QLabel(self)
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        lay.addWidget(self.label)
        self.lines = QLabel(self)
        self.lines.setWordWrap(True)
        lay.addWidget(self.lines)

    def set_result(self, r) -> None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            png = r.draw(Path(tmp) / "figure.png")
            self.label.setPixmap(QPixmap(str(png)))
        self.lines.setText("\n".join(r.report_lines()))


VIEWS = {
    "curves": EffectCurvesView,
    "locality": LocalityView,
    "realism": RealismView,
    "reproduce": ReproduceView,
    "score": ScoreTable,
}


def view_for(result: AnalysisResult, parent: QWidget | None = None) -> QWidget:
    """A new view showing ``result`` (its own view, or its PNG figure for analyses without one)."""
    view = VIEWS.get(result.kind, FigureView)(parent)
    view.set_result(result)
    return view


class AnalysisPanel(QWidget):
    """Run an analysis on (generator, direction set, direction index) and show its result.

    ``set_target(gen, dset, k)`` chooses what to analyse; ``run()`` / ``cancel()`` drive the job
    (also the Run and Cancel buttons). ``finished(result)`` is emitted with each result.
    """

    finished = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.gen = self.dset = None
        self.index = 0
        self.result: AnalysisResult | None = None
        self.runner = JobRunner(self)
        self.runner.progress.connect(self._progress)
        self.runner.finished.connect(self._finished)
        self.runner.failed.connect(self._failed)
        self.runner.cancelled.connect(lambda: self.status.setText("cancelled"))
        self.runner.stopped.connect(self._stopped)

        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.kind = QComboBox(self)
        for name, spec in ANALYSES.items():
            self.kind.addItem(f"{name}: {spec.summary}", name)
        self.kind.currentIndexChanged.connect(self._kind_changed)
        top.addWidget(self.kind, 1)
        lay.addLayout(top)
        self.target_label = QLabel("no direction selected", self)
        self.target_label.setWordWrap(True)
        lay.addWidget(self.target_label)
        self.form_area = QScrollArea(self)
        self.form_area.setWidgetResizable(True)
        self.form_area.setMaximumHeight(220)
        lay.addWidget(self.form_area)
        buttons = QHBoxLayout()
        self.run_btn = QPushButton("Run", self)
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn = QPushButton("Cancel", self)
        self.cancel_btn.clicked.connect(self.cancel)
        self.cancel_btn.setEnabled(False)
        self.save_btn = QPushButton("Save result…", self)
        self.save_btn.clicked.connect(self.save_dialog)
        self.save_btn.setEnabled(False)
        for b in (self.run_btn, self.cancel_btn, self.save_btn):
            buttons.addWidget(b)
        lay.addLayout(buttons)
        self.progress = QProgressBar(self)
        self.progress.setTextVisible(True)
        lay.addWidget(self.progress)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.stack = QStackedWidget(self)
        self.views = {kind: cls(self.stack) for kind, cls in VIEWS.items()}
        for v in self.views.values():
            self.stack.addWidget(v)
        lay.addWidget(self.stack, 1)
        self.form: ParamsForm | None = None
        self._kind_changed()

    # ---- target and parameters ---------------------------------------------------------------
    @property
    def analysis(self) -> str:
        return self.kind.currentData()

    def set_analysis(self, name: str) -> None:
        self.kind.setCurrentIndex(self.kind.findData(name))

    def set_target(self, gen, dset, index: int) -> None:
        """Analyse direction ``index`` of ``dset`` on ``gen`` (any of them may be None: nothing to run)."""
        self.gen, self.dset, self.index = gen, dset, int(index) if index is not None else 0
        if gen is None or dset is None or not 0 <= self.index < len(dset):
            self.target_label.setText("no direction selected")
        else:
            d = dset.directions[self.index]
            name = f" ({d.label})" if d.label else ""
            self.target_label.setText(f"{dset.title}: direction {self.index}{name}, {d.describe()}, on {gen.name}")
        self._update_buttons()

    def _kind_changed(self) -> None:
        spec = ANALYSES[self.analysis]
        self.form = ParamsForm(spec, self.gen, self)
        self.form_area.setWidget(self.form)
        self._update_buttons()

    def set_param(self, name: str, value) -> None:
        """Set one field of the form (scripting and tests)."""
        self.form.set_value(name, value)

    def _update_buttons(self) -> None:
        running = self.runner.running
        ok = self.gen is not None and self.dset is not None and 0 <= self.index < len(self.dset)
        self.run_btn.setEnabled(ok and not running)
        self.cancel_btn.setEnabled(running)
        self.kind.setEnabled(not running)

    # ---- running ---------------------------------------------------------------------------
    def run(self) -> None:
        if self.runner.running or self.gen is None or self.dset is None:
            return
        spec = ANALYSES[self.analysis]
        try:
            params = self.form.make_params()
            if spec.param_only and self.dset.directions[self.index].kind != "param":
                raise AtlasError(f"'{spec.name}' needs a parameter direction; direction {self.index} is latent")
        except AtlasError as exc:
            show_error(self, exc)
            return
        gen, dset, idx = self.gen, self.dset, [self.index]
        self.progress.setRange(0, 0)
        note = ""
        if spec.needs_factors and not str(gen.name).startswith("procedural"):
            note = " (the factor regressor knows only the procedural faces: scores on this model mean little)"
        self.status.setText(f"running {spec.name}…{note}")
        self.runner.start(lambda: spec.run(gen, dset, idx, params))
        self._update_buttons()

    def cancel(self) -> None:
        self.runner.cancel()

    def _progress(self, records) -> None:
        rec = records[-1]
        if rec.total > 0:
            self.progress.setRange(0, rec.total)
            self.progress.setValue(rec.step)
        text = rec.message or rec.stage
        if text:
            self.status.setText(text)

    def _finished(self, result) -> None:
        self.show_result(result)
        self.status.setText("done")
        self.finished.emit(result)

    def _failed(self, exc) -> None:
        self.status.setText(f"failed: {error_text(exc)}")
        show_error(self, exc)

    def _stopped(self) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if self.result is not None else 0)
        self._update_buttons()

    def show_result(self, result: AnalysisResult) -> None:
        """Show any result (also a saved one, ``engine.analysis.load_result``)."""
        self.result = result
        if not self.runner.running:
            self.set_analysis(spec_of_result(result).name)
        if result.kind not in self.views:
            self.views[result.kind] = FigureView(self.stack)
            self.stack.addWidget(self.views[result.kind])
        view = self.views[result.kind]
        view.set_result(result)
        self.stack.setCurrentWidget(view)
        self.save_btn.setEnabled(True)

    def current_view(self) -> QWidget:
        return self.stack.currentWidget()

    def save_result(self, path: str | Path) -> Path:
        """Write the result as the CLI does: ``STEM.png`` + ``STEM.json`` + ``STEM.npz``."""
        stem = Path(path).with_suffix("")
        self.result.save(stem)
        return self.result.plot(stem.with_suffix(".png"))

    def save_dialog(self) -> None:
        if self.result is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save analysis result", f"{self.result.kind}.png", "PNG + JSON + NPZ (*.png)"
        )
        if path:
            try:
                self.save_result(path)
            except (OSError, AtlasError) as exc:
                show_error(self, exc)
