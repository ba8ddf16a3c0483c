"""The editor's document: the loaded generator, its direction sets, the current direction, the
directions active on the preview, the class shown (class-conditional models), and the annotation
edits (through a ``QUndoStack``).

Every annotation change is written to the set's manifest at once (``DirectionSet.save_annotations``,
an atomic replace), so closing or killing the program never loses a tag. Undo and redo write too.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from engine.directions import Annotation, Direction, DirectionSet
from engine.errors import AtlasError, one_line

ANNOTATION_FIELDS = ("name", "interpretable", "rating", "notes", "color", "tags")
_TEXT_FIELDS = ("name", "notes", "tags")
_uids = itertools.count(1)


@dataclass(eq=False)
class SetEntry:
    """A direction set in the workspace. ``running``: a discovery is still producing it."""

    dset: DirectionSet
    uid: int = field(default_factory=lambda: next(_uids))
    running: bool = False
    status: str = ""
    foreign: str = ""  # why this set may not fit the loaded model ("" when it does)

    @property
    def title(self) -> str:
        return self.dset.path.stem if self.dset.path is not None else f"{self.dset.method} (new)"

    @property
    def editable(self) -> bool:
        return not self.running and self.dset.path is not None

    def direction(self, k: int) -> Direction:
        return self.dset.directions[k]


Key = tuple[int, int]  # (entry uid, direction index)


class AnnotateCommand(QUndoCommand):
    """Set one annotation field of one direction; consecutive typing in one text field merges."""

    ID = 4201

    def __init__(self, ws: Workspace, entry: SetEntry, k: int, field_name: str, value: Any) -> None:
        label = entry.direction(k).annotation.name or f"#{k}"
        super().__init__(f"{field_name} of {label}")
        self.ws, self.entry, self.k, self.field = ws, entry, k, field_name
        self.old = _copy(getattr(entry.direction(k).annotation, field_name))
        self.new = _copy(value)

    def id(self) -> int:  # noqa: A003 - Qt's name
        return self.ID

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt's name
        if not isinstance(other, AnnotateCommand) or self.field not in _TEXT_FIELDS:
            return False
        if (other.entry, other.k, other.field) != (self.entry, self.k, self.field):
            return False
        self.new = other.new
        return True

    def redo(self) -> None:
        self.ws._apply(self.entry, self.k, self.field, self.new)

    def undo(self) -> None:
        self.ws._apply(self.entry, self.k, self.field, self.old)


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


class Workspace(QObject):
    """State shared by the panels; the panels talk to each other only through its signals."""

    modelChanged = Signal()
    setsChanged = Signal()  # a set was added or removed
    setUpdated = Signal(object)  # SetEntry: new partial result, saved, renamed, status
    annotationChanged = Signal(object, int)  # SetEntry, k
    currentChanged = Signal()
    activeChanged = Signal()  # the pinned / current directions changed
    shiftsChanged = Signal()  # a slider value changed (cheap: no new sliders)
    imagesChanged = Signal()  # a projected image was added (or the model changed)
    classChanged = Signal()  # the class shown changed (class-conditional models)
    saveFailed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.gen = None
        self.entries: list[SetEntry] = []
        self.undo_stack = QUndoStack(self)
        self.current: tuple[SetEntry, int] | None = None
        self.pinned: list[tuple[SetEntry, int]] = []
        self._shifts: dict[Key, float] = {}
        self.images: dict[str, Any] = {}  # projected images (engine.latents.Latent), by seed name ("@name")
        self.class_index: int | None = None  # the class of the seeds shown (class-conditional models)
        self._class_set_uid: int | None = None  # the set whose recorded class was last adopted

    # ---- model -------------------------------------------------------------------------------
    def set_generator(self, gen) -> None:
        """Switch to another generator; sets found on a different model are closed."""
        old = self.gen
        self.gen = gen
        if not getattr(gen, "num_classes", 0):
            self.class_index = None
        elif self.class_index is None or self.class_index >= gen.num_classes:
            self.class_index = 0
        if old is not None and getattr(old, "identity", None) != getattr(gen, "identity", None):
            self.entries = [e for e in self.entries if e.running]
            self.current, self.pinned, self._shifts = None, [], {}
            self.images = {}
            self.imagesChanged.emit()
            self.undo_stack.clear()
            self.setsChanged.emit()
            self.currentChanged.emit()
            self.activeChanged.emit()
        self.modelChanged.emit()

    # ---- classes (class-conditional models) ------------------------------------------------------
    def set_class(self, class_index: int | None) -> None:
        """Show seeds of ``class_index`` (checked against the model); emits ``classChanged``."""
        gen = self.gen
        if gen is None or not gen.num_classes:
            class_index = None
        elif class_index is not None and not 0 <= int(class_index) < gen.num_classes:
            raise AtlasError(
                f"class {class_index} is out of range: model '{gen.name}' has classes 0..{gen.num_classes - 1}"
            )
        if class_index == self.class_index:
            return
        self.class_index = None if class_index is None else int(class_index)
        self.classChanged.emit()

    def conditioned_gen(self):
        """The generator as jobs should see it: a view on the class shown (weights shared), or the generator."""
        if self.gen is not None and self.gen.num_classes and self.class_index is not None:
            return self.gen.conditioned(classes=[self.class_index])
        return self.gen

    def _adopt_set_class(self) -> None:
        """When another set becomes current, show it on the class it was found on (the user may change it)."""
        entry = self.current[0] if self.current else None
        if entry is None or entry.uid == self._class_set_uid:
            return
        self._class_set_uid = entry.uid
        found_on = entry.dset.classes
        if found_on and self.gen is not None and self.gen.num_classes and self.class_index not in found_on:
            if found_on[0] < self.gen.num_classes:
                self.set_class(found_on[0])

    # ---- projected images ------------------------------------------------------------------------
    def add_image(self, lat) -> str:
        """Add a projected image (``engine.latents.Latent``, checked against the model) as a seed;
        returns its seed name (written ``@name`` in the seed fields)."""
        if self.gen is not None:
            lat.check_fits(self.gen)
        stem = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in lat.name).strip("_") or "image"
        name, i = stem, 2
        while name in self.images and self.images[name] is not lat:
            name, i = f"{stem}_{i}", i + 1
        self.images[name] = lat
        lat.seed_name = name
        self.imagesChanged.emit()
        return name

    # ---- sets --------------------------------------------------------------------------------
    def check_fits(self, dset: DirectionSet) -> str:
        """Raise ``AtlasError`` if the set cannot be applied to the loaded model; return a warning
        (or ``""``) if it was found on another model but fits."""
        gen = self.gen
        if gen is None:
            return ""
        where = dset.path.name if dset.path else dset.title
        for k, d in enumerate(dset.directions):
            if d.kind == "latent":
                dims = {"z": gen.z_dim, "w": gen.w_dim, "w+": gen.w_dim}
                if d.space not in gen.spaces:
                    raise AtlasError(f"{where}: direction {k} lives in space {d.space}, which {gen.name} does not have")
                if d.vector is not None and d.vector.shape[-1] != dims[d.space]:
                    raise AtlasError(
                        f"{where}: direction {k} has {d.vector.shape[-1]} dimensions but {gen.name}'s "
                        f"{d.space} has {dims[d.space]}"
                    )
            elif d.layer not in {i.name for i in gen.editable_layers()}:
                raise AtlasError(f"{where}: direction {k} shifts layer {d.layer}, which {gen.name} does not have")
        ident = dset.model.get("identity")
        if ident and gen.identity and ident != gen.identity:
            return f"found on {dset.model.get('name', 'another model')}, not on {gen.name}"
        return ""

    def add_set(self, dset: DirectionSet, *, running: bool = False, status: str = "") -> SetEntry:
        """Add a set (checked against the model); an already open file is returned as is."""
        if dset.path is not None:
            for e in self.entries:
                if e.dset.path is not None and Path(e.dset.path).resolve() == Path(dset.path).resolve():
                    return e
        entry = SetEntry(dset, running=running, status=status)
        entry.foreign = self.check_fits(dset)
        self.entries.append(entry)
        self.setsChanged.emit()
        return entry

    def remove_set(self, entry: SetEntry) -> None:
        if entry not in self.entries:
            return
        self.entries.remove(entry)
        self.pinned = [(e, k) for e, k in self.pinned if e is not entry]
        if self.current and self.current[0] is entry:
            self.current = None
            self.currentChanged.emit()
        # undo history of a closed set would write to a file no longer shown
        self.undo_stack.clear()
        self.setsChanged.emit()
        self.activeChanged.emit()

    def replace_partial(self, entry: SetEntry, dset: DirectionSet, status: str) -> None:
        """A running discovery delivered a newer partial result for ``entry``."""
        entry.dset = dset
        entry.status = status
        if self.current and self.current[0] is entry and self.current[1] >= len(dset):
            self.current = None
            self.currentChanged.emit()
        self.setUpdated.emit(entry)
        if any(e is entry for e, _ in self.active()):  # the preview shows one of its directions
            self.activeChanged.emit()

    def finish(self, entry: SetEntry, dset: DirectionSet | None, status: str = "") -> None:
        """The discovery producing ``entry`` ended (``dset``: its final, saved set, or None)."""
        if dset is not None:
            entry.dset = dset
        entry.running = False
        entry.status = status
        self.setUpdated.emit(entry)
        self.activeChanged.emit()

    def entry_for(self, uid: int) -> SetEntry | None:
        return next((e for e in self.entries if e.uid == uid), None)

    # ---- current and active directions ---------------------------------------------------------
    def select(self, entry: SetEntry | None, k: int = -1) -> None:
        new = (entry, k) if entry is not None and 0 <= k < len(entry.dset) else None
        if new == self.current:
            return
        self.current = new
        self._adopt_set_class()
        self.currentChanged.emit()
        self.activeChanged.emit()

    def current_direction(self) -> Direction | None:
        return self.current[0].direction(self.current[1]) if self.current else None

    def is_pinned(self, entry: SetEntry, k: int) -> bool:
        return any(e is entry and j == k for e, j in self.pinned)

    def pin(self, entry: SetEntry, k: int, on: bool = True) -> None:
        if on and not self.is_pinned(entry, k):
            self.pinned.append((entry, k))
        elif not on:
            self.pinned = [(e, j) for e, j in self.pinned if not (e is entry and j == k)]
        self.activeChanged.emit()

    def active(self) -> list[tuple[SetEntry, int]]:
        """Directions with a slider on the preview: the pinned ones, then the current one."""
        out = [(e, k) for e, k in self.pinned if k < len(e.dset)]
        if self.current and not self.is_pinned(*self.current):
            out.append(self.current)
        return out

    def shift(self, entry: SetEntry, k: int) -> float:
        return self._shifts.get((entry.uid, k), 0.0)

    def set_shift(self, entry: SetEntry, k: int, t: float) -> None:
        if self._shifts.get((entry.uid, k), 0.0) == t:
            return
        self._shifts[(entry.uid, k)] = float(t)
        self.shiftsChanged.emit()

    def reset_shifts(self) -> None:
        self._shifts.clear()
        self.shiftsChanged.emit()

    def active_shifts(self) -> list[tuple[Direction, float]]:
        """``(direction, t)`` of every active direction with a non-zero shift."""
        out = []
        for e, k in self.active():
            t = self.shift(e, k)
            if t != 0.0:
                out.append((e.direction(k), t))
        return out

    # ---- annotations -------------------------------------------------------------------------
    def annotate(self, entry: SetEntry, k: int, field_name: str, value: Any) -> None:
        """Change one annotation field through the undo stack (saved to disk at once)."""
        if field_name not in ANNOTATION_FIELDS:
            raise ValueError(f"unknown annotation field {field_name!r}")
        if not entry.editable:
            self.saveFailed.emit(f"{entry.title} is still being computed; annotate it when the discovery has finished")
            return
        ann = entry.direction(k).annotation
        if getattr(ann, field_name) == value:
            return
        probe = Annotation(**{**ann.__dict__, field_name: _copy(value)})
        probe.validate(f"direction {k}")
        self.undo_stack.push(AnnotateCommand(self, entry, k, field_name, value))

    def _apply(self, entry: SetEntry, k: int, field_name: str, value: Any) -> None:
        setattr(entry.direction(k).annotation, field_name, _copy(value))
        try:
            entry.dset.save_annotations()
        except (OSError, AtlasError) as exc:
            self.saveFailed.emit(f"could not save {entry.title}: {one_line(exc)}")
        self.annotationChanged.emit(entry, k)
