"""torch's legacy (pre-1.6, non-zip) ``torch.save`` container, read without running its pickles.

Layout (``torch/serialization.py``, ``_legacy_save``): five pickles, then the raw storages::

    pickle 1   the magic number 0x1950a86a20f9469cfc6c
    pickle 2   the protocol version 1001
    pickle 3   sys_info {"protocol_version", "little_endian", "type_sizes"}
    pickle 4   the object (e.g. a state dict); every storage is a persistent id
               ("storage", <torch.XStorage>, key, location, numel, view_metadata) and every tensor
               a REDUCE of torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)
    pickle 5   the storage keys, in the order their data follows
    then, per key: int64 little-endian element count, then count * itemsize bytes

``read_legacy(path)`` parses the pickles with an unpickler whose only globals are inert stand-ins
(``collections.OrderedDict``, the storage type names, ``_rebuild_tensor_v2`` /
``_rebuild_parameter``), checks that every declared storage fits in the file *before* touching its
data, and maps the storages from the file (``numpy.memmap``, copy-on-write): loading never runs code
from the file and never holds more than the file's own bytes. Anything else raises
``CheckpointError`` naming the file.
"""

from __future__ import annotations

import collections
import math
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.checkpoints.torchfile import scan_pickle
from engine.errors import CheckpointError, UnsafePickleError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
MAX_PICKLE_OPS = 4_000_000  # a state dict needs ~30 opcodes per tensor
MAX_DEPTH = 32  # nesting of containers in the loaded object

# torch.<Name>Storage -> (torch dtype, numpy dtype it is read as)
_STORAGES: dict[str, tuple[torch.dtype, np.dtype]] = {
    "FloatStorage": (torch.float32, np.dtype("<f4")),
    "DoubleStorage": (torch.float64, np.dtype("<f8")),
    "HalfStorage": (torch.float16, np.dtype("<f2")),
    "BFloat16Storage": (torch.bfloat16, np.dtype("<i2")),  # numpy has no bfloat16: bits, then a view
    "LongStorage": (torch.int64, np.dtype("<i8")),
    "IntStorage": (torch.int32, np.dtype("<i4")),
    "ShortStorage": (torch.int16, np.dtype("<i2")),
    "CharStorage": (torch.int8, np.dtype("i1")),
    "ByteStorage": (torch.uint8, np.dtype("u1")),
    "BoolStorage": (torch.bool, np.dtype("u1")),
}


class _Bad(Exception):
    """The container is well-formed pickle data but not what a legacy torch file holds."""


class StorageType:
    """Stands in for ``torch.FloatStorage`` & co: only its name and dtype."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)

    def __setattr__(self, key: str, value: Any) -> None:
        raise _Bad("an attempt to modify a storage type")


class StorageRef:
    """A storage declared in the object pickle; its data follows the pickles."""

    __slots__ = ("key", "dtype", "numel")

    def __init__(self, key: str, dtype: str, numel: int) -> None:
        self.key, self.dtype, self.numel = key, dtype, numel


class TensorRef:
    """A tensor view of a declared storage, bounds-checked when it is made."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: StorageRef, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class _Inert:
    """A stand-in function as an object without attributes (a pickle's BUILD cannot alter it)."""

    __slots__ = ("_fn",)

    def __init__(self, fn) -> None:
        object.__setattr__(self, "_fn", fn)

    def __setattr__(self, name: str, value: Any) -> None:
        raise _Bad("an attempt to modify a loader function")

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


def _ints(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise _Bad(f"a tensor whose {what} is not a list of integers")
    return tuple(values)


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> TensorRef:
    if not isinstance(storage, StorageRef):
        raise _Bad("a tensor whose storage is not a declared storage")
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise _Bad("a tensor with a non-integer storage offset")
    size, stride = _ints(size, "shape"), _ints(stride, "stride")
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size + stride):
        raise _Bad("a tensor with a malformed shape")
    if math.prod(size) and offset + sum((s - 1) * st for s, st in zip(size, stride)) >= storage.numel:
        raise _Bad(f"a tensor of shape {list(size)} reaching past its storage of {storage.numel} elements")
    return TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data: Any, *_rest: Any) -> Any:
    if not isinstance(data, TensorRef):
        raise _Bad("a parameter that is not a tensor")
    return data


def _ordered_dict(*args: Any) -> collections.OrderedDict:
    if args:
        raise _Bad("an OrderedDict built from arguments")
    return collections.OrderedDict()


_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _Inert(_ordered_dict),
    ("torch._utils", "_rebuild_tensor_v2"): _Inert(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): _Inert(_rebuild_parameter),
    **{("torch", name): StorageType(name) for name in _STORAGES},
}


