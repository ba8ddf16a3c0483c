"""Export writers: every file type the program writes images and videos in, registered by name.

A writer is one module that calls ``register_writer(Writer(...))``; the command line
(``main.py render`` / ``export``: ``--out`` suffixes, ``--format``) and the editor's export
dialog (file filters, the batch format list) list this registry, so a new format needs no edit
anywhere else. The built-in writers (``engine.writers.image``: PNG and JPEG; ``mp4``; ``gif``)
are imported the first time the registry is asked (as ``engine.catalog`` is for models); a
writer from elsewhere registers when its module is imported.

Two kinds:

* ``image``: a still (one picture, a seed mosaic or a direction grid): ``save(image, path)``
  with ``image`` uint8 ``[H, W, 3]``;
* ``video``: the frames of a morph: ``open(path, fps) -> FrameSink``; the sink gets uint8
  ``[H, W, 3]`` frames (both sides even) with ``add`` and is ``close``d at the end, or
  ``abort``ed when the export stops (the caller then removes the file).

Nothing here imports torch, numpy or an encoder: writers import theirs when they write.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from engine.errors import AtlasError, BadValueError

KINDS = ("image", "video")


class FrameSink(Protocol):
    """Where a video writer's frames go (``Writer.open``)."""

    def add(self, frame: Any) -> None: ...  # uint8 [H, W, 3], both sides even

    def close(self) -> None: ...  # all frames given: finish the file

    def abort(self) -> None: ...  # the export stopped: release the encoder (the file is removed after)


@dataclass(frozen=True)
class Writer:
    """One file type: ``name`` (``--format``), ``suffixes`` (the first is used for new files),
    ``kind`` (``image`` or ``video``), a one-line ``summary``, and ``save`` (images) or ``open``
    (videos). ``holds_frames``: the video's frames all stay in memory until it is closed, so the
    command line bounds frames x size first."""

    name: str
    suffixes: tuple[str, ...]
    kind: str
    summary: str
    save: Callable[[Any, Path], None] | None = None
    open: Callable[[Path, float], FrameSink] | None = None
    holds_frames: bool = False  # a video writer that keeps every frame in memory until close (GIF)

    @property
    def suffix(self) -> str:
        return self.suffixes[0]

    @property
    def pattern(self) -> str:
        """A file-dialog filter: ``MP4 (*.mp4)``."""
        return f"{self.summary} ({' '.join('*' + s for s in self.suffixes)})"


BUILTIN = ("image", "mp4", "gif")  # modules of engine.writers, imported (registering themselves) in this order
_WRITERS: dict[str, Writer] = {}
_BUILTINS_LOADED = False


def _builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        for name in BUILTIN:
            importlib.import_module(f"engine.writers.{name}")


def register_writer(writer: Writer) -> Writer:
    """Add ``writer``; a name or suffix already taken, a bad kind or a missing function is a ``ValueError``."""
    if writer.kind not in KINDS:
        raise ValueError(f"writer '{writer.name}': kind must be one of {', '.join(KINDS)}, not {writer.kind!r}")
    if not writer.suffixes or any(not s.startswith(".") or s != s.lower() for s in writer.suffixes):
        raise ValueError(f"writer '{writer.name}': suffixes must be lower-case and start with '.'")
    if (writer.kind == "image") != (writer.save is not None) or (writer.kind == "video") != (writer.open is not None):
        raise ValueError(f"writer '{writer.name}': an image writer has save, a video writer has open")
    if writer.name in _WRITERS:
        raise ValueError(f"writer '{writer.name}' registered twice")
    taken = {s: w.name for w in _WRITERS.values() for s in w.suffixes}
    for s in writer.suffixes:
        if s in taken:
            raise ValueError(f"writer '{writer.name}': suffix {s} is already written by '{taken[s]}'")
    _WRITERS[writer.name] = writer
    return writer


def writers(kind: str | None = None) -> list[Writer]:
    """The registered writers (of ``kind``), in registration order."""
    _builtins()
    return [w for w in _WRITERS.values() if kind is None or w.kind == kind]


def suffixes(kind: str | None = None) -> tuple[str, ...]:
    """Every suffix the writers (of ``kind``) write."""
    return tuple(s for w in writers(kind) for s in w.suffixes)


def get_writer(name: str) -> Writer:
    """The writer called ``name`` (``--format``); ``BadValueError`` listing the valid names."""
    _builtins()
    key = str(name).lower().lstrip(".")
    if key not in _WRITERS:
        raise BadValueError(f"format '{name}': choose one of {', '.join(_WRITERS)}")
    return _WRITERS[key]


def writer_for(path: str | Path, kind: str | None = None) -> Writer:
    """The writer of ``path``'s suffix (of ``kind``); ``AtlasError`` naming the file and the valid suffixes."""
    path = Path(path)
    suffix = path.suffix.lower()
    for w in writers(kind):
        if suffix in w.suffixes:
            return w
    what = {"image": "an image", "video": "a video", None: "an export"}[kind]
    raise AtlasError(f"{path}: {what} file must end with one of {', '.join(suffixes(kind))}")


def describe(kind: str) -> str:
    """``.mp4 or .gif``: the suffixes of ``kind``'s writers, for help texts and messages."""
    names = [w.suffix for w in writers(kind)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
