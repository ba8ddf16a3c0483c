"""Pickles read without running them: an opcode scan within budgets, and an allow-list unpickler.

Every checkpoint format we read is a pickle, or holds pickles: torch files (``torchfile``) and
NVIDIA snapshots (``nvidia_pkl``). Both read them with the pieces here:

* ``scan_pickle`` walks the opcodes of one pickle without executing them, within an operation
  budget, and refuses memo indices out of sequence (CPython's C unpickler sizes its memo to twice
  the largest index a file names: a 9-byte pickle would cost it gigabytes). It runs before any
  unpickling.
* ``RestrictedUnpickler`` (the pure-Python unpickler, whose memo is a dict) resolves only the
  globals of an allow-list, each to an inert stand-in of ours; any other global raises
  ``UnsafePickleError`` naming it *when its name is read*, before anything could call it. Byte
  strings of ``large_bytes`` or more that lie outside pickle frames are not read: the unpickler
  leaves them in the file as ``FileBytes`` (offset and length), so an NVIDIA snapshot's tensor
  payloads are never held in memory as ``bytes`` (see ``torchfile.storage_from_bytes``).
* ``Window`` is a view of ``[start, end)`` of a binary file (a pickle inside a file, such as a
  storage payload); no read through it asks for more than the bytes left in the window.
* ``Sealed`` / ``Frozen`` / ``Inert``: stand-in classes, objects and functions that a pickle's
  BUILD cannot alter.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import pickletools
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from engine.errors import CheckpointError, UnsafePickleError

# A real NVIDIA snapshot has tens of thousands of opcodes (23,000 for a 64 px one with G, D and
# G_ema; a 1024 px one about twice that). Scanning takes about 0.7 us per opcode; each opcode
# creates at most one object, so the budget also bounds what unpickling can allocate.
MAX_PICKLE_OPS = 500_000

_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})


class BadPickleData(Exception):
    """The pickle is well-formed but holds something our inert stand-ins do not accept."""


def short_reason(exc: BaseException, limit: int = 160) -> str:
    """``"Type: first sentence of the message"`` for one-line error reports."""
    try:
        text = str(exc).strip()
    except Exception:  # noqa: BLE001 - e.g. an int too large to print
        text = ""
    msg = text.splitlines()[0] if text else ""
    if len(msg) > limit and ". " in msg:
        msg = msg[: msg.index(". ") + 1]
    return f"{exc.__class__.__name__}: {msg[:limit]}" if msg else exc.__class__.__name__


@contextmanager
def file_errors(path: Path, what: str) -> Iterator[None]:
    """Whatever reading ``path`` (which should be ``what``, e.g. "NVIDIA snapshot") raises, as one line
    naming it: ``UnsafePickleError`` / ``CheckpointError`` as they are, ``BadPickleData`` and any
    other parse failure as "not a readable <what> (why)", ``OSError`` as "cannot read the file"."""
    try:
        yield
    except CheckpointError:
        raise
    except BadPickleData as exc:
        raise CheckpointError(f"{path}: not a readable {what} ({exc})") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the file ({short_reason(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - any other parse failure is the file's fault
        raise CheckpointError(f"{path}: not a readable {what}, damaged or truncated? ({short_reason(exc)})") from None


class Window:
    """Reads ``[start, end)`` of a binary file; positions are the file's. A read never asks the
    file for more than the bytes left before ``end`` (a pickle declaring a 4 GB string must not
    make the reader allocate 4 GB)."""

    def __init__(self, f: BinaryIO, start: int, end: int) -> None:
        self.f, self.end = f, end
        f.seek(start)

    def _left(self, n: int | None) -> int:
        left = max(0, self.end - self.f.tell())
        return left if n is None or n < 0 else min(n, left)

    def read(self, n: int = -1) -> bytes:
        return self.f.read(self._left(n))

    def readline(self, limit: int = -1) -> bytes:
        return self.f.readline(self._left(limit))

    def tell(self) -> int:
        return self.f.tell()

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.f.seek(pos, whence)


@dataclass(frozen=True)
class PickleScan:
    """What ``scan_pickle`` saw: where the pickle ends, how many opcodes, its string constants."""

    end: int
    ops: int
    strings: frozenset[str]


def scan_pickle(
    data: bytes | BinaryIO,
    start: int = 0,
    *,
    where: str,
    max_ops: int = MAX_PICKLE_OPS,
    strings: bool = False,
    end: int | None = None,
) -> PickleScan:
    """Walk the opcodes of the pickle at ``data[start:]`` up to its STOP, executing nothing.

    ``data`` is bytes, or a binary file positioned at the pickle (``start`` is then ignored and
    the file is left after the STOP; ``end``: where its data ends, by default a ``Window``'s end).
    A declared length beyond the data is a short read, hence a refusal. Raises
    ``CheckpointError`` (``where: refused: ...``) for a malformed pickle, more than ``max_ops``
    opcodes, a memo index beyond the next free one (pickle writers number their memo entries in
    sequence; the C unpickler sizes its memo to twice the largest index), a read of a memo entry
    never written, or a frame longer than the data.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        f, total = io.BytesIO(data), len(data)
        f.seek(start)
    else:
        f, total = data, end if end is not None else getattr(data, "end", None)
    memo = ops = 0
    found: set[str] = set()
    try:
        for op, arg, _ in pickletools.genops(f):
            ops += 1
            if ops > max_ops:
                raise CheckpointError(f"{where}: refused: more than {max_ops:,} pickle operations")
            name = op.name
            if name in _PUTS:
                if not 0 <= arg <= memo:
                    raise CheckpointError(f"{where}: refused: pickle memo index {arg} out of sequence (next is {memo})")
                memo = max(memo, arg + 1)
            elif name == "MEMOIZE":
                memo += 1
            elif name in _GETS:
                if not 0 <= arg < memo:
                    raise CheckpointError(f"{where}: refused: pickle reads memo entry {arg}, never written")
            elif name == "FRAME":
                if total is not None and arg > total - f.tell():
                    raise CheckpointError(f"{where}: refused: a pickle frame longer than the file")
            elif strings and isinstance(arg, str):
                found.add(arg)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - genops names what is malformed
        raise CheckpointError(f"{where}: not a readable pickle, damaged or truncated? ({short_reason(exc)})") from None
    return PickleScan(f.tell(), ops, frozenset(found))


# ---- stand-ins a pickle cannot alter ------------------------------------------------------------


class Sealed(type):
    """Metaclass of stand-in classes: a pickle's BUILD cannot set attributes on them."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise BadPickleData(f"an attempt to modify {cls.__name__}")


class Frozen:
    """Base of stand-in objects (with ``__slots__``) that BUILD cannot alter; set fields with
    ``object.__setattr__`` in ``__init__``."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise BadPickleData(f"an attempt to modify a {type(self).__name__}")

    def __setstate__(self, state: Any) -> None:
        raise BadPickleData(f"an attempt to modify a {type(self).__name__}")


class Inert(Frozen):
    """A stand-in function as an object without attributes, so BUILD cannot alter it
    (a bare function would accept e.g. a new ``__defaults__``)."""

    __slots__ = ("_fn",)

    def __init__(self, fn) -> None:
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


class FileBytes(Frozen):
    """A byte string of a pickle left in its file: ``length`` bytes at ``offset`` of ``path``."""

    __slots__ = ("path", "offset", "length")

    def __init__(self, path: Path, offset: int, length: int) -> None:
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "length", length)

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.length)
        if len(data) != self.length:
            raise CheckpointError(f"{self.path}: truncated: {self.length} bytes at offset {self.offset} are missing")
        return data


