"""torch checkpoint files: the one reader of what ``torch.save`` writes, and the checks around it.

A hostile file must be refused fast and in memory bounded by its size, and loading may never run
code from it, so nothing here trusts a size the file declares and nothing calls ``torch.load``.

**Reading.** ``open_torch_file(path, what=...)`` parses either container ``torch.save`` writes:

* **zip** (torch >= 1.6): ``<prefix>/data.pkl`` plus one record ``<prefix>/data/<key>`` per
  storage; every record must be stored uncompressed, as ``torch.save`` writes them (a deflated
  record could inflate a thousandfold);
* **legacy stream** (torch < 1.6, and ``_use_new_zipfile_serialization=False``): five pickles
  (magic number, protocol version, system info, the object, the storage keys), then each storage
  as an int64 element count and its raw little-endian bytes.

The object pickle is scanned (``pickles.scan_pickle``: opcode budget, memo indices in sequence),
then read by ``TorchUnpickler``, whose allow-list (``TORCH_GLOBALS``) holds what a
``torch.load(weights_only=True)`` of a checkpoint needs: containers (``OrderedDict``, ``set``),
``torch.Size`` / ``device`` / dtypes, the storage type names and the tensor rebuild functions, each
an inert stand-in (and, asked for, ``argparse.Namespace``: rosinality's ``args``). A tensor becomes a
``TensorRef``: its storage, offset, shape and strides, *declared, not read*. Before anything is
read, every storage is located in the file and checked against the bytes really there, every
tensor against its storage (no view reaching past it, no stride-0 broadcast of one value to a
huge shape, no more elements than it holds), and all tensors together against the file's size
(``TorchFile.stats``).

**Tensors.** ``TensorRef.read()`` reads one tensor's bytes from the file into memory of its own,
once (aligned, compact, owned). Nothing is memory-mapped: what is read is kept by a model, and a
model holding mapped pages would crash (SIGBUS) when a training run rewrites the file in place;
reading only what is kept makes mapping pointless for the rest. ``materialize(obj)`` reads every tensor of ``obj``, each storage once, shared as in the file
(``read_torch_file`` = open + materialize). Loaders read only what they keep (``g_ema``, not the
discriminator or the optimiser states) and fill their model with ``load_into``, one tensor at a
time: loading holds the model plus one tensor. ``TensorRef`` answers ``shape``, ``dtype``,
``dim()``, ``numel()``, indexing by integers and ``reshape`` without reading anything, so converters
work on declared tensors as on real ones.

NVIDIA snapshots store each storage as a legacy stream of its own (``storage_from_bytes``, read
by the same parser); their pickle is read by ``nvidia_pkl``.

**Probes.** ``inspect_torch_file(path)`` reads a file's structure once (cached per file version,
shared by every format probe): for a zip, its directory and the opcodes of ``data.pkl``; for a
legacy stream, the opcodes of its pickles. ``check_model_size`` refuses an architecture whose
weights outnumber the numbers in the file, before the model is built.
"""

from __future__ import annotations

import argparse
import collections
import io
import math
import struct
import threading
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from engine.checkpoints.pickles import (
    BadPickleData,
    FileBytes,
    Frozen,
    Inert,
    RestrictedUnpickler,
    Sealed,
    Window,
    file_errors,
    scan_pickle,
    short_reason,
)
from engine.errors import CheckpointError

# The data.pkl of a torch file (names, shapes, storage ids) has a few thousand opcodes (8,000 for
# a rosinality train.py checkpoint with its optimiser states); torch's own weights-only unpickler
# takes about 6 us per opcode, ours about as much.
MAX_TORCH_PICKLE_OPS = 200_000
MAX_PICKLE_BYTES = 32 << 20
MAX_ZIP_ENTRIES = 100_000
MAX_DEPTH = 64  # containers nested in a checkpoint's object
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
}


def _itemsize(dtype: torch.dtype) -> int:
    return dtype.itemsize


# ---- where a storage's bytes are -------------------------------------------------------------------


class FileSource:
    """Bytes of a file on disk, read on demand (the file is opened for each read)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read_into(self, offset: int, out: memoryview) -> None:
        with open(self.path, "rb") as f:
            f.seek(offset)
            n = f.readinto(out)
        if n != len(out):
            raise CheckpointError(f"{self.path}: truncated: {len(out):,} bytes at offset {offset:,} are missing")


class BytesSource:
    """Bytes already in memory (a small storage payload of an NVIDIA pickle)."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path = data, path

    def read_into(self, offset: int, out: memoryview) -> None:
        part = memoryview(self.data)[offset : offset + len(out)]
        if len(part) != len(out):
            raise CheckpointError(f"{self.path}: truncated: {len(out):,} bytes at offset {offset:,} are missing")
        out[:] = part


