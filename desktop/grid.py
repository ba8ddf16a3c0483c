"""The grid inspector: K directions x S shifts x M seeds as thumbnails, keyboard driven.

One table row per direction; each shift column holds the M seeds stacked vertically. The table
is virtual: only rows on screen (plus one page ahead) are rendered, a page of ``PAGE`` rows per
worker job, newest scroll position first, and at most ``CACHE_ROWS`` rows of thumbnails are
kept, so a set of 200 directions costs what the visible part costs.

Keys: Up/Down next/previous direction, Left/Right shift, 1-5 rate (0 clears), I / U / X mark
interpretable yes / unsure / no, N name, Enter open in the preview, P pin.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QEvent,
    QItemSelectionModel,
    QModelIndex,
    QRect,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QSlider,
    QSpinBox,
    QStyle,
    QStyledItemDelegate,
    QTableView,
    QVBoxLayout,
    QWidget,
)
from superqt import QElidingLabel

from desktop.preview import parse_seed_text
from desktop.rendering import GridRequest, render_grid_rows
from desktop.widgets import INTERP_COLOR, INTERP_MARK, on_screen, qimage, show_error, stars
from desktop.workers import LatestWins
from desktop.workspace import SetEntry, Workspace
from engine.seeds import seed_label

PAGE = 8
CACHE_ROWS = 160
LABEL_WIDTH = 170
GAP = 2
PINNED_TAG = "pinned"
KEYS_HINT = "↑/↓ direction · ←/→ shift · 1–5 rate · I/U/X yes/unsure/no · N name · P pin · Enter preview"


class GridModel(QAbstractTableModel):
    """Rows = directions of one set; column 0 the label, columns 1..S the shifts."""

    rowsRendered = Signal(int)  # number of rows with thumbnails

    def __init__(self, ws: Workspace, parent=None) -> None:
        super().__init__(parent)
        self.ws = ws
        self.entry: SetEntry | None = None
        self.T = 0.0  # 0: each direction's own range
        self.steps = 7
        self.seeds: tuple = (0, 1)  # ints and projected images (engine.seeds.Seed)
        self.psi = 1.0
        self.thumb = 80
        self.generation = 0
        self.cache: OrderedDict[int, list[QImage]] = OrderedDict()
        self.inflight: set[int] = set()
        self.wanted: set[int] = set()
        self.renderer = LatestWins(render_grid_rows, self)
        self.renderer.result.connect(self._on_rows)
        self.renderer.failed.connect(self._on_failed)
        self.renderer.idle.connect(self._pump)
        self.visible_rows = lambda: range(0, 0)
        self._pump_timer = QTimer(self)
        self._pump_timer.setSingleShot(True)
        self._pump_timer.setInterval(0)
        self._pump_timer.timeout.connect(self._pump)
        self.last_error = ""
        self.gen_id = 0

    # ---- configuration -------------------------------------------------------------------------
    def configure(self, **kw) -> None:
        """Change entry / T / steps / seeds / psi / thumb; drops the thumbnails and re-renders."""
        self.beginResetModel()
        for key, value in kw.items():
            setattr(self, key, value)
        self.generation += 1
        self.cache.clear()
        self.inflight.clear()
        self.renderer.discard()
        self.endResetModel()
        self._pump_timer.start()

    def shifts_for(self, row: int) -> tuple[float, ...]:
        if self.T > 0:
            lo, hi = -self.T, self.T
        else:
            lo, hi = self.entry.direction(row).range
        return tuple(float(x) for x in np.linspace(lo, hi, self.steps))

    def uniform_shifts(self) -> tuple[float, ...] | None:
        if self.entry is None or not len(self.entry.dset):
            return None
        if self.T > 0:
            return self.shifts_for(0)
        ranges = {d.range for d in self.entry.dset.directions}
        return self.shifts_for(0) if len(ranges) == 1 else None

    # ---- Qt model ------------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() or self.entry is None else len(self.entry.dset)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else 1 + self.steps

    def headerData(self, section: int, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if role == Qt.ItemDataRole.ToolTipRole and orientation == Qt.Orientation.Horizontal and section > 0:
            return (
                "shift t of this column"
                if self.uniform_shifts() is not None
                else "fraction of each direction's suggested range"
            )
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Vertical:
            return str(section)
        if section == 0:
            return "direction      shift t →"
        shifts = self.uniform_shifts()
        if shifts is not None:
            return f"{shifts[section - 1]:+.3g}"
        frac = np.linspace(-1, 1, self.steps)[section - 1]
        return f"{frac:+.2g}×"

    def flags(self, index: QModelIndex):
        f = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if index.column() == 0 and self.entry is not None and self.entry.editable:
            f |= Qt.ItemFlag.ItemIsEditable
        return f

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or self.entry is None:
            return None
        row, col = index.row(), index.column()
        if row >= len(self.entry.dset):
            return None
        d = self.entry.direction(row)
        if col == 0:
            if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
                return d.annotation.name
            if role == Qt.ItemDataRole.ToolTipRole:
                return f"#{row} {d.annotation.name or '(unnamed)'} — {d.describe()}"
            return None
        if role == Qt.ItemDataRole.DecorationRole:
            images = self.cache.get(row)
            if images is None:
                self.request(row)
                return None
            self.cache.move_to_end(row)
            return images[col - 1]
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"#{row}, t = {self.shifts_for(row)[col - 1]:+.3g}; seeds {', '.join(map(seed_label, self.seeds))} (top to bottom)"
        return None

    def setData(self, index: QModelIndex, value, role=Qt.ItemDataRole.EditRole) -> bool:  # noqa: N802
        if index.column() == 0 and role == Qt.ItemDataRole.EditRole and self.entry is not None:
            self.ws.annotate(self.entry, index.row(), "name", str(value).strip())
            return True
        return False

    def refresh_row(self, row: int) -> None:
        self.dataChanged.emit(self.index(row, 0), self.index(row, 0))

    # ---- rendering -----------------------------------------------------------------------------
    def request(self, row: int) -> None:
        if row not in self.inflight:
            self.wanted.add(row)
            self._pump_timer.start()

    def _pump(self) -> None:
        if self.entry is None or self.ws.gen is None or self.renderer.busy:
            return
        n = len(self.entry.dset)
        visible = [r for r in self.visible_rows() if 0 <= r < n]
        ahead = range(visible[-1] + 1, min(n, visible[-1] + 1 + PAGE)) if visible else range(0)
        order = visible + list(ahead) + sorted(self.wanted)
        rows = []
        for r in order:
            if r not in self.cache and r not in self.inflight and r not in rows and 0 <= r < n:
                rows.append(r)
            if len(rows) == PAGE:
                break
        self.wanted.clear()
        if not rows:
            return
        self.inflight.update(rows)
        req = GridRequest(
            dset=self.entry.dset,
            rows=tuple(rows),
            shifts=tuple(self.shifts_for(r) for r in rows),
            seeds=self.seeds,
            psi=self.psi,
            thumb=self.thumb,
            generation=self.generation,
            class_index=self.ws.class_index if self.ws.gen.num_classes else None,
        )
        self.renderer.submit(self.ws.gen, req)

    def _on_rows(self, _stamp: int, value) -> None:
        generation, rows = value
        if generation != self.generation:
            return
        for row, grid in rows.items():  # grid: [S, M, h, w, 3]
            self.inflight.discard(row)
            S, M, h, w = grid.shape[:4]
            stack = np.full((S, M * h + (M - 1) * GAP, w, 3), 20, np.uint8)
            for m in range(M):
                stack[:, m * (h + GAP) : m * (h + GAP) + h] = grid[:, m]
            self.cache[row] = [qimage(s) for s in stack]
            self.dataChanged.emit(self.index(row, 1), self.index(row, self.steps))
        while len(self.cache) > CACHE_ROWS:
            self.cache.popitem(last=False)
        self.rowsRendered.emit(len(self.cache))

    def _on_failed(self, _stamp: int, exc: Exception) -> None:
        self.inflight.clear()
        if str(exc) != self.last_error:
            self.last_error = str(exc)
            show_error(None, exc)


class GridDelegate(QStyledItemDelegate):
    """Paints the label column and the thumbnail cells."""

    def __init__(self, model: GridModel, parent=None) -> None:
        super().__init__(parent)
        self.grid = model
        self.smooth = True

    def paint(self, p: QPainter, option, index: QModelIndex) -> None:
        model = self.grid
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        pal = option.palette
        p.save()
        r = option.rect
        base = pal.color(pal.ColorRole.Base)
        p.fillRect(r, pal.color(pal.ColorRole.Highlight).darker(160) if selected else base)
        if index.column() == 0:
            view = self.parent()
            current_row = view is not None and view.currentIndex().row() == index.row()
            if current_row and not selected:
                p.fillRect(r, pal.color(pal.ColorRole.Highlight).darker(160))
            self._paint_label(p, r, index.row(), pal, selected or current_row)
        else:
            img = model.data(index, Qt.ItemDataRole.DecorationRole)
            inner = r.adjusted(3, 3, -3, -3)
            if img is not None:
                p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.smooth)
                iw, ih = img.width(), img.height()
                scale = min(inner.width() / iw, inner.height() / ih)
                w, h = int(iw * scale), int(ih * scale)
                p.drawImage(
                    QRect(inner.x() + (inner.width() - w) // 2, inner.y() + (inner.height() - h) // 2, w, h), img
                )
            else:
                p.fillRect(inner, base.lighter(115) if base.lightness() < 128 else base.darker(106))
            view = self.parent()
            if view is not None and view.currentIndex() == index:  # the cell Enter would open
                p.setPen(QPen(pal.color(pal.ColorRole.Highlight), 3 if view.hasFocus() else 2))
                p.drawRect(r.adjusted(1, 1, -2, -2))
        p.restore()

    def _paint_label(self, p: QPainter, r: QRect, row: int, pal, selected: bool) -> None:
        entry = self.grid.entry
        d = entry.direction(row)
        a = d.annotation
        if a.color:
            p.fillRect(QRect(r.x(), r.y() + 2, 4, r.height() - 4), QColor(a.color))
        text = pal.color(pal.ColorRole.HighlightedText if selected else pal.ColorRole.Text)
        x = r.x() + 10
        f = QFont(p.font())
        f.setBold(True)
        p.setFont(f)
        p.setPen(text)
        fm = p.fontMetrics()
        y = r.y() + 6 + fm.ascent()
        name = a.name or "unnamed"
        pinned = self.grid.ws.is_pinned(entry, row)
        room = r.right() - 6 - x  # the name ends before the "pinned" tag, never under it
        if pinned:
            f.setBold(False)
            room -= QFontMetrics(f).horizontalAdvance(PINNED_TAG) + 8
        p.drawText(x, y, fm.elidedText(f"#{row}  {name}", Qt.TextElideMode.ElideRight, max(0, room)))
        f.setBold(False)
        p.setFont(f)
        if pinned:
            p.setPen(pal.color(pal.ColorRole.Link))
            p.drawText(r.right() - 6 - p.fontMetrics().horizontalAdvance(PINNED_TAG), y, PINNED_TAG)
            p.setPen(text)
        y += fm.height() + 2
        if a.rating:
            p.setPen(QColor("#e3b341"))
            p.drawText(x, y, stars(a.rating))
        y += fm.height() + 2
        if a.interpretable:
            p.setPen(QColor(INTERP_COLOR[a.interpretable]))
            p.drawText(x, y, f"{INTERP_MARK[a.interpretable]} {a.interpretable}")
        if d.score is not None:
            p.setPen(pal.color(pal.ColorRole.PlaceholderText))
            p.drawText(x, y + fm.height() + 2, f"score {d.score:.4g}")

    def createEditor(self, parent, option, index):  # noqa: N802
        ed = QLineEdit(parent)
        ed.setPlaceholderText("name this direction")
        return ed

    def setEditorData(self, editor, index) -> None:  # noqa: N802
        editor.setText(index.data(Qt.ItemDataRole.EditRole) or "")
        editor.selectAll()

    def updateEditorGeometry(self, editor, option, index) -> None:  # noqa: N802
        r = option.rect
        editor.setGeometry(QRect(r.x() + 6, r.y() + 4, r.width() - 10, editor.sizeHint().height()))


class GridView(QTableView):
    """The table plus the inspector's keyboard: ratings, marks, naming, open."""

    cellChosen = Signal(int, int, int)  # row, shift column (0-based), seed index
    openRequested = Signal()
    keyAnnotate = Signal(str, object)  # field, value
    pinRequested = Signal()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        key, text = event.key(), event.text().lower()
        if self.state() == QAbstractItemView.State.EditingState:
            return super().keyPressEvent(event)
        if event.modifiers() & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier):
            return super().keyPressEvent(event)
        if text in ("1", "2", "3", "4", "5"):
            self.keyAnnotate.emit("rating", int(text))
        elif text == "0":
            self.keyAnnotate.emit("rating", None)
        elif text in ("i", "u", "x"):
            self.keyAnnotate.emit("interpretable", {"i": "yes", "u": "unsure", "x": "no"}[text])
        elif text == "n":
            idx = self.currentIndex()
            if idx.isValid():
                self.edit(idx.siblingAtColumn(0))
        elif text == "p":
            self.pinRequested.emit()
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            idx = self.currentIndex()
            if idx.isValid() and idx.column() > 0:
                self.cellChosen.emit(idx.row(), idx.column() - 1, 0)
            self.openRequested.emit()
        else:
            super().keyPressEvent(event)

    def mousePressEvent(self, event) -> None:  # noqa: N802
        super().mousePressEvent(event)
        idx = self.indexAt(event.position().toPoint())
        if idx.isValid() and idx.column() > 0 and event.button() == Qt.MouseButton.LeftButton:
            rect = self.visualRect(idx)
            m = self.model()
            n = max(1, len(m.seeds))
            y = event.position().y() - rect.y()
            seed_index = min(n - 1, max(0, int(y * n / max(1, rect.height()))))
            self.cellChosen.emit(idx.row(), idx.column() - 1, seed_index)