class _Unpickler(pickle.Unpickler):
    """Resolves only ``_GLOBALS``; storages become ``StorageRef`` records (declared, not read)."""

    def __init__(self, file, path: Path, storages: dict[str, StorageRef] | None) -> None:
        super().__init__(file)
        self.path = path
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        found = _GLOBALS.get((module, name))
        if found is None:
            raise UnsafePickleError(
                f"{self.path}: refused to load: the checkpoint references '{module}.{name}', which is not on "
                "the allow-list of tensor data types (loading it could run code from the file)"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        if self.storages is None:
            raise _Bad("a storage outside the object pickle")
        if not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage":
            raise _Bad("a persistent id that is not a storage")
        _, stype, key, _location, numel = pid[:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(stype, StorageType) or not isinstance(key, str) or view is not None:
            raise _Bad("a storage of an unsupported kind")
        if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
            raise _Bad("a storage with a malformed size")
        ref = self.storages.get(key)
        if ref is None:
            ref = self.storages[key] = StorageRef(key, stype.name, numel)
        elif ref.dtype != stype.name or ref.numel != numel:
            raise _Bad(f"storage {key} declared twice with different types or sizes")
        return ref


class _Bounded:
    """A read-only file view whose reads never ask for more than the bytes left in the file
    (a pickle declaring a 4 GB string must not make the reader allocate 4 GB)."""

    def __init__(self, f, size: int) -> None:
        self.f, self.size = f, size

    def read(self, n: int = -1) -> bytes:
        left = max(0, self.size - self.f.tell())
        return self.f.read(left if n is None or n < 0 else min(n, left))

    def readline(self, limit: int = -1) -> bytes:
        left = max(0, self.size - self.f.tell())
        return self.f.readline(left if limit is None or limit < 0 else min(limit, left))

    def tell(self) -> int:
        return self.f.tell()

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.f.seek(pos, whence)


def is_legacy_container(path: str | Path) -> bool:
    """True when the file starts with the legacy container's magic-number pickle."""
    try:
        with open(path, "rb") as f:
            head = f.read(15)
    except OSError:
        return False
    want = pickle.dumps(MAGIC_NUMBER, protocol=2)
    return head[: len(want)] == want


def _load_one(f, path: Path, storages: dict[str, StorageRef] | None = None) -> Any:
    """Unpickle the next pickle of the stream (opcodes counted first, nothing run)."""
    start = f.tell()
    try:  # opcode budget, and memo indices in sequence (the C unpickler sizes its memo by the largest)
        scan_pickle(f, where=str(path), max_ops=MAX_PICKLE_OPS)
    except CheckpointError as exc:
        raise _Bad(f"a pickle refused unread ({str(exc).split(': ', 1)[-1].removeprefix('refused: ')})") from None
    f.seek(start)
    obj = _Unpickler(f, path, storages).load()
    return obj


def _materialize(obj: Any, arrays: dict[str, torch.Tensor], depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise _Bad(f"containers nested more than {MAX_DEPTH} deep")
    if isinstance(obj, TensorRef):
        flat = arrays[obj.storage.key]
        return flat.as_strided(obj.size, obj.stride, obj.offset)
    if isinstance(obj, dict):
        return type(obj)((k, _materialize(v, arrays, depth + 1)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v, arrays, depth + 1) for v in obj)
    return obj


def read_legacy(path: str | Path) -> Any:
    """The object a legacy ``torch.save`` file holds, its tensors memory-mapped from the file.

    Raises ``UnsafePickleError`` for a global outside the allow-list and ``CheckpointError`` for
    anything damaged, truncated or of another kind (both name the file).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as raw:
            f = _Bounded(raw, size)
            if _load_one(f, path) != MAGIC_NUMBER:
                raise _Bad("no legacy torch magic number")
            if _load_one(f, path) != PROTOCOL_VERSION:
                raise _Bad("an unknown legacy protocol version")
            info = _load_one(f, path)
            if not isinstance(info, dict) or info.get("little_endian") is not True:
                raise _Bad("a big-endian or unknown sys_info")
            storages: dict[str, StorageRef] = {}
            obj = _load_one(f, path, storages)
            keys = _load_one(f, path)
            if not isinstance(keys, list) or any(not isinstance(k, str) for k in keys):
                raise _Bad("storage keys that are not a list of strings")
            if sorted(keys) != sorted(storages) or len(set(keys)) != len(keys):
                raise _Bad("storage keys that do not match the declared storages")
            # every storage must fit in the rest of the file before anything is mapped
            pos = f.tell()
            layout = []
            for key in keys:
                ref = storages[key]
                itemsize = _STORAGES[ref.dtype][1].itemsize
                nbytes = ref.numel * itemsize
                if pos + 8 + nbytes > size:
                    raise _Bad(f"storage {key} of {ref.numel} elements reaching past the end of the file (truncated?)")
                f.seek(pos)
                (count,) = struct.unpack("<q", f.read(8))
                if count != ref.numel:
                    raise _Bad(f"storage {key}: {count} elements stored, {ref.numel} declared")
                layout.append((ref, pos + 8))
                pos += 8 + nbytes
        arrays: dict[str, torch.Tensor] = {}
        for ref, offset in layout:
            tdtype, ndtype = _STORAGES[ref.dtype]
            if ref.numel == 0:
                arrays[ref.key] = torch.empty(0, dtype=tdtype)
                continue
            mm = np.memmap(path, dtype=ndtype, mode="c", offset=offset, shape=(ref.numel,))
            t = torch.from_numpy(mm)
            arrays[ref.key] = t.view(tdtype) if t.dtype != tdtype else t
        return _materialize(obj, arrays)
    except UnsafePickleError:
        raise
    except _Bad as exc:
        raise CheckpointError(f"{path}: not a readable legacy torch checkpoint: it holds {exc}") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the file ({exc.__class__.__name__}: {exc})") from None
    except Exception as exc:  # noqa: BLE001 - any other parse failure is the file's fault
        msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise CheckpointError(
            f"{path}: not a readable legacy torch checkpoint, damaged or truncated? ({exc.__class__.__name__}: {msg})"
        ) from None