def _read_flat(source: FileSource | BytesSource, offset: int, numel: int, dtype: torch.dtype) -> torch.Tensor:
    """``numel`` elements of ``dtype`` at byte ``offset`` of ``source``, in a fresh tensor."""
    flat = torch.empty(numel, dtype=dtype)
    if numel:
        source.read_into(offset, memoryview(flat.view(torch.uint8).numpy()).cast("B"))
    return flat


# ---- storages and tensors, declared by the file, not yet read ------------------------------------------


class Storage(Frozen):
    """A storage the file declares: its key, dtype and element count; ``locate`` says where its
    bytes are, once they are checked to be there."""

    __slots__ = ("key", "dtype", "numel", "source", "offset")

    def __init__(self, key: str, dtype: torch.dtype, numel: int) -> None:
        for name, value in (("key", key), ("dtype", dtype), ("numel", numel), ("source", None), ("offset", -1)):
            object.__setattr__(self, name, value)

    @property
    def nbytes(self) -> int:
        return self.numel * _itemsize(self.dtype)

    def locate(self, source: FileSource | BytesSource, offset: int) -> None:
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "offset", offset)

    def read(self) -> torch.Tensor:
        """The whole storage as a flat tensor of its own."""
        if self.source is None:
            raise BadPickleData(f"storage {self.key} has no data in the file")
        return _read_flat(self.source, self.offset, self.numel, self.dtype)

    def __repr__(self) -> str:
        return f"Storage({self.key!r}, {self.dtype}, {self.numel})"


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, acc = [], 1
    for s in reversed(shape):
        strides.append(acc)
        acc *= max(s, 1)
    return tuple(reversed(strides))


