"""The direction browser: model -> direction sets -> directions, with filters and inline rename.

The loaded model's sets are live workspace entries. Sets in the library folder that were found
on *other* models are listed under their model, greyed (``engine.directions.library_sets``: each
read from its manifest alone); double-clicking one opens that model.
"""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QAction, QBrush, QColor, QFont, QIcon, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QMenu,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from desktop.widgets import INTERP_COLOR, INTERP_MARK, stars, swatch_pixmap
from desktop.workspace import SetEntry, Workspace
from engine.directions import SetSummary

KIND_ROLE = Qt.ItemDataRole.UserRole + 1
UID_ROLE = Qt.ItemDataRole.UserRole + 2
K_ROLE = Qt.ItemDataRole.UserRole + 3
PATH_ROLE = Qt.ItemDataRole.UserRole + 4
SOURCE_ROLE = Qt.ItemDataRole.UserRole + 5
COLUMNS = ("#", "Name", "Score", "★", "✓")
NAME_COL = 1


class FilterProxy(QSortFilterProxyModel):
    """Shows model and set rows always; direction rows that pass the filters."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.text = ""
        self.min_rating = 0
        self.interp = "any"
        self.tag = ""
        self.entries: dict[int, SetEntry] = {}

    def set_filters(self, text: str, min_rating: int, interp: str, tag: str) -> None:
        self.beginFilterChange()
        self.text, self.min_rating, self.interp, self.tag = text.lower().strip(), min_rating, interp, tag
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def refilter(self) -> None:
        self.beginFilterChange()
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, row: int, parent: QModelIndex) -> bool:  # noqa: N802
        idx = self.sourceModel().index(row, 0, parent)
        if idx.data(KIND_ROLE) != "dir":
            return True
        entry = self.entries.get(idx.data(UID_ROLE))
        if entry is None:
            return True
        k = idx.data(K_ROLE)
        if k >= len(entry.dset):
            return False
        a = entry.direction(k).annotation
        if self.min_rating and (a.rating or 0) < self.min_rating:
            return False
        if self.interp == "unmarked" and a.interpretable is not None:
            return False
        if self.interp not in ("any", "unmarked") and a.interpretable != self.interp:
            return False
        if self.tag and self.tag not in a.tags:
            return False
        if self.text:
            hay = " ".join([a.name, a.notes, " ".join(a.tags), f"#{k}"]).lower()
            if self.text not in hay:
                return False
        return True


class DirectionBrowser(QWidget):
    """Tree of model -> sets -> directions, kept in step with the workspace."""

    openRequested = Signal()  # "open the current direction in the preview"
    showInGrid = Signal(object)  # SetEntry
    exportRequested = Signal(object)  # SetEntry
    openModelRequested = Signal(str, str)  # model source, set path
    closeSetRequested = Signal(object)  # SetEntry

    def __init__(self, ws: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ws = ws
        self.library: list[SetSummary] = []
        self._items: dict[tuple[int, int], list[QStandardItem]] = {}
        self._set_items: dict[int, QStandardItem] = {}
        self._auto_expanded: set[int] = set()
        self._known: set[int] = set()  # entries the tree has shown (a new running one is revealed)
        self._syncing = False

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Filter: name, tag, note, #index")
        self.search.setClearButtonEnabled(True)
        lay.addWidget(self.search)
        row = QHBoxLayout()
        row.setSpacing(4)
        self.rating_filter = QComboBox(self)
        self.rating_filter.addItems(["any rating", "★1+", "★2+", "★3+", "★4+", "★5"])
        self.rating_filter.setToolTip("show directions rated at least this")
        self.interp_filter = QComboBox(self)
        self.interp_filter.addItems(["any", "yes", "unsure", "no", "unmarked"])
        self.interp_filter.setToolTip("interpretable: yes / unsure / no / not marked yet")
        self.tag_filter = QComboBox(self)
        self.tag_filter.setToolTip("show directions with this tag")
        self.tag_filter.addItem("any tag", "")
        for w in (self.rating_filter, self.interp_filter, self.tag_filter):
            row.addWidget(w, 1)
        lay.addLayout(row)

        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
        for c, tip in enumerate(
            (
                "index (colour)",
                "name (double-click or F2 to rename)",
                "the method's score",
                "rating",
                "interpretable: ✓ yes, ? unsure, ✗ no",
            )
        ):
            self.model.horizontalHeaderItem(c).setToolTip(tip)
        self.proxy = FilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setRecursiveFilteringEnabled(False)
        self.view = QTreeView(self)
        self.view.setModel(self.proxy)
        self.view.setObjectName("browserTree")
        self.view.setUniformRowHeights(True)
        self.view.setAlternatingRowColors(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setEditTriggers(
            QAbstractItemView.EditTrigger.EditKeyPressed | QAbstractItemView.EditTrigger.DoubleClicked
        )
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.view.doubleClicked.connect(self._double_clicked)
        hdr = self.view.header()
        hdr.setStretchLastSection(False)
        hdr.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        hdr.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for c in (2, 3, 4):
            hdr.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.view.setColumnWidth(0, 78)
        self.view.setIndentation(10)
        lay.addWidget(self.view, 1)

        self.model.itemChanged.connect(self._item_changed)
        self.view.selectionModel().currentRowChanged.connect(self._row_changed)
        self.search.textChanged.connect(self._filters_changed)
        self.rating_filter.currentIndexChanged.connect(self._filters_changed)
        self.interp_filter.currentIndexChanged.connect(self._filters_changed)
        self.tag_filter.currentIndexChanged.connect(self._filters_changed)

        ws.modelChanged.connect(self.rebuild)
        ws.setsChanged.connect(self.rebuild)
        ws.setUpdated.connect(self._set_updated)
        ws.annotationChanged.connect(self._annotation_changed)
        ws.currentChanged.connect(self._follow_current)
        self.rebuild()

    # ---- building ------------------------------------------------------------------------------
    def set_library(self, sets: list[SetSummary]) -> None:
        self.library = sets
        self.rebuild()

    def rebuild(self) -> None:
        """Rebuild the tree from the workspace, keeping which sets are unfolded and the scroll
        position; a discovery that has just started is unfolded and scrolled into view."""
        expanded = {
            uid: self.view.isExpanded(self.proxy.mapFromSource(item.index()))
            for uid, item in self._set_items.items()
            if item.model() is self.model
        }
        scroll = self.view.verticalScrollBar().value()
        new_running = [e for e in self.ws.entries if e.running and e.uid not in self._known]
        self._known = {e.uid for e in self.ws.entries}
        self._syncing = True
        self.model.removeRows(0, self.model.rowCount())
        self._items.clear()
        self._set_items.clear()
        self.proxy.entries = {e.uid: e for e in self.ws.entries}
        gen = self.ws.gen
        if gen is not None:
            spaces = "/".join(gen.spaces)
            top = self._row(
                "model",
                f"{gen.name}",
                f"{gen.resolution} px · {spaces}",
                tooltip=f"{gen.source}\nidentity {gen.identity[:16]}",
            )
            f = QFont()
            f.setBold(True)
            top[0].setFont(f)
            self.model.appendRow(top)
            for entry in self.ws.entries:
                top[0].appendRow(self._set_row(entry))
            self.view.setFirstColumnSpanned(0, QModelIndex(), False)
        others: dict[str, list[SetSummary]] = {}
        here = gen.identity if gen is not None else None
        for s in self.library:
            if s.model_identity != here:
                others.setdefault(s.model_identity or s.model_name, []).append(s)
        for sets in others.values():
            top = self._row(
                "model",
                sets[0].model_name,
                "not loaded",
                tooltip=f"{sets[0].model_source}\ndouble-click a set to open this model",
            )
            grey = QBrush(QColor("#8b949e"))
            for it in top:
                it.setForeground(grey)
            for s in sets:
                r = self._row(
                    "libset",
                    s.path.stem,
                    f"{s.method} · {s.count} dirs",
                    tooltip=f"{s.path}\nfound on {s.model_name}; double-click to open that model",
                )
                for it in r:
                    it.setForeground(grey)
                r[0].setData(str(s.path), PATH_ROLE)
                r[0].setData(s.model_source, SOURCE_ROLE)
                top[0].appendRow(r)
            self.model.appendRow(top)
        self._refresh_tags()
        self._syncing = False
        self.view.expandToDepth(0)
        for uid, item in self._set_items.items():
            if expanded.get(uid):
                self.view.expand(self.proxy.mapFromSource(item.index()))
        self._auto_expanded &= set(expanded)
        self._expand_current_set(fresh=set(self._set_items) - set(expanded))
        for i in range(self.proxy.rowCount()):
            idx = self.proxy.index(i, 0)
            self.view.setFirstColumnSpanned(i, QModelIndex(), True)
            for j in range(self.proxy.rowCount(idx)):
                self.view.setFirstColumnSpanned(j, idx, True)
        self._follow_current(scroll=False)
        self.view.verticalScrollBar().setValue(scroll)
        for e in new_running:  # a discovery has just started: show its set and first directions
            item = self._set_items.get(e.uid)
            if item is not None:
                self.view.scrollTo(self.proxy.mapFromSource(item.index()), QAbstractItemView.ScrollHint.PositionAtTop)

    def _row(self, kind: str, label: str, name: str = "", *, tooltip: str = "") -> list[QStandardItem]:
        items = [QStandardItem(label), QStandardItem(name)] + [QStandardItem("") for _ in COLUMNS[2:]]
        for it in items:
            it.setEditable(False)
            it.setData(kind, KIND_ROLE)
            if tooltip:
                it.setToolTip(tooltip)
        if kind != "dir" and name:
            items[0].setText(f"{label}  —  {name}")
        return items

    def _set_label(self, entry: SetEntry) -> tuple[str, str]:
        d = entry.dset
        bits = [entry.status] if entry.status else []
        bits.append(f"{len(d)} dirs" if d.path is None else f"{d.method} · {len(d)} dirs")
        if entry.foreign:
            bits.append("⚠ " + entry.foreign)
        return (entry.title if d.path is not None else d.method), " · ".join(bits)

    def _set_row(self, entry: SetEntry) -> list[QStandardItem]:
        label, name = self._set_label(entry)
        tip = str(entry.dset.path) if entry.dset.path else "not saved yet"
        row = self._row("set", label, name, tooltip=tip)
        row[0].setData(entry.uid, UID_ROLE)
        if entry.running:
            f = QFont()
            f.setItalic(True)
            row[0].setFont(f)
        self._set_items[entry.uid] = row[0]
        for k in range(len(entry.dset)):
            row[0].appendRow(self._dir_row(entry, k))
        return row

    def _dir_row(self, entry: SetEntry, k: int) -> list[QStandardItem]:
        items = [QStandardItem("") for _ in COLUMNS]
        for it in items:
            it.setEditable(False)
            it.setData("dir", KIND_ROLE)
            it.setData(entry.uid, UID_ROLE)
            it.setData(k, K_ROLE)
        items[NAME_COL].setEditable(entry.editable)
        self._items[(entry.uid, k)] = items
        self._fill(entry, k, items)
        return items

    def _fill(self, entry: SetEntry, k: int, items: list[QStandardItem]) -> None:
        d = entry.direction(k)
        a = d.annotation
        items[0].setText(f"#{k}")
        items[0].setIcon(QIcon(swatch_pixmap(a.color, 10)) if a.color else QIcon())
        items[0].setToolTip(d.describe())
        items[NAME_COL].setText(a.name)
        items[NAME_COL].setToolTip(
            "; ".join(filter(None, [a.name, ", ".join(a.tags), a.notes])) or "double-click to name"
        )
        items[2].setText("" if d.score is None else f"{d.score:.3g}")
        items[2].setToolTip("" if d.score is None else f"score {d.score:.6g}")
        items[2].setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        items[3].setText(f"{'★' * a.rating}" if a.rating else "")
        items[3].setToolTip(stars(a.rating))
        items[3].setForeground(QBrush(QColor("#e3b341")))
        items[4].setText(INTERP_MARK[a.interpretable])
        items[4].setTextAlignment(Qt.AlignmentFlag.AlignCenter)
        if a.interpretable:
            items[4].setForeground(QBrush(QColor(INTERP_COLOR[a.interpretable])))

    def _refresh_tags(self) -> None:
        tags = sorted({t for e in self.ws.entries for d in e.dset.directions for t in d.annotation.tags})
        current = self.tag_filter.currentData()
        self.tag_filter.blockSignals(True)
        self.tag_filter.clear()
        self.tag_filter.addItem("any tag", "")
        for t in tags:
            self.tag_filter.addItem(f"#{t}", t)
        i = self.tag_filter.findData(current)
        self.tag_filter.setCurrentIndex(max(0, i))
        self.tag_filter.blockSignals(False)

    # ---- workspace -> view -----------------------------------------------------------------------
    def _set_updated(self, entry: SetEntry) -> None:
        item = self._set_items.get(entry.uid)
        if item is None or item.rowCount() != len(entry.dset) or entry.running != item.font().italic():
            self.rebuild()
            return
        self._syncing = True
        label, name = self._set_label(entry)
        item.setText(f"{label}  —  {name}")
        for k in range(len(entry.dset)):
            items = self._items.get((entry.uid, k))
            if items:
                items[NAME_COL].setEditable(entry.editable)
                self._fill(entry, k, items)
        self._syncing = False

    def _annotation_changed(self, entry: SetEntry, k: int) -> None:
        items = self._items.get((entry.uid, k))
        if items is None:
            return
        self._syncing = True
        self._fill(entry, k, items)
        self._syncing = False
        self._refresh_tags()
        self.proxy.refilter()

    def _expand_current_set(self, fresh: set[int] | None = None) -> None:
        """Unfold the current set and running discoveries; fold again the sets this unfolded
        earlier that are neither (sets the user unfolded or folded stay as they are). On a
        rebuild, ``fresh`` names the sets not shown before: only those may be unfolded."""
        cur = self.ws.current
        for e in self.ws.entries:
            item = self._set_items.get(e.uid)
            if item is None:
                continue
            idx = self.proxy.mapFromSource(item.index())
            if fresh is not None and e.uid not in fresh:
                continue
            if e.running or (cur is not None and cur[0] is e) or len(self.ws.entries) == 1:
                if not self.view.isExpanded(idx):
                    self._auto_expanded.add(e.uid)
                    self.view.expand(idx)
            elif e.uid in self._auto_expanded:
                self._auto_expanded.discard(e.uid)
                self.view.collapse(idx)

    def _follow_current(self, scroll: bool = True) -> None:
        if scroll:
            self._expand_current_set()
        cur = self.ws.current
        if cur is None:
            return
        items = self._items.get((cur[0].uid, cur[1]))
        if items is None:
            return
        idx = self.proxy.mapFromSource(items[0].index())
        if not idx.isValid() or self.view.currentIndex().siblingAtColumn(0) == idx:
            return
        self._syncing = True
        self.view.selectionModel().setCurrentIndex(
            idx, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        )
        if scroll:
            self.view.scrollTo(idx)
        self._syncing = False

    # ---- view -> workspace -----------------------------------------------------------------------
    def _row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self._syncing or not current.isValid():
            return
        if current.data(KIND_ROLE) == "dir":
            entry = self.ws.entry_for(current.data(UID_ROLE))
            if entry is not None:
                self.ws.select(entry, current.data(K_ROLE))

    def _item_changed(self, item: QStandardItem) -> None:
        if self._syncing or item.column() != NAME_COL or item.data(KIND_ROLE) != "dir":
            return
        entry = self.ws.entry_for(item.data(UID_ROLE))
        if entry is not None:
            self.ws.annotate(entry, item.data(K_ROLE), "name", item.text().strip())

    def _filters_changed(self, *_args) -> None:
        self.proxy.set_filters(
            self.search.text(),
            self.rating_filter.currentIndex(),
            self.interp_filter.currentText(),
            self.tag_filter.currentData() or "",
        )
        self.view.expandToDepth(1)

    def _double_clicked(self, idx: QModelIndex) -> None:
        kind = idx.data(KIND_ROLE)
        if kind == "dir" and idx.column() != NAME_COL:
            self.openRequested.emit()
        elif kind == "libset":
            src = idx.siblingAtColumn(0)
            self.openModelRequested.emit(src.data(SOURCE_ROLE) or "", src.data(PATH_ROLE) or "")
        elif kind == "set":
            entry = self.ws.entry_for(idx.siblingAtColumn(0).data(UID_ROLE))
            if entry is not None:
                self.showInGrid.emit(entry)

    def rename_current(self) -> None:
        cur = self.ws.current
        if cur is None:
            return
        items = self._items.get((cur[0].uid, cur[1]))
        if items is not None:
            self.view.edit(self.proxy.mapFromSource(items[NAME_COL].index()))

    def _context_menu(self, pos) -> None:
        idx = self.view.indexAt(pos)
        if not idx.isValid():
            return
        kind = idx.data(KIND_ROLE)
        entry = self.ws.entry_for(idx.siblingAtColumn(0).data(UID_ROLE)) if kind in ("set", "dir") else None
        menu = QMenu(self)
        if kind == "dir" and entry is not None:
            k = idx.data(K_ROLE)
            pinned = self.ws.is_pinned(entry, k)
            a = QAction("Unpin from preview" if pinned else "Pin to preview", menu)
            a.triggered.connect(lambda: self.ws.pin(entry, k, not pinned))
            menu.addAction(a)
            a = QAction("Rename", menu)
            a.setEnabled(entry.editable)
            a.triggered.connect(lambda: self.view.edit(idx.siblingAtColumn(NAME_COL)))
            menu.addAction(a)
        if entry is not None:
            a = QAction("Show in grid", menu)
            a.triggered.connect(lambda: self.showInGrid.emit(entry))
            menu.addAction(a)
            a = QAction("Export…", menu)
            a.triggered.connect(lambda: self.exportRequested.emit(entry))
            menu.addAction(a)
            menu.addSeparator()
            a = QAction("Close set", menu)
            a.setEnabled(not entry.running)
            a.triggered.connect(lambda: self.closeSetRequested.emit(entry))
            menu.addAction(a)
        if not menu.isEmpty():
            menu.popup(self.view.viewport().mapToGlobal(pos))
