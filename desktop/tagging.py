"""The annotation editor of the current direction: name, interpretable, rating, colour, tags, notes.

Every change goes through ``Workspace.annotate`` (undoable, written to disk at once).
"""

from __future__ import annotations

from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QButtonGroup,
    QColorDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.widgets import INTERP_COLOR, ColorSwatch, StarRating
from desktop.workspace import Workspace

PALETTE = ("#f85149", "#d29922", "#3fb950", "#58a6ff", "#bc8cff", "#ff7b72", "#39c5cf")


class AnnotationEditor(QWidget):
    def __init__(self, ws: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ws = ws
        root = QVBoxLayout(self)
        root.setContentsMargins(8, 6, 8, 6)
        root.setSpacing(6)
        self.header = QLabel("No direction selected", self)
        self.header.setWordWrap(True)
        self.header.setStyleSheet("font-weight: 600;")
        root.addWidget(self.header)
        self.detail = QLabel("", self)
        self.detail.setWordWrap(True)
        self.detail.setStyleSheet("color: palette(mid);")
        root.addWidget(self.detail)

        form = QFormLayout()
        form.setContentsMargins(0, 4, 0, 0)
        form.setHorizontalSpacing(10)
        form.setVerticalSpacing(6)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.name = QLineEdit(self)
        self.name.setPlaceholderText("e.g. smile, age, lighting")
        self.name.setObjectName("nameEdit")
        self.name.textEdited.connect(lambda text: self._set("name", text.strip()))
        form.addRow("Name", self.name)

        interp = QHBoxLayout()
        interp.setSpacing(4)
        self.interp_group = QButtonGroup(self)
        self.interp_group.setExclusive(False)
        self.interp_buttons: dict[str, QPushButton] = {}
        for value, text, key in (("yes", "✓ Yes", "I"), ("unsure", "? Unsure", "U"), ("no", "✗ No", "X")):
            b = QPushButton(text, self)
            b.setCheckable(True)
            b.setToolTip(f"interpretable: {value} (key {key} in the grid); click again to clear")
            b.setObjectName(f"interp_{value}")
            b.clicked.connect(lambda checked, v=value: self._set("interpretable", v if checked else None))
            self.interp_group.addButton(b)
            self.interp_buttons[value] = b
            interp.addWidget(b)
        interp.addStretch(1)
        form.addRow("Interpretable", interp)

        self.rating = StarRating(self)
        self.rating.ratingChanged.connect(lambda r: self._set("rating", r))
        form.addRow("Rating", self.rating)

        colors = QHBoxLayout()
        colors.setSpacing(2)
        self.swatch = ColorSwatch(self)
        self.swatch.setToolTip("choose a colour")
        self.swatch.clicked.connect(self._pick_color)
        colors.addWidget(self.swatch)
        colors.addSpacing(6)
        for c in PALETTE:
            b = QToolButton(self)
            b.setFixedSize(16, 16)
            b.setStyleSheet(f"background: {c}; border: 1px solid #30363d; border-radius: 3px;")
            b.setToolTip(c)
            b.clicked.connect(lambda _=False, c=c: self._set("color", c))
            colors.addWidget(b)
        clear = QToolButton(self)
        clear.setText("×")
        clear.setToolTip("no colour")
        clear.clicked.connect(lambda: self._set("color", ""))
        colors.addWidget(clear)
        colors.addStretch(1)
        form.addRow("Colour", colors)

        self.tags = QLineEdit(self)
        self.tags.setPlaceholderText("comma-separated, e.g. face, lighting")
        self.tags.textEdited.connect(lambda text: self._set("tags", [t.strip() for t in text.split(",") if t.strip()]))
        form.addRow("Tags", self.tags)
        root.addLayout(form)

        root.addWidget(QLabel("Notes"))
        self.notes = QPlainTextEdit(self)
        self.notes.setPlaceholderText("what changes, on which seeds, side effects…")
        self.notes.textChanged.connect(self._notes_changed)
        self.notes.setMinimumHeight(60)
        root.addWidget(self.notes, 1)
        self.saved = QLabel("", self)
        self.saved.setStyleSheet("color: palette(mid);")
        root.addWidget(self.saved)

        ws.currentChanged.connect(self.refresh)
        ws.annotationChanged.connect(self._annotation_changed)
        ws.setUpdated.connect(lambda _e: self.refresh())
        self.refresh()

    # ---- workspace -> editor -------------------------------------------------------------------
    def _annotation_changed(self, entry, k) -> None:
        if self.ws.current == (entry, k):
            self.refresh()

    def refresh(self) -> None:
        cur = self.ws.current
        enabled = cur is not None and cur[0].editable
        for w in (self.name, self.rating, self.tags, self.notes, self.swatch, *self.interp_buttons.values()):
            w.setEnabled(enabled)
        if cur is None:
            self.header.setText("No direction selected")
            self.detail.setText("Pick one in the browser or the grid.")
            self._fill(None)
            return
        entry, k = cur
        d = entry.direction(k)
        self.header.setText(f"#{k} {d.annotation.name or '(unnamed)'}")
        score = "" if d.score is None else f" · score {d.score:.4g}"
        note = ""
        if entry.running:
            note = " · still running: read-only until it finishes"
        elif entry.dset.path is None:
            note = " · not saved"
        self.detail.setText(f"{entry.title} · {d.describe()} · range {d.range[0]:g}..{d.range[1]:g}{score}{note}")
        self._fill(d.annotation)
        self.saved.setText(f"saved to {entry.dset.path.name}" if entry.dset.path else "")

    def _fill(self, a) -> None:
        widgets = (self.name, self.tags, self.notes, self.rating, *self.interp_buttons.values())
        for w in widgets:
            w.blockSignals(True)
        try:
            if self.name.text() != (a.name if a else ""):
                self.name.setText(a.name if a else "")
            tags = ", ".join(a.tags) if a else ""
            if [t.strip() for t in self.tags.text().split(",") if t.strip()] != (a.tags if a else []):
                self.tags.setText(tags)
            if self.notes.toPlainText() != (a.notes if a else ""):
                self.notes.setPlainText(a.notes if a else "")
            self.rating.set_rating(a.rating if a else None)
            for value, b in self.interp_buttons.items():
                on = a is not None and a.interpretable == value
                b.setChecked(on)
                b.setStyleSheet(f"color: {INTERP_COLOR[value]}; font-weight: 600;" if on else "")
            self.swatch.set_color(a.color if a else "")
        finally:
            for w in widgets:
                w.blockSignals(False)

    # ---- editor -> workspace -------------------------------------------------------------------
    def _set(self, field: str, value) -> None:
        cur = self.ws.current
        if cur is not None:
            self.ws.annotate(cur[0], cur[1], field, value)

    def _notes_changed(self) -> None:
        self._set("notes", self.notes.toPlainText())

    def _pick_color(self) -> None:
        cur = self.ws.current
        if cur is None:
            return
        start = QColor(cur[0].direction(cur[1]).annotation.color or "#58a6ff")
        dlg = QColorDialog(start, self)
        dlg.colorSelected.connect(lambda c: self._set("color", c.name()))
        dlg.open()

    def focus_name(self) -> None:
        self.name.setFocus()
        self.name.selectAll()