class TensorRef(Frozen):
    """A tensor the file declares: ``storage``, element ``offset``, ``shape`` and ``strides``.

    Nothing is read until ``read()``. ``problem()`` says what is wrong with its layout (checked
    for every tensor before anything is read). Answers like a tensor for ``shape``, ``dtype``,
    ``dim()``, ``numel()``, ``is_floating_point()``, integer indexing and ``reshape``.
    """

    __slots__ = ("storage", "offset", "shape", "strides")

    def __init__(self, storage: Storage, offset: int, shape: tuple[int, ...], strides: tuple[int, ...]) -> None:
        object.__setattr__(self, "storage", storage)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "shape", torch.Size(shape))
        object.__setattr__(self, "strides", tuple(strides))

    @property
    def dtype(self) -> torch.dtype:
        return self.storage.dtype

    def dim(self) -> int:
        return len(self.shape)

    def numel(self) -> int:
        return math.prod(self.shape)

    def element_size(self) -> int:
        return _itemsize(self.dtype)

    @property
    def nbytes(self) -> int:
        return self.numel() * self.element_size()

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def is_contiguous(self) -> bool:
        want = 1
        for s, st in zip(reversed(self.shape), reversed(self.strides), strict=True):
            if s != 1 and st != want:
                return False
            want *= s
        return True

    def problem(self) -> str | None:
        """Why this tensor cannot be read from its storage (``"of shape [..] ..."``), or ``None``."""
        n, numel, shape = self.storage.numel, self.numel(), list(self.shape)
        if not numel:
            return None
        last = self.offset + sum((s - 1) * st for s, st in zip(self.shape, self.strides, strict=True))
        if last >= n:
            return f"of shape {shape[:8]} is a view reaching past its storage of {n:,} elements"
        if any(s > 1 and st == 0 for s, st in zip(self.shape, self.strides, strict=True)):
            more = f" and has more elements than its storage of {n:,}, far larger than its storage" if numel > n else ""
            return (
                f"of shape {shape[:8]} repeats one stored value (stride 0){more}: a tiny file posing as a large model"
            )
        if numel > n - self.offset:
            have = n * self.element_size()
            return (
                f"of shape {shape[:8]} needs {(self.offset + numel) * self.element_size():,} bytes but its storage "
                f"has {have:,} (more elements than its storage holds)"
            )
        return None

    def __getitem__(self, index: int | tuple[int, ...]) -> TensorRef:
        index = index if isinstance(index, tuple) else (index,)
        if len(index) > self.dim() or not all(type(i) is int for i in index):
            raise IndexError(f"index {index} of a {self.dim()}-d tensor")
        offset = self.offset
        for d, i in enumerate(index):
            size = self.shape[d]
            if not -size <= i < size:
                raise IndexError(f"index {i} is out of bounds for dimension {d} with size {size}")
            offset += (i % size) * self.strides[d]
        k = len(index)
        return TensorRef(self.storage, offset, tuple(self.shape[k:]), self.strides[k:])

    def reshape(self, *shape: Any) -> TensorRef | torch.Tensor:
        if len(shape) == 1 and isinstance(shape[0], (list, tuple, torch.Size)):
            shape = tuple(shape[0])
        if not all(type(s) is int for s in shape) or shape.count(-1) > 1:
            raise RuntimeError(f"invalid shape {list(shape)}")
        n = self.numel()
        if -1 in shape:
            known = math.prod(s for s in shape if s != -1)
            if known == 0 or n % known:
                raise RuntimeError(f"shape {list(shape)} is invalid for input of size {n}")
            shape = tuple(n // known if s == -1 else s for s in shape)
        if math.prod(shape) != n or any(s < 0 for s in shape):
            raise RuntimeError(f"shape {list(shape)} is invalid for input of size {n}")
        if not self.is_contiguous():
            return self.read().reshape(shape)
        return TensorRef(self.storage, self.offset, shape, _contiguous_strides(shape))

    def read(self) -> torch.Tensor:
        """The tensor's elements read from the file into a compact tensor of its own."""
        if not self.numel():
            return torch.empty(self.shape, dtype=self.dtype)
        problem = self.problem()
        if problem is not None or self.storage.source is None:
            where = self.storage.source.path if self.storage.source is not None else "a checkpoint"
            raise CheckpointError(f"{where}: refused: a tensor {problem or 'whose storage has no data'}")
        last = self.offset + sum((s - 1) * st for s, st in zip(self.shape, self.strides, strict=True))
        flat = _read_flat(
            self.storage.source,
            self.storage.offset + self.offset * self.element_size(),
            last - self.offset + 1,
            self.dtype,
        )
        t = flat.as_strided(self.shape, self.strides, 0)
        return t if t.is_contiguous() and flat.numel() == t.numel() else t.contiguous()

    def __repr__(self) -> str:
        return f"TensorRef({list(self.shape)}, {str(self.dtype).removeprefix('torch.')})"


def read_tensor(x: Any) -> Any:
    """``x.read()`` for a ``TensorRef``; anything else as it is."""
    return x.read() if isinstance(x, TensorRef) else x


def all_finite(t: torch.Tensor) -> bool:
    """No NaN or infinity in ``t`` (``torch.isfinite(t).all()`` without its temporaries, which are
    larger than ``t`` itself: the minimum and maximum propagate NaN)."""
    if not t.is_floating_point() or not t.numel():
        return True
    lo, hi = torch.aminmax(t)
    return math.isfinite(float(lo)) and math.isfinite(float(hi))


def is_tensor(x: Any) -> bool:
    """A tensor, read (``torch.Tensor``) or declared (``TensorRef``)."""
    return isinstance(x, (torch.Tensor, TensorRef))


# ---- the unpickler's stand-ins -------------------------------------------------------------------------


class StorageType(Frozen):
    """Stands in for ``torch.FloatStorage`` & co.: only its name and dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", dtype)

    def __call__(self, *args: Any) -> Any:
        raise BadPickleData(f"a call of torch.{self.name}")


class _TensorClass(Frozen):
    """Stands in for ``torch.Tensor`` / ``torch.nn.Parameter`` as the type argument of a rebuild."""

    __slots__ = ()

    def __call__(self, *args: Any) -> Any:
        raise BadPickleData("a call of a tensor class")


class _OrderedDict(collections.OrderedDict, metaclass=Sealed):
    """Stands in for ``collections.OrderedDict`` (a state dict); instances may carry ``_metadata``."""


class _Namespace(argparse.Namespace, metaclass=Sealed):
    """Stands in for ``argparse.Namespace`` (rosinality train.py's ``args``): plain attributes."""


def _int(x: Any, what: str) -> int:
    if type(x) is not int:  # bool is not a size
        raise BadPickleData(f"a tensor with a malformed {what}")
    return x


def rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> TensorRef:
    """``torch._utils._rebuild_tensor(_v2)`` as a declared tensor: the arguments are type-checked
    here; where the view lies in its storage is checked by ``TensorRef.problem``."""
    if not isinstance(storage, Storage):
        raise BadPickleData("a tensor whose storage is not a storage record")
    if not isinstance(size, (tuple, list)) or not isinstance(stride, (tuple, list)):
        raise BadPickleData("a tensor with a malformed shape")
    if len(size) != len(stride) or len(size) > 16:
        raise BadPickleData("a tensor with a malformed shape")
    offset = _int(offset, "offset")
    size = tuple(_int(s, "shape") for s in size)
    stride = tuple(_int(s, "stride") for s in stride)
    if offset < 0 or any(s < 0 for s in size + stride):
        raise BadPickleData("a tensor with a negative shape, stride or offset")
    return TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data: Any, *_rest: Any) -> TensorRef:
    if not isinstance(data, TensorRef):
        raise BadPickleData("a parameter that is not a tensor")
    return data


_TENSOR_CLASS = _TensorClass()


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> TensorRef:
    if new_type is not _TENSOR_CLASS or not isinstance(args, tuple) or state not in (None, {}):
        raise BadPickleData("a tensor of a subclass or with attributes")
    if not isinstance(func, Inert) or func not in (_REBUILD, _REBUILD_PARAMETER):
        raise BadPickleData("a tensor rebuilt by an unknown function")
    return func(*args)


def _latin1(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode(text, "latin1")``: how protocol 2 stores ``bytes``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise BadPickleData("a call of _codecs.encode that is not bytes")
    return text.encode("latin1")


_REBUILD = Inert(rebuild_tensor)
_REBUILD_PARAMETER = Inert(_rebuild_parameter)

TORCH_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("_codecs", "encode"): Inert(_latin1),
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch", "Tensor"): _TENSOR_CLASS,
    ("torch.nn.parameter", "Parameter"): _TENSOR_CLASS,
    ("torch._utils", "_rebuild_tensor"): _REBUILD,
    ("torch._utils", "_rebuild_tensor_v2"): _REBUILD,
    ("torch._utils", "_rebuild_parameter"): _REBUILD_PARAMETER,
    ("torch._utils", "_rebuild_parameter_with_state"): _REBUILD_PARAMETER,
    ("torch._tensor", "_rebuild_from_type_v2"): Inert(_rebuild_from_type_v2),
    **{("torch", name): StorageType(name, dt) for name, dt in STORAGE_DTYPES.items()},
    **{("torch", str(dt).removeprefix("torch.")): dt for dt in set(STORAGE_DTYPES.values())},
}


# rosinality's train.py saves its command line: ``args`` is an ``argparse.Namespace`` of plain values
WITH_NAMESPACE: dict[tuple[str, str], Any] = {**TORCH_GLOBALS, ("argparse", "Namespace"): _Namespace}


class TorchUnpickler(RestrictedUnpickler):
    """Resolves only ``allowed`` (``TORCH_GLOBALS`` by default); storages (persistent ids) become
    ``Storage`` records, collected in ``storages`` (``None``: a pickle that may not name storages)."""

    def __init__(
        self,
        file: BinaryIO,
        path: Path,
        storages: dict[str, Storage] | None,
        what: str = "the file",
        allowed: Mapping[tuple[str, str], Any] = TORCH_GLOBALS,
    ):
        super().__init__(file, path, allowed, what=what)
        self.storages = storages

    def persistent_load(self, pid: Any) -> Storage:
        if self.storages is None:
            raise BadPickleData("a storage outside the object pickle")
        if not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] not in ("storage", b"storage"):
            raise BadPickleData("a persistent id that is not a storage")
        stype, key, _location, numel = pid[1:5]
        if len(pid) == 6 and pid[5] is not None:
            raise BadPickleData("a storage view (not written by torch >= 0.4)")
        if not isinstance(stype, StorageType):
            raise BadPickleData("a storage of an unknown type")
        if isinstance(key, bytes):
            key = key.decode("ascii", "replace")
        if not isinstance(key, str) or not 0 < len(key) <= 64:
            raise BadPickleData("a storage with a malformed key")
        numel = _int(numel, "storage size")
        if numel < 0:
            raise BadPickleData("a storage of negative size")
        st = self.storages.get(key)
        if st is None:
            st = self.storages[key] = Storage(key, stype.dtype, numel)
        elif st.dtype != stype.dtype or st.numel != numel:
            raise BadPickleData(f"storage {key} declared twice with different types or sizes")
        return st