class GridInspector(QWidget):
    """Controls + the virtual table. ``cellActivated(entry, k, t, seed)`` loads a cell into the preview."""

    cellActivated = Signal(object, int, float, object)  # entry, k, t, seed (int or projected image)
    openRequested = Signal()

    def __init__(self, ws: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ws = ws
        root = QVBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)
        root.setSpacing(6)
        bar = QHBoxLayout()
        bar.setSpacing(6)
        bar.addWidget(QLabel("Set"))
        self.set_combo = QComboBox(self)
        self.set_combo.setMinimumContentsLength(16)
        self.set_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.set_combo.currentIndexChanged.connect(self._set_chosen)
        bar.addWidget(self.set_combo, 1)
        root.addLayout(bar)
        bar = QHBoxLayout()
        bar.setSpacing(6)
        bar.addWidget(QLabel("Shift ±"))
        self.T = QDoubleSpinBox(self)
        self.T.setRange(0.0, 1000.0)
        self.T.setDecimals(2)
        self.T.setSingleStep(0.5)
        self.T.setSpecialValueText("auto")
        self.T.setToolTip("largest shift of the columns; 'auto' = each direction's suggested range")
        self.T.setKeyboardTracking(False)
        self.T.setMaximumWidth(90)
        bar.addWidget(self.T)
        bar.addWidget(QLabel("Steps"))
        self.steps = QSpinBox(self)
        self.steps.setRange(2, 15)
        self.steps.setValue(7)
        self.steps.setKeyboardTracking(False)
        self.steps.setMaximumWidth(60)
        bar.addWidget(self.steps)
        bar.addWidget(QLabel("Seeds"))
        self.seeds = QLineEdit("0,1", self)
        self.seeds.setMaximumWidth(80)
        self.seeds.setToolTip("seeds stacked in each cell, e.g. 0,1,2 or 0-3; @name is a projected image")
        bar.addWidget(self.seeds)
        bar.addWidget(QLabel("Size"))
        self.size = QSlider(Qt.Orientation.Horizontal, self)
        self.size.setRange(40, 200)
        self.size.setValue(80)
        self.size.setMaximumWidth(140)
        self.size.setToolTip("thumbnail size")
        bar.addWidget(self.size, 1)
        bar.addStretch(1)
        root.addLayout(bar)

        self.model = GridModel(ws, self)
        self.view = GridView(self)
        self.view.setObjectName("gridView")
        self.view.setModel(self.model)
        self.delegate = GridDelegate(self.model, self.view)
        self.view.setItemDelegate(self.delegate)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectItems)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.EditKeyPressed)
        self.view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.view.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.view.verticalHeader().setVisible(False)
        self.view.setShowGrid(False)
        self.view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.view.setWordWrap(False)
        root.addWidget(self.view, 1)
        self.status = QElidingLabel("", self)
        self.status.setStyleSheet("color: palette(mid);")
        self.status.setText(KEYS_HINT)
        root.addWidget(self.status)

        self.model.visible_rows = self._visible_rows
        self.model.rowsRendered.connect(self._rendered)
        self.model.modelReset.connect(self._sizes)
        self.view.verticalScrollBar().valueChanged.connect(lambda _v: self.model._pump_timer.start())
        self.view.selectionModel().currentChanged.connect(self._current_changed)
        self.view.cellChosen.connect(self._cell_chosen)
        self.view.openRequested.connect(self.openRequested)
        self.view.keyAnnotate.connect(self._key_annotate)
        self.view.pinRequested.connect(self._pin)
        self.T.valueChanged.connect(self._reconfigure)
        self.steps.valueChanged.connect(self._reconfigure)
        self.seeds.editingFinished.connect(self._reconfigure)
        self.size.valueChanged.connect(self._resize_thumbs)
        self.size.sliderMoved.connect(self._user_sized)
        self.auto_size = True  # fit the columns to the panel until the user picks a size
        self.view.viewport().installEventFilter(self)
        self._size_timer = QTimer(self)
        self._size_timer.setSingleShot(True)
        self._size_timer.setInterval(250)
        self._size_timer.timeout.connect(self._reconfigure)
        self._partial_timer = QTimer(self)
        self._partial_timer.setSingleShot(True)
        self._partial_timer.setInterval(1000)
        self._partial_timer.timeout.connect(self._reconfigure)

        ws.setsChanged.connect(self._sets_changed)
        ws.modelChanged.connect(self._sets_changed)
        ws.setUpdated.connect(self._set_updated)
        ws.annotationChanged.connect(self._annotation_changed)
        ws.currentChanged.connect(self._follow_current)
        ws.classChanged.connect(self._reconfigure)  # thumbnails of the new class
        ws.activeChanged.connect(self.view.viewport().update)
        self._sets_changed()

    # ---- sets ----------------------------------------------------------------------------------
    def _sets_changed(self) -> None:
        current = self.model.entry
        self.set_combo.blockSignals(True)
        self.set_combo.clear()
        for e in self.ws.entries:
            self.set_combo.addItem(f"{e.title}  ({len(e.dset)})", e.uid)
        self.set_combo.blockSignals(False)
        if current is not None and current in self.ws.entries:
            self.set_combo.setCurrentIndex(self.set_combo.findData(current.uid))
            if self.model.gen_id != id(self.ws.gen):
                self._reconfigure()
        elif self.ws.entries:
            self.show_set(self.ws.entries[-1])
        else:
            self.model.configure(entry=None)

    def show_set(self, entry: SetEntry) -> None:
        i = self.set_combo.findData(entry.uid)
        if i >= 0:
            self.set_combo.setCurrentIndex(i)
            if self.model.entry is not entry:
                self._set_chosen(i)

    def _set_chosen(self, i: int) -> None:
        entry = self.ws.entry_for(self.set_combo.itemData(i)) if i >= 0 else None
        self.model.entry = entry
        self._reconfigure()

    def _set_updated(self, entry: SetEntry) -> None:
        i = self.set_combo.findData(entry.uid)
        if i >= 0:
            self.set_combo.setItemText(i, f"{entry.title}  ({len(entry.dset)})")
        if entry is self.model.entry:
            if entry.running:  # a discovery delivers partial sets many times a second: re-render at most 1/s
                if not self._partial_timer.isActive():
                    self._partial_timer.start()
            else:
                self._partial_timer.stop()
                self._reconfigure()

    def _reconfigure(self, *_args) -> None:
        if self.auto_size and self.sender() is self.steps:
            self.fit_columns()
        try:
            seeds = parse_seed_text(self.seeds.text(), self.ws.images)[:8]
        except ValueError:
            seeds = (0,)
        self.model.gen_id = id(self.ws.gen)
        col = self.view.currentIndex().column()
        self.model.configure(
            entry=self.model.entry,
            T=float(self.T.value()),
            steps=int(self.steps.value()),
            seeds=seeds,
            thumb=int(self.size.value()),
        )
        self._follow_current(max(0, min(col, self.model.steps)))

    def set_psi(self, psi: float) -> None:
        if psi != self.model.psi:
            self.model.psi = psi
            self._reconfigure()

    def set_smooth(self, on: bool) -> None:
        self.delegate.smooth = on
        self.view.viewport().update()

    def _resize_thumbs(self, _v: int) -> None:
        self._sizes()
        self._size_timer.start()

    def _user_sized(self, _v: int) -> None:
        self.auto_size = False

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        if obj is self.view.viewport() and event.type() == QEvent.Type.Resize and self.auto_size:
            self.fit_columns()
        return False

    def fit_columns(self) -> None:
        """Thumbnail size that shows every shift column without scrolling (within 48..160 px)."""
        room = self.view.viewport().width() - LABEL_WIDTH - 4
        thumb = max(48, min(160, room // max(1, int(self.steps.value())) - 6))
        if thumb != self.size.value():
            self.size.setValue(thumb)

    def _sizes(self) -> None:
        entry = self.model.entry
        thumb = int(self.size.value())
        aspect = 1.0  # generators here are square; cells fit the image anyway
        n = max(1, len(self.model.seeds))
        self.view.verticalHeader().setDefaultSectionSize(max(78, n * thumb + (n - 1) * GAP + 6))
        self.view.horizontalHeader().setDefaultSectionSize(int(thumb * aspect) + 6)
        self.view.setColumnWidth(0, LABEL_WIDTH)
        if entry is None:
            self.status.setText("No direction set: open one (File ▸ Open direction set) or run a discovery")
        else:
            self.status.setText(KEYS_HINT)

    def _visible_rows(self) -> range:
        if not on_screen(self.view):
            # a hidden panel (another dock tab in front) renders nothing: a discovery's partial set
            # re-rendered every second behind the discovery panel would compete with the preview
            return range(0, 0)
        vp = self.view.viewport()
        first = self.view.rowAt(0)
        last = self.view.rowAt(vp.height() - 1)
        if first < 0:
            return range(0, 0)
        if last < 0:
            last = self.model.rowCount() - 1
        return range(first, last + 1)

    def shown(self) -> None:
        """The panel came on screen (its dock tab was chosen): render what is visible now."""
        self.model._pump_timer.start()

    def _rendered(self, n: int) -> None:
        total = self.model.rowCount()
        self.status.setText(f"{n}/{total} rows rendered (as they scroll into view) · {KEYS_HINT}")

    # ---- selection and keys --------------------------------------------------------------------
    def _current_changed(self, current: QModelIndex, prev: QModelIndex) -> None:
        for idx in (prev, current):  # the label cell marks the current row
            if idx.isValid():
                self.view.update(self.model.index(idx.row(), 0))
        if current.isValid() and self.model.entry is not None:
            self.ws.select(self.model.entry, current.row())

    def _follow_current(self, column: int | None = None) -> None:
        cur = self.ws.current
        if cur is None or cur[0] is not self.model.entry:
            return
        idx = self.view.currentIndex()
        if idx.isValid() and idx.row() == cur[1]:
            return
        col = column if column is not None else (idx.column() if idx.isValid() else 0)
        target = self.model.index(cur[1], col)
        self.view.selectionModel().setCurrentIndex(target, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.view.scrollTo(target)

    def _cell_chosen(self, row: int, col: int, seed_index: int) -> None:
        entry = self.model.entry
        if entry is None:
            return
        t = self.model.shifts_for(row)[col]
        seed = self.model.seeds[min(seed_index, len(self.model.seeds) - 1)]
        self.cellActivated.emit(entry, row, t, seed)

    def _key_annotate(self, field: str, value) -> None:
        idx = self.view.currentIndex()
        if idx.isValid() and self.model.entry is not None:
            self.ws.annotate(self.model.entry, idx.row(), field, value)

    def _pin(self) -> None:
        idx = self.view.currentIndex()
        if idx.isValid() and self.model.entry is not None:
            e, k = self.model.entry, idx.row()
            self.ws.pin(e, k, not self.ws.is_pinned(e, k))

    def _annotation_changed(self, entry, k) -> None:
        if entry is self.model.entry:
            self.model.refresh_row(k)

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(820, 600)
