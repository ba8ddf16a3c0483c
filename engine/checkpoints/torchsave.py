"""Read ``torch.save`` files of plain tensors without running code, in memory bounded by the file.

``read_torch_file(path)`` returns the saved object (dicts, lists, tuples, numbers, strings and
tensors) from either container ``torch.save`` writes:

* **legacy stream** (the default before torch 1.6, and ``_use_new_zipfile_serialization=False``):
  five pickles (magic number, protocol version, system info, the object, the storage keys), then
  each storage as an int64 element count followed by its raw little-endian bytes;
* **zip** (torch >= 1.6): ``<prefix>/data.pkl`` plus one uncompressed record
  ``<prefix>/data/<key>`` per storage.

The object pickle is read by ``SafeUnpickler``, whose ``find_class`` resolves only
``collections.OrderedDict``, the ``torch.*Storage`` type names and ``torch._utils``'
``_rebuild_tensor_v2`` / ``_rebuild_parameter``, each to an inert stand-in; any other global
(``os.system``, ``builtins.eval``...) raises ``UnsafePickleError`` when its name is read, before
anything could call it. The pickles are parsed by the pure-Python unpickler (see
``SafeUnpickler``) from a memory map, so no read is larger than the file. Tensor records are checked against their storage's declared size, every
storage against the bytes the file really has, and the tensors' total size against the storages'
(so a file cannot ask for more memory than it holds). Each storage is read once into its own
tensor: reading costs the storages' bytes, at most the file's size.
"""

from __future__ import annotations

import collections
import io
import math
import mmap
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.checkpoints.torchfile import short_reason
from engine.errors import CheckpointError, UnsafePickleError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_MAX_PICKLE_BYTES = 64 << 20  # a state dict's structure; real ones are kilobytes
_MAX_DEPTH = 64

_STORAGE_DTYPES = {
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
}


class BadTorchData(Exception):
    """The pickle is well-formed but holds something the stand-ins refuse."""


# ---- inert stand-ins ------------------------------------------------------------------------


class _Sealed(type):
    """Metaclass of the stand-in classes: a pickle's BUILD cannot set attributes on them."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise BadTorchData(f"an attempt to modify {cls.__name__}")


class _OrderedDict(collections.OrderedDict, metaclass=_Sealed):
    """Stands in for ``collections.OrderedDict`` (a state dict); instances may carry ``_metadata``."""


class _Frozen:
    """Base of stand-in objects that BUILD cannot alter (no ``__dict__``, no setattr)."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise BadTorchData("an attempt to modify a loader object")

    def __setstate__(self, state: Any) -> None:
        raise BadTorchData("an attempt to modify a loader object")


class _StorageType(_Frozen):
    __slots__ = ("dtype", "name")

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", dtype)

    def __call__(self, *args: Any) -> Any:
        raise BadTorchData(f"a call of torch.{self.name}")


class _Function(_Frozen):
    __slots__ = ("_fn",)

    def __init__(self, fn) -> None:
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


@dataclass(eq=False)
class _Storage:
    """A storage as the pickle declares it; ``flat`` is filled in once its bytes are located."""

    key: str
    dtype: torch.dtype
    numel: int
    flat: torch.Tensor | None = None


@dataclass(eq=False)
class _PendingTensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.size)


def _as_int(x: Any, what: str) -> int:
    if type(x) is not int:  # bool is not a size
        raise BadTorchData(f"a tensor with a malformed {what}")
    return x


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> _PendingTensor:
    if not isinstance(storage, _Storage):
        raise BadTorchData("a tensor whose storage is not a storage record")
    if not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride) or len(size) > 16:
        raise BadTorchData("a tensor with a malformed shape")
    offset = _as_int(offset, "offset")
    size = tuple(_as_int(s, "shape") for s in size)
    stride = tuple(_as_int(s, "stride") for s in stride)
    if offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise BadTorchData("a tensor with a negative shape, stride or offset")
    n = math.prod(size)
    if n and offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True)) >= storage.numel:
        raise BadTorchData(f"a tensor of shape {list(size)} reaching past its storage of {storage.numel} elements")
    if n > storage.numel:
        raise BadTorchData(f"a tensor of shape {list(size)} larger than its storage of {storage.numel} elements")
    return _PendingTensor(storage, offset, size, stride)


def _rebuild_parameter(data: Any, *rest: Any) -> _PendingTensor:
    if not isinstance(data, _PendingTensor):
        raise BadTorchData("a parameter that is not a tensor")
    return data


ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _Function(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): _Function(_rebuild_parameter),
    **{("torch", name): _StorageType(name, dt) for name, dt in _STORAGE_DTYPES.items()},
}