# ---- the two containers --------------------------------------------------------------------------------


def parse_legacy(
    f: BinaryIO | Window,
    end: int,
    path: Path,
    source: FileSource | BytesSource,
    *,
    max_ops: int = MAX_TORCH_PICKLE_OPS,
    what: str = "the file",
    allowed: Mapping[tuple[str, str], Any] = TORCH_GLOBALS,
) -> tuple[Any, dict[str, Storage]]:
    """The object of the legacy ``torch.save`` stream at ``f`` (ending at ``end``; a ``Window`` when
    data follows it), its storages located in ``source`` (whose positions are ``f``'s) and checked
    to lie before ``end``."""

    def one(storages: dict[str, Storage] | None = None) -> Any:
        start = f.tell()
        try:  # opcode budget, memo indices in sequence (the C unpickler sizes its memo by the largest)
            scan_pickle(f, where=str(path), max_ops=max_ops, end=end)
        except CheckpointError as exc:
            reason = str(exc).split(": ", 1)[-1].removeprefix("refused: ")
            raise BadPickleData(f"a pickle refused unread ({reason})") from None
        f.seek(start)
        return TorchUnpickler(f, path, storages, what, allowed).load()

    magic = one()
    if type(magic) is not int or magic != LEGACY_MAGIC:
        raise BadPickleData("no torch magic number at the start")
    protocol = one()
    if type(protocol) is not int or protocol != LEGACY_PROTOCOL:
        raise BadPickleData("an unknown torch file protocol")
    info = one()
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise BadPickleData("storages that are not little-endian")
    storages: dict[str, Storage] = {}
    obj = one(storages)
    keys = one()
    if not isinstance(keys, list) or any(not isinstance(k, str) for k in keys):
        raise BadPickleData("storage keys that are not a list of names")
    if len(set(keys)) != len(keys) or sorted(keys) != sorted(storages):
        raise BadPickleData("a storage list that does not match the object's storages")
    pos = f.tell()
    for key in keys:
        st = storages[key]
        if pos + 8 + st.nbytes > end:
            raise CheckpointError(
                f"{path}: truncated: storage {key} needs {st.nbytes:,} bytes at offset {pos + 8:,}, reaching past the "
                f"end of the file ({end:,} bytes)"
            )
        f.seek(pos)
        (count,) = struct.unpack("<q", f.read(8))
        if count != st.numel:
            raise BadPickleData(
                f"storage {key} whose element count differs from its header ({count:,} stored, {st.numel:,} declared)"
            )
        st.locate(source, pos + 8)
        pos += 8 + st.nbytes
    f.seek(pos)
    return obj, storages