def as_bytes(value: Any) -> bytes | None:
    """The bytes of ``value`` (``bytes``, ``bytearray`` or ``FileBytes``), ``None`` for anything else."""
    if isinstance(value, FileBytes):
        return value.read()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return None


# ---- the unpickler --------------------------------------------------------------------------------


class RestrictedUnpickler(pickle._Unpickler):
    """The pure-Python unpickler, resolving only the globals of ``allowed`` (to our stand-ins).

    ``what`` names the pickle in refusals ("the file", "a storage payload"). With ``large_bytes``,
    byte strings of at least that many bytes outside frames become ``FileBytes`` of ``path``
    (``file`` must then read ``path`` itself, whose data ends at ``end``). Persistent ids are
    refused unless a subclass overrides ``persistent_load``. Unpickle only what ``scan_pickle``
    passed: its budgets bound what this builds.
    """

    def __init__(
        self,
        file: BinaryIO | Window,
        path: Path,
        allowed: Mapping[tuple[str, str], Any],
        *,
        what: str = "the file",
        large_bytes: int | None = None,
        end: int | None = None,
    ) -> None:
        super().__init__(file)
        self.path, self.allowed, self.what = path, allowed, what
        self._file, self._large, self._end = file, large_bytes, end

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 spellings (``__builtin__.set``) as the stock unpickler translates them
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        found = self.allowed.get((module, name))
        if found is not None:
            return found
        raise self.refusal(module, name)

    def refusal(self, module: str, name: str) -> UnsafePickleError:
        return UnsafePickleError(
            f"{self.path}: refused to load: {self.what} references '{module[:80]}.{name[:80]}', which is not on "
            "the allow-list of data types (loading it could run code from the file)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise BadPickleData("a persistent id, which this kind of file does not use")

    def _bytes(self, n: int, kind: type) -> None:
        if self._large is not None and n >= self._large and self._unframer.current_frame is None:
            start = self._file.tell()
            if self._end is None or start + n > self._end:
                raise BadPickleData(f"a byte string of {n:,} bytes running past the end of the file")
            self._file.seek(start + n)
            self.append(FileBytes(self.path, start, n))
            return
        data = self.read(n)
        if len(data) != n:
            raise BadPickleData(f"a byte string of {n:,} bytes running past the end of the pickle")
        self.append(data if kind is bytes else bytearray(data))

    def _load_binbytes(self) -> None:
        self._bytes(struct.unpack("<I", self.read(4))[0], bytes)

    def _load_binbytes8(self) -> None:
        self._bytes(struct.unpack("<Q", self.read(8))[0], bytes)

    def _load_bytearray8(self) -> None:
        self._bytes(struct.unpack("<Q", self.read(8))[0], bytearray)

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BINBYTES[0]] = _load_binbytes
    dispatch[pickle.BINBYTES8[0]] = _load_binbytes8
    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8
