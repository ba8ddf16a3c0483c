"""The live preview: seeds, truncation, class, space and layer range, one slider per active direction.

Rendering runs on a worker through ``LatestWins``: dragging a slider submits a request at most
every ``THROTTLE_MS`` (superqt ``qthrottled``); a request made while one renders replaces any
waiting one, and results older than the image on screen are dropped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QCompleter,
    QDoubleSpinBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QElidingLabel, QLabeledDoubleSlider, QLabeledRangeSlider
from superqt.utils import qthrottled, signals_blocked

from desktop.input_transform import TransformControls
from desktop.rendering import PreviewRequest, PreviewResult, render_preview
from desktop.widgets import Frame, ImageCanvas, prepare_frame, show_error
from desktop.workers import LatestWins
from desktop.workspace import SetEntry, Workspace
from engine.errors import AtlasError, BadValueError
from engine.models.base import INPUT_TRANSFORM
from engine.seeds import applicable, not_applicable_reason, seed_label
from engine.selection import parse_seeds

THROTTLE_MS = 25
VISIBLE_ROWS = 4  # slider rows the Edits area shows at once (more scroll)
MAX_SEEDS = 16


def parse_seed_text(text: str, images=None) -> tuple:
    """``"5"``, ``"0,3,9"``, ``"0-3"``, ``"@photo,2"`` -> the first ``MAX_SEEDS`` seeds.

    ``engine.selection.parse_seeds`` (the command line's parser) does the work: ``@name`` is a
    projected image, looked up in ``images`` (``{name: Latent}``); a bad token raises
    ``ValueError`` (a ``BadValueError`` with the reason, or an unknown name).
    """
    try:
        return tuple(parse_seeds(text, limit=MAX_SEEDS, images=images or {}, clip=True, what="seeds"))
    except BadValueError as exc:
        raise ValueError(str(exc)) from None


def class_label(index: int, name: str) -> str:
    """``"207  golden retriever"`` (just ``"7"`` when the name is the index)."""
    return str(index) if name == str(index) else f"{index}  {name}"


class ClassPicker(QComboBox):
    """The class of a class-conditional model: a searchable list (type a name or an index).

    Typing filters the classes whose label contains the text (case-insensitive); Enter or a
    click on a match picks it. ``classPicked(int)`` is emitted for the user's choices only.
    """

    classPicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setEditable(True)
        self.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.setObjectName("classPicker")
        self.setMinimumContentsLength(22)
        self.setMaxVisibleItems(20)
        self.setToolTip("class of the seeds (class-conditional models): type a class name or index, Enter to pick")
        self.lineEdit().setPlaceholderText("class name or index")
        self.items = QStandardItemModel(self)
        self.setModel(self.items)
        self.filter = QSortFilterProxyModel(self)
        self.filter.setSourceModel(self.items)
        self.filter.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.search = QCompleter(self)
        self.search.setModel(self.items)
        self.search.setFilterMode(Qt.MatchFlag.MatchContains)
        self.search.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.search.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        self.search.setMaxVisibleItems(15)
        self.setCompleter(self.search)
        self.search.activated[str].connect(self._pick_text)
        self.activated.connect(self._pick_index)
        self.lineEdit().returnPressed.connect(lambda: self._pick_text(self.lineEdit().text()))
        self._names: list[str] = []

    def set_classes(self, names: list[str]) -> None:
        """One entry per class (``names[i]`` is class i's name)."""
        self._names = list(names)
        with signals_blocked(self):
            self.items.clear()
            for i, name in enumerate(names):
                item = QStandardItem(class_label(i, name))
                item.setData(i, Qt.ItemDataRole.UserRole)
                self.items.appendRow(item)

    def set_class(self, index: int | None) -> None:
        """Show ``index`` (no signal)."""
        with signals_blocked(self):
            self.setCurrentIndex(-1 if index is None else int(index))

    def matches(self, text: str) -> list[int]:
        """The classes whose label contains ``text`` (what the search popup lists), in order."""
        self.filter.setFilterFixedString(text.strip())
        return [int(self.filter.index(r, 0).data(Qt.ItemDataRole.UserRole)) for r in range(self.filter.rowCount())]

    def resolve(self, text: str) -> int | None:
        """The class ``text`` names: an index, an exact label or name, else the only or first match."""
        t = text.strip()
        if not t:
            return None
        if t.isdigit():
            return int(t) if int(t) < len(self._names) else None
        low = t.lower()
        for i, name in enumerate(self._names):
            if low in (name.lower(), class_label(i, name).lower()):
                return i
        hits = self.matches(t)
        return hits[0] if hits else None

    def _pick_text(self, text: str) -> None:
        i = self.resolve(text)
        if i is None:
            self.lineEdit().selectAll()  # nothing matches: keep the text for correction
            return
        self.set_class(i)
        self.classPicked.emit(i)

    def _pick_index(self, row: int) -> None:
        if 0 <= row < len(self._names):
            self.classPicked.emit(row)


@dataclass(frozen=True)
class PreviewFrames:
    """A rendered preview with its after / before images ready for the canvas (``Frame``)."""

    result: PreviewResult
    after: Frame
    before: Frame


def render_preview_frames(gen, req: PreviewRequest, view: tuple | None = None) -> PreviewFrames:
    """``render_preview`` plus the canvas's work on its images, on the same worker thread: the
    QImage conversion and the scaling for the canvas's ``view`` (``ImageCanvas.view()``), so that
    the UI thread only copies the finished pixels to the screen."""
    result = render_preview(gen, req)
    after = prepare_frame(result.after, view)
    before = after if result.before is result.after else prepare_frame(result.before, view)
    return PreviewFrames(result, after, before)


class SliderRow(QFrame):
    """One active direction on two lines: pin, colour, name and set; the shift slider across the
    whole width with its value, and a Reset button (this shift to 0)."""

    def __init__(self, ws: Workspace, entry: SetEntry, k: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ws, self.entry, self.k = ws, entry, k
        self.setObjectName("sliderRow")
        d = entry.direction(k)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(2)
        head = QHBoxLayout()
        head.setSpacing(6)
        self.pin = QToolButton(self)
        self.pin.setCheckable(True)
        self.pin.setChecked(ws.is_pinned(entry, k))
        self.pin.setText("Pin")
        self.pin.setToolTip("pin: keep this slider when another direction is selected (several pinned sliders combine)")
        self.pin.setObjectName("pinButton")
        self.pin.toggled.connect(lambda on: ws.pin(entry, k, on))
        head.addWidget(self.pin)
        self.swatch = QLabel(self)
        self.swatch.setFixedSize(6, 18)
        head.addWidget(self.swatch)
        self.label = QElidingLabel(self)  # elides only past the panel's whole width
        self.label.setObjectName("sliderName")
        head.addWidget(self.label, 1)
        lay.addLayout(head)
        line = QHBoxLayout()
        line.setSpacing(6)
        self.slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal, self)
        lo, hi = d.range
        span = max(abs(lo), abs(hi)) or 1.0
        self.slider.setRange(-span, span)
        self.slider.setDecimals(2 if span < 20 else 1)
        self.slider.setSingleStep(span / 100)
        self.slider.setValue(ws.shift(entry, k))
        self.slider.setObjectName("shiftSlider")
        self.slider.valueChanged.connect(self._moved)
        line.addWidget(self.slider, 1)
        self.zero = QToolButton(self)
        self.zero.setText("Reset")
        self.zero.setObjectName("resetShift")
        self.zero.setToolTip("set this shift to 0")
        self.zero.clicked.connect(lambda: self.slider.setValue(0.0))
        line.addWidget(self.zero)
        lay.addLayout(line)
        self.refresh()

    @qthrottled(timeout=THROTTLE_MS, leading=True)
    def _moved(self, value: float) -> None:
        self.ws.set_shift(self.entry, self.k, float(value))

    def refresh(self) -> None:
        d = self.entry.direction(self.k)
        name = d.annotation.name or "unnamed"
        self.label.setText(f"#{self.k}  {name}  ·  {self.entry.title}")
        self.label.setToolTip(f"{self.entry.title}, direction {self.k}: {name} ({d.describe()})")
        self.swatch.setStyleSheet(f"background: {d.annotation.color or 'transparent'}; border-radius: 2px;")
        with signals_blocked(self.slider):
            self.slider.setValue(self.ws.shift(self.entry, self.k))
        with signals_blocked(self.pin):
            self.pin.setChecked(self.ws.is_pinned(self.entry, self.k))

    def sync_value(self) -> None:
        """Show the workspace's shift unless the user is dragging this slider right now."""
        t = self.ws.shift(self.entry, self.k)
        if not self.slider._slider.isSliderDown() and abs(self.slider.value() - t) > 1e-9:
            with signals_blocked(self.slider):
                self.slider.setValue(t)

    def set_applicable(self, ok: bool, why: str = "") -> None:
        self.slider.setEnabled(ok)
        self.setToolTip("" if ok else why)


class PreviewPanel(QWidget):
    """Canvas and controls. ``rendered`` is emitted with each image shown (for tests/status)."""

    rendered = Signal(object)  # PreviewResult

    def __init__(self, ws: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ws = ws
        self.renderer = LatestWins(render_preview_frames, self)
        self.renderer.result.connect(self._on_result)
        self.renderer.failed.connect(self._on_failed)
        self.result: PreviewResult | None = None
        self.frames: PreviewFrames | None = None
        self._rows: list[SliderRow] = []
        self._last_error = ""

        root = QVBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)
        root.setSpacing(6)

        # --- seeds, truncation, space
        top = QHBoxLayout()
        top.setSpacing(6)
        top.addWidget(QLabel("Seed"))
        self.seeds = QLineEdit("0", self)
        self.seeds.setToolTip(
            "one seed, or several: 0,3,9 or 0-3 (at most 16); @name is a projected image (Preview ▸ Open image…)"
        )
        self.seeds.setMaximumWidth(110)
        self.seeds.setObjectName("seeds")
        self.seeds.editingFinished.connect(self.request_render)
        top.addWidget(self.seeds)
        for text, step, tip in (("◀", -1, "previous seed ([)"), ("▶", 1, "next seed (])")):
            b = QToolButton(self)
            b.setText(text)
            b.setToolTip(tip)
            b.clicked.connect(lambda _=False, s=step: self.step_seed(s))
            top.addWidget(b)
        self.random_btn = QPushButton("Random", self)
        self.random_btn.setToolTip("random seed(s) (Ctrl+R)")
        self.random_btn.clicked.connect(self.random_seed)
        top.addWidget(self.random_btn)
        top.addSpacing(12)
        self.psi_label = QLabel("ψ")
        self.psi_label.setToolTip("truncation psi: 1 = no truncation; smaller = closer to the average image")
        top.addWidget(self.psi_label)
        self.psi = QDoubleSpinBox(self)
        self.psi.setRange(0.0, 2.0)
        self.psi.setSingleStep(0.05)
        self.psi.setDecimals(2)
        self.psi.setValue(1.0)
        self.psi.setToolTip(self.psi_label.toolTip())
        self.psi.valueChanged.connect(self.request_render)
        top.addWidget(self.psi)
        top.addSpacing(12)
        self.class_label = QLabel("Class")
        top.addWidget(self.class_label)
        self.class_picker = ClassPicker(self)
        self.class_picker.classPicked.connect(self._class_picked)
        top.addWidget(self.class_picker)
        top.addSpacing(12)
        self.space_label = QLabel("Space")
        top.addWidget(self.space_label)
        self.space = QComboBox(self)
        self.space.setToolTip(
            "where the seeds' codes are held and edited: z (input), w (after mapping), "
            "w+ (one w per layer; edits only on the layer range)"
        )
        self.space.currentTextChanged.connect(self._space_changed)
        top.addWidget(self.space)
        top.addStretch(1)
        root.addLayout(top)

        # the w+ layer range gets a row of its own: showing it must not widen the preview (the
        # main window would take the width from every dock, and save that narrower layout)
        self.layers_row = QWidget(self)
        row = QHBoxLayout(self.layers_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(6)
        self.layers_label = QLabel("Layers", self.layers_row)
        row.addWidget(self.layers_label)
        self.layers = QLabeledRangeSlider(Qt.Orientation.Horizontal, self.layers_row)
        self.layers.setToolTip("w+ layers [start, stop) that w / w+ edits act on")
        self.layers_label.setToolTip(self.layers.toolTip())
        self.layers.setMinimumWidth(160)
        self.layers.valuesChanged.connect(self._layers_changed)
        row.addWidget(self.layers, 1)
        self.layers_row.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.layers_row.setVisible(False)
        root.addWidget(self.layers_row)
        # --- input transform (models that have one: StyleGAN3), as NVIDIA's visualizer offers it
        self.transform = TransformControls(self)
        self.transform.changed.connect(self.request_render)
        root.addWidget(self.transform)

        # --- the image
        self.canvas = ImageCanvas(self)
        self.canvas.placeholder = "Loading model…"
        root.addWidget(self.canvas, 1)

        # --- view toggles
        bar = QHBoxLayout()
        self.before = QPushButton("Before", self)
        self.before.setCheckable(True)
        self.before.setToolTip("show the image without edits (B)")
        self.before.setObjectName("beforeButton")
        self.before.toggled.connect(self._show)
        bar.addWidget(self.before)
        self.reset_btn = QPushButton("Reset all", self)
        self.reset_btn.setToolTip("set every shift to 0 (Ctrl+0)")
        self.reset_btn.clicked.connect(self.ws.reset_shifts)
        bar.addWidget(self.reset_btn)
        self.smooth = QCheckBox("Smooth scaling", self)
        self.smooth.setToolTip("smooth (bilinear) or crisp (nearest, whole-pixel) upscaling of the image")
        self.smooth.toggled.connect(self.canvas.set_smooth)
        bar.addWidget(self.smooth)
        bar.addStretch(1)
        self.status = QLabel("", self)
        self.status.setObjectName("previewStatus")
        bar.addWidget(self.status)
        root.addLayout(bar)

        # --- sliders
        head = QHBoxLayout()
        title = QLabel("Edits")
        title.setStyleSheet("font-weight: 600;")
        head.addWidget(title)
        self.hint = QElidingLabel("select a direction in the browser or the grid; pin it to combine several")
        self.hint.setStyleSheet("color: palette(mid);")
        head.addWidget(self.hint, 1)
        root.addLayout(head)
        self.rows_box = QWidget(self)
        self.rows_layout = QVBoxLayout(self.rows_box)
        self.rows_layout.setContentsMargins(0, 0, 0, 0)
        self.rows_layout.setSpacing(0)
        self.rows_layout.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.rows_box)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        scroll.setFixedHeight(0)
        self.rows_scroll = scroll
        root.addWidget(scroll)

        QShortcut(
            QKeySequence("B"), self, activated=self.before.toggle, context=Qt.ShortcutContext.WidgetWithChildrenShortcut
        )
        QShortcut(
            QKeySequence("["),
            self,
            activated=lambda: self.step_seed(-1),
            context=Qt.ShortcutContext.WidgetWithChildrenShortcut,
        )
        QShortcut(
            QKeySequence("]"),
            self,
            activated=lambda: self.step_seed(1),
            context=Qt.ShortcutContext.WidgetWithChildrenShortcut,
        )

        ws.modelChanged.connect(self._model_changed)
        ws.activeChanged.connect(self._active_changed)
        ws.shiftsChanged.connect(self._shifts_changed)
        ws.annotationChanged.connect(self._annotation_changed)
        ws.classChanged.connect(self._class_changed)
        self._model_changed()

    # ---- model and controls --------------------------------------------------------------------
    def _model_changed(self) -> None:
        gen = self.ws.gen
        spaces = gen.spaces if gen is not None else ("z",)
        with signals_blocked(self.space):
            current = self.space.currentText()
            self.space.clear()
            self.space.addItems(list(spaces))
            if current in spaces:
                self.space.setCurrentText(current)
        many = len(spaces) > 1
        self.space.setVisible(many)
        self.space_label.setVisible(many)
        trunc = gen is not None and gen.has_truncation
        self.psi.setVisible(trunc)
        self.psi_label.setVisible(trunc)
        if gen is not None:
            lo, hi = gen.truncation_range
            with signals_blocked(self.psi):
                self.psi.setRange(lo, hi)
        conditional = gen is not None and gen.num_classes > 0
        self.class_picker.setVisible(conditional)
        self.class_label.setVisible(conditional)
        if conditional:
            self.class_picker.set_classes(gen.class_names())
            self.class_picker.set_class(self.ws.class_index)
        self.transform.setVisible(gen is not None and gen.supports(INPUT_TRANSFORM))
        if gen is not None and gen.num_ws:
            with signals_blocked(self.layers):
                self.layers.setRange(0, gen.num_ws)
                self.layers.setValue((0, gen.num_ws))
        self._space_changed(self.space.currentText())
        self._active_changed()

    def _class_picked(self, index: int) -> None:
        try:
            self.ws.set_class(index)
        except AtlasError as exc:
            show_error(self, exc)

    def _class_changed(self) -> None:
        self.class_picker.set_class(self.ws.class_index)
        self.request_render()

    def _space_changed(self, _text: str) -> None:
        self.layers_row.setVisible(self.space.currentText() == "w+")
        self._update_applicability()
        self.request_render()

    def _layers_changed(self, _values) -> None:
        self.request_render()

    def layer_range(self) -> tuple[int, int] | None:
        if self.space.currentText() != "w+":
            return None
        lo, hi = self.layers.value()
        return int(lo), int(hi)

    def seed_values(self) -> tuple:
        """The seeds shown: ints and projected images (``engine.latents.Latent``)."""
        try:
            return parse_seed_text(self.seeds.text(), self.ws.images)
        except ValueError:
            return (0,)

    def set_seeds(self, seeds) -> None:
        self.seeds.setText(",".join(seed_label(s) for s in seeds))
        self.request_render()

    def show_image_seed(self, token: str) -> None:
        """Show the projected image ``@token`` (in the workspace) alone, in a space that holds it."""
        lat = self.ws.images[token]
        if lat.space != "z" and self.space.currentText() == "z":
            self.space.setCurrentText(lat.space)
        self.set_seeds([lat])

    def step_seed(self, step: int) -> None:
        self.set_seeds([max(0, s + step) if isinstance(s, int) else s for s in self.seed_values()])

    def random_seed(self) -> None:
        seeds = self.seed_values()
        fresh = iter(random.sample(range(100000), len(seeds)))
        self.set_seeds([next(fresh) if isinstance(s, int) else s for s in seeds])

    # ---- sliders -------------------------------------------------------------------------------
    def _active_changed(self) -> None:
        active = self.ws.active()
        have = [(r.entry, r.k) for r in self._rows]
        if [(e.uid, k) for e, k in active] != [(e.uid, k) for e, k in have]:
            for r in self._rows:
                r.setParent(None)
                r.deleteLater()
            self._rows = []
            for i, (e, k) in enumerate(active):
                row = SliderRow(self.ws, e, k, self.rows_box)
                self.rows_layout.insertWidget(i, row)
                self._rows.append(row)
            self._fit_rows()
            self.hint.setVisible(not self.ws.pinned)
            self._update_applicability()
        else:
            for r in self._rows:
                r.refresh()
        self.request_render()

    def _fit_rows(self) -> None:
        """Make the Edits area exactly as tall as its first ``VISIBLE_ROWS`` rows: every row shown
        is whole (more rows scroll), and the image keeps the rest of the height."""
        shown = self._rows[:VISIBLE_ROWS]
        height = sum(r.sizeHint().height() for r in shown) + self.rows_layout.spacing() * max(0, len(shown) - 1)
        self.rows_scroll.setFixedHeight(height)

    def _shifts_changed(self) -> None:
        for r in self._rows:
            r.sync_value()
        self.request_render()

    def _annotation_changed(self, entry, k) -> None:
        for r in self._rows:
            if r.entry is entry and r.k == k:
                r.refresh()

    def _update_applicability(self) -> None:
        space = self.space.currentText() or "z"
        for r in self._rows:
            d = r.entry.direction(r.k)
            ok = applicable(d, space, self.ws.gen)
            r.set_applicable(ok, "" if ok else not_applicable_reason(d))

    def sliders(self) -> list[QLabeledDoubleSlider]:
        return [r.slider for r in self._rows]

    # ---- rendering -----------------------------------------------------------------------------
    def current_request(self) -> PreviewRequest:
        shifts = []
        for e, k in self.ws.active():
            t = self.ws.shift(e, k)
            if t:
                shifts.append((e.dset, k, t))
        return PreviewRequest(
            seeds=self.seed_values(),
            psi=float(self.psi.value()) if self.psi.isVisible() else 1.0,
            space=self.space.currentText() or "z",
            layers=self.layer_range(),
            shifts=tuple(shifts),
            class_index=self.ws.class_index if self.ws.gen is not None and self.ws.gen.num_classes else None,
            transform=self.transform.value() if not self.transform.isHidden() else None,
        )

    def request_render(self, *_args) -> None:
        if self.ws.gen is None:
            return
        self.renderer.submit(self.ws.gen, self.current_request(), self.canvas.view())

    def _on_result(self, _stamp: int, frames: PreviewFrames) -> None:
        result = frames.result
        self.frames, self.result = frames, result
        self._last_error = ""
        self._show()
        req = self.current_request()
        seeds = ", ".join(map(seed_label, req.seeds))
        n_edits = len(req.shifts)
        extra = f" · ψ {req.psi:.2f}" if self.psi.isVisible() else ""
        if req.class_index is not None:
            names = self.class_picker._names
            name = names[req.class_index] if req.class_index < len(names) else str(req.class_index)
            extra += f" · class {class_label(req.class_index, name)}"
        if req.transform is not None and self.transform.describe():
            extra += " · " + self.transform.describe()
        self.canvas.caption = f"seed {seeds}{extra} · {n_edits} edit{'s' if n_edits != 1 else ''}" + (
            " · BEFORE" if self.before.isChecked() else ""
        )
        h, w = result.size
        self.status.setText(f"{w}×{h} px · {result.seconds * 1000:.0f} ms")
        self.rendered.emit(result)

    def _on_failed(self, _stamp: int, exc: Exception) -> None:
        msg = str(exc)
        self.status.setText("render failed")
        if msg != self._last_error:  # one dialog per distinct problem, not one per slider step
            self._last_error = msg
            show_error(self, exc if isinstance(exc, Exception) else AtlasError(msg))

    def _show(self, *_args) -> None:
        if self.frames is None:
            return
        self.canvas.set_frame(self.frames.before if self.before.isChecked() else self.frames.after)
        if self.canvas.caption:
            base = self.canvas.caption.replace(" · BEFORE", "")
            self.canvas.caption = base + (" · BEFORE" if self.before.isChecked() else "")

    def image(self) -> np.ndarray | None:
        return self.canvas.array()

    def focus_sliders(self) -> None:
        if self._rows:
            self._rows[-1].slider.setFocus()