def _parse_zip(path: Path, size: int, allowed: Mapping[tuple[str, str], Any]) -> tuple[Any, dict[str, Storage]]:
    storages: dict[str, Storage] = {}
    with zipfile.ZipFile(path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        pkls = [n for n in infos if n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1)]
        if len(pkls) != 1:
            raise BadPickleData("a zip archive without one data.pkl")
        prefix = pkls[0][: -len("data.pkl")]
        order = infos.get(prefix + "byteorder")
        if order is not None and zf.read(order) != b"little":
            raise BadPickleData("storages that are not little-endian")
        data = zf.read(infos[pkls[0]])  # its size and opcodes were checked by inspect_torch_file
        obj = TorchUnpickler(io.BytesIO(data), path, storages, allowed=allowed).load()
        source = FileSource(path)
        with open(path, "rb") as fh:
            for key, st in storages.items():
                info = infos.get(f"{prefix}data/{key}")
                if info is None:
                    raise BadPickleData(f"no record for storage {key}")
                fh.seek(info.header_offset)
                head = fh.read(30)
                if len(head) != 30 or head[:4] != b"PK\x03\x04":
                    raise BadPickleData(f"a damaged local header for storage {key}")
                name_len, extra_len = struct.unpack("<HH", head[26:30])
                offset = info.header_offset + 30 + name_len + extra_len
                if info.file_size < st.nbytes or offset + st.nbytes > size:
                    raise CheckpointError(
                        f"{path}: truncated or damaged: storage {key} needs {st.nbytes:,} bytes, its record has "
                        f"{info.file_size:,}"
                    )
                st.locate(source, offset)
    total = sum(st.nbytes for st in storages.values())
    if total > size:
        raise BadPickleData(f"storages of {total:,} bytes in all, more than the file's {size:,} (overlapping records)")
    return obj, storages


def storage_from_bytes(payload: Any, path: Path) -> Storage:
    """``torch.storage._load_from_bytes``: one storage from the bytes ``torch.save(storage,
    _use_new_zipfile_serialization=False)`` wrote (how NVIDIA snapshots store every storage).

    ``payload`` is ``bytes`` or ``FileBytes`` (left in the file by the unpickler); either way it is
    parsed as a legacy stream whose object is one storage filling the rest of the payload exactly.
    The storage is declared, not read (``TensorRef.read`` reads what is used).
    """
    if isinstance(payload, FileBytes):
        with open(payload.path, "rb") as fh:
            end = payload.offset + payload.length
            obj, storages = parse_legacy(
                Window(fh, payload.offset, end),
                end,
                path,
                FileSource(payload.path),
                max_ops=256,
                what="a storage payload",
            )
    elif isinstance(payload, (bytes, bytearray)):
        data = bytes(payload)
        f, end = io.BytesIO(data), len(data)
        obj, storages = parse_legacy(f, end, path, BytesSource(data, path), max_ops=256, what="a storage payload")
    else:
        raise BadPickleData("a storage payload that is not bytes")
    if not isinstance(obj, Storage) or list(storages.values()) != [obj]:
        raise BadPickleData("a storage payload that does not describe one storage")
    if obj.offset + obj.nbytes != end:
        raise BadPickleData(f"a storage of {obj.numel:,} elements stored in {end - obj.offset:,} bytes")
    return obj


# ---- the reader -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorStats:
    """The tensors of a checkpoint: how many, their elements and bytes."""

    count: int
    numel: int
    nbytes: int