class SafeUnpickler(pickle._Unpickler):
    """Resolves only ``ALLOWED`` globals; storages become ``_Storage`` records (see module doc).

    Built on the pure-Python unpickler: its memo is a dict, whereas the C unpickler grows an array
    to the largest memo index a file names, so a 9-byte pickle (``LONG_BINPUT 2**31``) would make
    it allocate and clear 16 GB.
    """

    def __init__(self, file, path: Path, storages: dict[str, _Storage] | None) -> None:
        super().__init__(file)
        self.path = path
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        found = ALLOWED.get((module, name))
        if found is not None:
            return found
        raise UnsafePickleError(
            f"{self.path}: refused to load: the file references '{module}.{name}', which is not a tensor or plain "
            "data type (loading it could run code from the file)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if self.storages is None:
            raise BadTorchData("a persistent id outside the object pickle")
        if not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] not in ("storage", b"storage"):
            raise BadTorchData("a persistent id that is not a storage")
        stype, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(stype, _StorageType):
            raise BadTorchData("a storage of an unknown type")
        if isinstance(key, bytes):
            key = key.decode("ascii", "replace")
        if not isinstance(key, str) or len(key) > 64:
            raise BadTorchData("a storage with a malformed key")
        numel = _as_int(numel, "storage size")
        if numel < 0:
            raise BadTorchData("a storage of negative size")
        st = self.storages.get(key)
        if st is None:
            st = self.storages[key] = _Storage(key, stype.dtype, numel)
        elif st.dtype != stype.dtype or st.numel != numel:
            raise BadTorchData(f"storage {key} declared twice with different types or sizes")
        if view is not None:
            raise BadTorchData("a storage view (not written by torch >= 0.4 state dicts)")
        return st


# ---- containers ---------------------------------------------------------------------------


def _unpickle(f, path: Path, storages: dict[str, _Storage] | None) -> Any:
    return SafeUnpickler(f, path, storages).load()


def _read_storages(path: Path, located: list[tuple[_Storage, int]]) -> None:
    """Read each storage's bytes at its offset into a fresh tensor ``st.flat`` (offsets and sizes
    already checked against the file; together they hold at most the file's size)."""
    with open(path, "rb") as fh:
        for st, offset in located:
            flat = torch.empty(st.numel, dtype=st.dtype)
            raw = flat.view(torch.uint8).numpy() if st.numel else None
            fh.seek(offset)
            if raw is not None and fh.readinto(memoryview(raw)) != raw.nbytes:
                raise CheckpointError(f"{path}: truncated: storage {st.key} ends past the end of the file")
            st.flat = flat


def _read_legacy(path: Path, size: int) -> tuple[Any, dict[str, _Storage]]:
    storages: dict[str, _Storage] = {}
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as f:
        # reading from the map (not a buffered file) means no read is ever larger than the file
        if _unpickle(f, path, None) != LEGACY_MAGIC:
            raise BadTorchData("no torch magic number at the start")
        if _unpickle(f, path, None) != LEGACY_PROTOCOL:
            raise BadTorchData("an unknown torch file protocol")
        info = _unpickle(f, path, None)
        if not isinstance(info, dict) or info.get("little_endian") is not True:
            raise BadTorchData("storages that are not little-endian")
        obj = _unpickle(f, path, storages)
        keys = _unpickle(f, path, None)
        pos = f.tell()
    if not isinstance(keys, list) or any(not isinstance(k, str) for k in keys) or sorted(keys) != sorted(storages):
        raise BadTorchData("a storage list that does not match the object's storages")
    offsets = []
    for key in keys:
        st = storages[key]
        elsize = torch.empty(0, dtype=st.dtype).element_size()
        if pos + 8 > size:
            raise CheckpointError(f"{path}: truncated: the file ends before storage {key}")
        offsets.append(pos + 8)
        pos += 8 + st.numel * elsize
        if pos > size:
            raise CheckpointError(
                f"{path}: truncated: storage {key} needs {st.numel * elsize} bytes at offset {offsets[-1]}, "
                f"the file has {size} bytes"
            )
    with open(path, "rb") as fh:
        for key, off in zip(keys, offsets, strict=True):
            fh.seek(off - 8)
            (n,) = struct.unpack("<q", fh.read(8))
            if n != storages[key].numel:
                raise BadTorchData(f"storage {key} holds {n} elements, its record says {storages[key].numel}")
    _read_storages(path, [(storages[k], off) for k, off in zip(keys, offsets, strict=True)])
    return obj, storages