@dataclass(frozen=True)
class TorchFile:
    """A parsed torch file: ``obj`` as saved, with ``TensorRef`` leaves (checked, not read)."""

    path: Path
    size: int
    kind: str
    obj: Any
    stats: TensorStats


def open_torch_file(path: str | Path, *, what: str = "torch checkpoint", namespaces: bool = False) -> TorchFile:
    """Parse and check ``path`` (see the module doc); nothing of its tensors is read yet.

    ``namespaces`` also allows ``argparse.Namespace`` (plain attributes: rosinality's ``args``), which
    ``torch.load(weights_only=True)`` refuses. Raises ``UnsafePickleError`` for a file that references
    anything else and ``CheckpointError``
    (naming the file and ``what`` it should be, e.g. "rosinality StyleGAN2 checkpoint") for
    anything damaged, truncated, malformed or larger than the file.
    """
    path = Path(path)
    allowed = WITH_NAMESPACE if namespaces else TORCH_GLOBALS
    info = inspect_torch_file(path)
    if info.problem is not None and info.kind != "legacy":
        raise CheckpointError(f"{path}: {info.problem}")
    with file_errors(path, what):  # a legacy stream is parsed pickle by pickle, the first problem in it named
        if info.kind == "zip":
            obj, _ = _parse_zip(path, info.size, allowed)
        elif info.kind == "legacy":
            with open(path, "rb") as fh:
                obj, _ = parse_legacy(fh, info.size, path, FileSource(path), allowed=allowed)
        else:
            raise BadPickleData("not a torch checkpoint: neither a torch zip archive nor a legacy torch.save stream")
        stats = _check_tensors(obj, path, info.size)
    return TorchFile(path, info.size, info.kind, obj, stats)


def materialize(obj: Any, *, path: str | Path = "") -> Any:
    """``obj`` with every ``TensorRef`` read: each storage once, tensors viewing it as in the file.

    Dicts come back as ``dict`` (``OrderedDict`` stays one), lists and tuples as themselves, a
    ``Namespace`` as an ``argparse.Namespace``.
    """
    flats: dict[int, torch.Tensor] = {}

    def tensor(ref: TensorRef) -> torch.Tensor:
        if not ref.numel():
            return torch.empty(ref.shape, dtype=ref.dtype)
        st = ref.storage
        if id(st) not in flats:
            flats[id(st)] = st.read()
        return flats[id(st)].as_strided(ref.shape, ref.strides, ref.offset)

    def walk(x: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise CheckpointError(f"{path}: refused: containers nested more than {MAX_DEPTH} deep")
        if isinstance(x, TensorRef):
            return tensor(x)
        if isinstance(x, argparse.Namespace):
            return argparse.Namespace(**{k: walk(v, depth + 1) for k, v in vars(x).items()})
        if isinstance(x, collections.OrderedDict):
            return collections.OrderedDict((k, walk(v, depth + 1)) for k, v in x.items())
        if isinstance(x, dict):
            return {k: walk(v, depth + 1) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v, depth + 1) for v in x]
        if isinstance(x, tuple):
            return tuple(walk(v, depth + 1) for v in x)
        return x

    return walk(obj, 0)


def read_torch_file(path: str | Path, *, what: str = "torch checkpoint") -> Any:
    """The object saved in ``path`` by ``torch.save``, tensors read (``open_torch_file`` +
    ``materialize``): what ``torch.load(weights_only=True)`` returns, without running anything."""
    tf = open_torch_file(path, what=what)
    return materialize(tf.obj, path=tf.path)


def _check_tensors(obj: Any, path: Path, file_size: int) -> TensorStats:
    """Every ``TensorRef`` in ``obj`` (nested dicts, lists, tuples, sets, ``Namespace``) checked
    against its storage (``TensorRef.problem``), and all of them together against the file."""
    nodes = (dict, list, tuple, set, frozenset, argparse.Namespace, TensorRef)
    seen: set[int] = set()
    stack: list[tuple[str, Any, int]] = [("", obj, 0)]
    count = numel = nbytes = 0
    while stack:
        name, x, depth = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if depth > MAX_DEPTH:
            raise CheckpointError(f"{path}: refused: containers nested more than {MAX_DEPTH} deep")
        if isinstance(x, TensorRef):
            problem = x.problem()
            if problem is not None:
                raise CheckpointError(f"{path}: refused: {(name or 'a tensor')[:120]} {problem}")
            count, numel, nbytes = count + 1, numel + x.numel(), nbytes + x.nbytes
            continue
        if isinstance(x, argparse.Namespace):
            items = vars(x).items()
        elif isinstance(x, dict):
            items = x.items()
        elif isinstance(x, (set, frozenset)):
            items = (("", v) for v in x)
        else:
            items = enumerate(x)
        # only containers and tensors are visited (a list of a million numbers costs no names)
        stack.extend((_child(name, k), v, depth + 1) for k, v in items if isinstance(v, nodes))
    if nbytes > file_size:
        raise CheckpointError(
            f"{path}: refused: its tensors declare {nbytes:,} bytes but the file has {file_size:,} "
            "(more elements than the file holds: tensors sharing or re-reading the same data)"
        )
    return TensorStats(count, numel, nbytes)


def _child(name: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{name}[{key}]"
    key = key if isinstance(key, str) else type(key).__name__
    return f"{name}.{key[:60]}" if name else key[:60]


def tensor_stats(tensors: Mapping[str, Any]) -> TensorStats:
    """``TensorStats`` of the tensors (read or declared) among ``tensors``' values."""
    ts = [t for t in tensors.values() if is_tensor(t)]
    return TensorStats(len(ts), sum(t.numel() for t in ts), sum(t.numel() * t.element_size() for t in ts))


def check_model_size(needed: int, stats: TensorStats, path: str | Path, what: str, slack: int = 1 << 16) -> None:
    """Refuse building a model of ``needed`` weights from a file holding ``stats.numel`` numbers.

    Every weight of a converted model comes from the file, so a larger architecture means its
    shapes were read from a few small tensors; ``slack`` covers buffers we compute ourselves.
    """
    if needed > stats.numel + slack:
        raise CheckpointError(
            f"{path}: refused: the {what} its shapes describe has {needed:,} weights, but the file holds only "
            f"{stats.numel:,} numbers"
        )


# ---- filling a model ------------------------------------------------------------------------------------


class StateMismatch(ValueError):
    """A state dict that does not fit a model: missing or unexpected keys, a wrong shape."""


def load_into(module: torch.nn.Module, state: Mapping[str, Any]) -> None:
    """``module.load_state_dict(state, strict=True)``, one tensor at a time.

    ``state`` holds tensors or ``TensorRef``s. Keys and shapes are checked first (``StateMismatch``
    names the first differences); then each entry is read, cast to the dtype of the parameter or
    buffer it replaces and swapped in, and the module's own tensor is released: loading holds the
    module plus one tensor, and the module owns its weights (a tensor used twice is copied).
    """
    own = module.state_dict(keep_vars=True)
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing or extra:
        parts = [f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"] if missing else []
        parts += [f"unexpected {', '.join(map(str, extra[:3]))}{' ...' if len(extra) > 3 else ''}"] if extra else []
        raise StateMismatch("; ".join(parts))
    for k, t in own.items():
        v = state[k]
        if not is_tensor(v):
            raise StateMismatch(f"{k} is a {type(v).__name__}, not a tensor")
        if tuple(v.shape) != tuple(t.shape):
            raise StateMismatch(f"size mismatch for {k}: the file has {list(v.shape)}, the model {list(t.shape)}")
    used: set[int] = set()
    with torch.no_grad():
        for k, t in own.items():
            v = state[k]
            if isinstance(v, TensorRef):
                t.data = torch.empty(0, dtype=t.dtype, device=t.device)  # release first: the read reuses its memory
                new = v.read()
            else:
                new = v.detach()
            new = new.to(device=t.device, dtype=t.dtype)
            ptr = new.untyped_storage().data_ptr()
            compact = new.is_contiguous() and new.untyped_storage().nbytes() == new.numel() * new.element_size()
            if not compact or (ptr and ptr in used):
                new = new.clone(memory_format=torch.contiguous_format)
                ptr = new.untyped_storage().data_ptr()
            used.add(ptr)
            t.data = new


# ---- one look per file, shared by every probe ----------------------------------------------------------


@dataclass(frozen=True)
class TorchFileInfo:
    """The structure of a torch checkpoint file, read once.

    ``kind``: ``"zip"`` (torch >= 1.6), ``"legacy"`` (older ``torch.save`` stream) or ``"other"``.
    ``strings``: the string constants of the object pickle (dict keys, class names), ``None``
    when it could not be read. ``problem``: why loading it is refused (``None`` if it may load).
    """

    size: int
    kind: str
    strings: frozenset[str] | None
    problem: str | None


_CACHE: collections.OrderedDict[tuple, TorchFileInfo] = collections.OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 8


def inspect_torch_file(path: str | Path) -> TorchFileInfo:
    """``TorchFileInfo`` of ``path``; the same file (path, size, mtime, inode) is read only once."""
    path = Path(path)
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    except OSError as exc:
        return TorchFileInfo(0, "other", None, f"cannot read the file ({exc.strerror or exc})")
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    info = _inspect(path, st.st_size)
    with _CACHE_LOCK:
        _CACHE[key] = info
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return info


def _inspect(path: Path, size: int) -> TorchFileInfo:
    try:
        if size == 0:
            return TorchFileInfo(size, "other", None, "the file is empty")
        with open(path, "rb") as f:
            head = f.read(16)
        if zipfile.is_zipfile(path):
            return _inspect_zip(path, size)
        if head.startswith(b"\x80\x02\x8a\x0a"):  # PROTO 2, LONG1 of 10 bytes: the legacy magic number
            return _inspect_legacy(path, size)
    except CheckpointError as exc:
        return TorchFileInfo(size, "other", None, str(exc).split(": ", 1)[-1])
    except Exception as exc:  # noqa: BLE001 - zipfile raises many kinds (NotImplementedError for odd versions)
        return TorchFileInfo(size, "other", None, f"damaged or truncated ({short_reason(exc)})")
    return TorchFileInfo(size, "other", None, None)


def _inspect_zip(path: Path, size: int) -> TorchFileInfo:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            return TorchFileInfo(size, "zip", None, f"refused: an archive of {len(infos):,} entries")
        packed = [i.filename for i in infos if i.compress_type != zipfile.ZIP_STORED]
        if packed:
            return TorchFileInfo(
                size,
                "zip",
                None,
                f"refused unread: archive entry {packed[0]} is compressed, which torch.save never does "
                "(a compressed record can inflate far beyond the file)",
            )
        if sum(i.file_size for i in infos) > size:
            return TorchFileInfo(size, "zip", None, "refused: its archive entries declare more bytes than the file has")
        pkls = [i for i in infos if i.filename == "data.pkl" or i.filename.endswith("/data.pkl")]
        if len(pkls) != 1:
            return TorchFileInfo(size, "zip", None, "not a torch checkpoint archive (it needs exactly one data.pkl)")
        if pkls[0].file_size > MAX_PICKLE_BYTES:
            return TorchFileInfo(size, "zip", None, f"refused: {pkls[0].filename} is over {MAX_PICKLE_BYTES >> 20} MB")
        data = zf.read(pkls[0])
    scan = scan_pickle(data, where=pkls[0].filename, strings=True, max_ops=MAX_TORCH_PICKLE_OPS)
    return TorchFileInfo(size, "zip", scan.strings, None)


def _inspect_legacy(path: Path, size: int) -> TorchFileInfo:
    # magic number, protocol version, system info, the object, the storage keys; then raw storages
    found: frozenset[str] = frozenset()
    try:
        with open(path, "rb") as fh:
            for i in range(5):
                scan = scan_pickle(
                    fh, where="the pickle stream", strings=i == 3, max_ops=MAX_TORCH_PICKLE_OPS, end=size
                )
                found |= scan.strings
    except CheckpointError as exc:
        return TorchFileInfo(size, "legacy", None, str(exc).split(": ", 1)[-1])
    return TorchFileInfo(size, "legacy", found, None)


def pickle_strings(path: str | Path) -> frozenset[str] | None:
    """The string constants of a torch file's object pickle (dict keys, class names...), or ``None``.

    Parses opcodes without executing anything, once per file (see ``inspect_torch_file``).
    """
    return inspect_torch_file(path).strings


def refusal(path: str | Path) -> str | None:
    """Why ``path``, a torch file, is refused before loading (compressed records, budgets...), or ``None``."""
    return inspect_torch_file(path).problem


def head_contains(path: str | Path, needles: tuple[bytes, ...], size: int = 1 << 20) -> bool:
    """True if the first ``size`` bytes hold every needle.

    A torch zip stores ``data.pkl`` first and uncompressed, so a damaged or truncated archive
    whose central directory is gone can still be recognised (and then reported as damaged).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(size)
    except OSError:
        return False
    return all(n in head for n in needles)


# ---- messages about values read from a file -------------------------------------------------------------


def show(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages about values read from a file
    (safe for anything: a deeply nested list or an int too long to print)."""
    if isinstance(value, (list, tuple, dict, set)) and len(value) > 8:
        return f"a {type(value).__name__} of {len(value)} items"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - e.g. RecursionError, or the int digit limit
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def state_tensor(
    sd: Mapping, key: str, ndim: int | tuple[int, ...], path: str | Path, where: str = ""
) -> torch.Tensor | TensorRef:
    """``sd[key]`` if it is a floating-point tensor (read or declared) of ``ndim`` dimensions, else
    ``CheckpointError``."""
    t = sd.get(key)
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    label = f"{where}{key}"
    if t is None:
        raise CheckpointError(f"{path}: {label} is missing")
    if not is_tensor(t):
        raise CheckpointError(f"{path}: {label} is a {type(t).__name__}, not a tensor")
    if t.dim() not in ndims or not t.is_floating_point():
        raise CheckpointError(
            f"{path}: {label} is a {t.dim()}-d {str(t.dtype).removeprefix('torch.')} tensor "
            f"{list(t.shape)[:8]}; expected a {' or '.join(map(str, ndims))}-d floating-point one"
        )
    return t