def _read_zip(path: Path, size: int) -> tuple[Any, dict[str, _Storage]]:
    storages: dict[str, _Storage] = {}
    with zipfile.ZipFile(path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        pkls = [n for n in infos if n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1)]
        if len(pkls) != 1:
            raise BadTorchData("a zip archive without one data.pkl")
        prefix = pkls[0][: -len("data.pkl")]
        for info in infos.values():
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
                raise BadTorchData(f"a compressed or oversized record {info.filename}")
        pkl = infos[pkls[0]]
        if pkl.file_size > _MAX_PICKLE_BYTES:
            raise BadTorchData("an object pickle of more than 64 MB")
        order = infos.get(prefix + "byteorder")
        if order is not None and zf.read(order) != b"little":
            raise BadTorchData("storages that are not little-endian")
        obj = _unpickle(io.BytesIO(zf.read(pkl)), path, storages)
        offsets = {}
        with open(path, "rb") as fh:
            for key, st in storages.items():
                info = infos.get(f"{prefix}data/{key}")
                if info is None:
                    raise BadTorchData(f"no record for storage {key}")
                fh.seek(info.header_offset)
                head = fh.read(30)
                if len(head) != 30 or head[:4] != b"PK\x03\x04":
                    raise BadTorchData(f"a damaged local header for storage {key}")
                name_len, extra_len = struct.unpack("<HH", head[26:30])
                offsets[key] = info.header_offset + 30 + name_len + extra_len
                elsize = torch.empty(0, dtype=st.dtype).element_size()
                if info.file_size < st.numel * elsize or offsets[key] + st.numel * elsize > size:
                    raise CheckpointError(
                        f"{path}: truncated or damaged: storage {key} needs {st.numel * elsize} bytes, "
                        f"its record has {info.file_size}"
                    )
    total = sum(st.numel * torch.empty(0, dtype=st.dtype).element_size() for st in storages.values())
    if total > size:
        raise BadTorchData(f"storages of {total} bytes in all, more than the file's {size} (overlapping records)")
    _read_storages(path, [(st, offsets[key]) for key, st in storages.items()])
    return obj, storages


def _resolve(obj: Any, depth: int = 0) -> Any:
    """Replace the pending tensor records in ``obj`` by tensors viewing their storages."""
    if depth > _MAX_DEPTH:
        raise BadTorchData(f"containers nested more than {_MAX_DEPTH} deep")
    if isinstance(obj, _PendingTensor):
        flat = obj.storage.flat
        return flat.as_strided(obj.size, obj.stride, obj.offset) if obj.numel else flat.new_zeros(obj.size)
    if isinstance(obj, dict):
        return {k: _resolve(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [_resolve(v, depth + 1) for v in obj]
        return items if isinstance(obj, list) else tuple(items)
    return obj


def _tensor_budget(obj: Any, storages: dict[str, _Storage]) -> None:
    """Refuse tensors that together ask for more elements than the file's storages hold."""
    total, stack, seen = 0, [(obj, 0)], 0
    while stack:
        o, depth = stack.pop()
        seen += 1
        if depth > _MAX_DEPTH:
            raise BadTorchData(f"containers nested more than {_MAX_DEPTH} deep")
        if isinstance(o, _PendingTensor):
            total += o.numel
        elif isinstance(o, dict):
            stack.extend((v, depth + 1) for v in o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend((v, depth + 1) for v in o)
    if total > sum(s.numel for s in storages.values()):
        raise BadTorchData("tensors that share storage beyond its size (more elements than the file holds)")


def read_torch_file(path: str | Path, *, what: str = "torch") -> Any:
    """The object saved in ``path`` by ``torch.save``, tensors included, without running code.

    Tensors are CPU tensors viewing storages read from the file. Raises ``UnsafePickleError`` for a file
    that references any code, ``CheckpointError`` (naming the file, and ``what`` it should be)
    for anything damaged, truncated or malformed.
    """
    path = Path(path)
    try:
        size = os.path.getsize(path)
        if size == 0:
            raise CheckpointError(f"{path}: the file is empty")
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head[:2] == b"PK" and zipfile.is_zipfile(path):
            obj, storages = _read_zip(path, size)
        elif head[:1] == b"\x80":
            obj, storages = _read_legacy(path, size)
        else:
            raise BadTorchData("neither a torch zip archive nor a legacy torch.save stream")
        _tensor_budget(obj, storages)
        return _resolve(obj)
    except (UnsafePickleError, CheckpointError):
        raise
    except BadTorchData as exc:
        raise CheckpointError(f"{path}: not a readable {what} file ({exc})") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the file ({short_reason(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - any other parse failure is the file's fault
        raise CheckpointError(
            f"{path}: not a readable {what} file, damaged or truncated? ({short_reason(exc)})"
        ) from None
