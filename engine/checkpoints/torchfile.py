"""Bounded, safe looks into torch checkpoint files: probes, loading, and checks before allocating.

A hostile file must be refused fast and in memory bounded by its size, so nothing here trusts a
size the file declares:

* ``inspect_torch_file(path)`` reads a file's structure once (cached per file version, shared by
  every format probe): for a torch zip archive, its directory (every entry must be stored
  uncompressed, as ``torch.save`` writes it: a deflated record could inflate a thousandfold) and
  the opcodes of ``data.pkl``; for a legacy ``torch.save`` stream, the opcodes of its pickles.
  ``scan_pickle`` walks opcodes without executing them, within an operation budget, and refuses
  memo indices out of sequence (the C unpickler sizes its memo to twice the largest index).
* ``load_checked(path, what)`` loads with ``torch.load(weights_only=True)`` (archives
  memory-mapped, so parts we never read are never copied) and then ``check_tensors``: every
  tensor must be a plain CPU tensor that fits its storage (no stride-0 broadcast of one value to a
  huge shape), and all of them together may not hold more bytes than the file.
* ``check_model_size`` refuses an architecture whose weights outnumber the numbers in the file,
  before the model is built.
"""

from __future__ import annotations

import argparse
import collections
import io
import pickletools
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from engine.errors import CheckpointError

# A real NVIDIA snapshot has tens of thousands of opcodes (23,000 for a 64 px one with G, D and
# G_ema; a 1024 px one about twice that), and the data.pkl of a torch file (names, shapes, storage
# ids) a few thousand (8,000 for a rosinality train.py checkpoint with its optimiser states).
# Scanning takes about 0.7 us per opcode; torch's weights-only unpickler about 6 us, hence the
# smaller budget for torch files. Each opcode creates at most one object, so the budgets also
# bound what unpickling can allocate.
MAX_PICKLE_OPS = 500_000
MAX_TORCH_PICKLE_OPS = 200_000
MAX_PICKLE_BYTES = 32 << 20
MAX_ZIP_ENTRIES = 100_000
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})


@dataclass(frozen=True)
class PickleScan:
    """What ``scan_pickle`` saw: where the pickle ends, how many opcodes, its string constants."""

    end: int
    ops: int
    strings: frozenset[str]


def scan_pickle(
    data: bytes | BinaryIO, start: int = 0, *, where: str, max_ops: int = MAX_PICKLE_OPS, strings: bool = False
) -> PickleScan:
    """Walk the opcodes of the pickle at ``data[start:]`` up to its STOP, executing nothing.

    ``data`` is bytes, or a binary file positioned at the pickle (``start`` is then ignored and the
    file is left after the STOP). Raises ``CheckpointError`` (``where: refused: ...``) for a
    malformed pickle, more than ``max_ops`` opcodes, a memo index beyond the next free one (pickle
    writers number their memo entries in sequence; the C unpickler sizes its memo to twice the
    largest index), a read of a memo entry never written, or a frame longer than the data.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        f, total = io.BytesIO(data), len(data)
        f.seek(start)
    else:
        f, total = data, None
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


# ---- one look per file ------------------------------------------------------------------------


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
    with open(path, "rb") as f:
        data = f.read(min(size, MAX_PICKLE_BYTES))
    pos, found = 0, frozenset()
    for i in range(5):
        scan = scan_pickle(data, pos, where="the pickle stream", strings=i == 3, max_ops=MAX_TORCH_PICKLE_OPS)
        pos, found = scan.end, found | scan.strings
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


# ---- loading and checking -----------------------------------------------------------------------


@dataclass(frozen=True)
class TensorStats:
    """The tensors of a loaded checkpoint: how many, their elements and bytes."""

    count: int
    numel: int
    nbytes: int


def load_checked(path: str | Path, *, what: str) -> tuple[Any, TensorStats]:
    """``torch.load(weights_only=True)`` (``argparse.Namespace`` allowed: train.py's ``args``), then
    ``check_tensors``. Zip archives are memory-mapped, so parts we do not read (discriminator,
    optimiser states) are never copied into memory. Raises ``CheckpointError`` naming the file.
    """
    path = Path(path)
    info = inspect_torch_file(path)
    if info.problem is not None:
        raise CheckpointError(f"{path}: {info.problem}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=info.kind == "zip")
    except Exception as exc:  # noqa: BLE001 - any failure to parse is the file's fault
        raise CheckpointError(
            f"{path}: not a readable {what} checkpoint, damaged or truncated? ({short_reason(exc)})"
        ) from None
    return obj, check_tensors(obj, path, info.size)


def load_weights_only(path: str | Path, *, what: str) -> Any:
    """``load_checked`` without the statistics."""
    return load_checked(path, what=what)[0]


def check_tensors(obj: Any, path: str | Path, file_size: int) -> TensorStats:
    """Check every tensor in ``obj`` (nested dicts, lists, tuples, sets, ``Namespace``) against its
    storage and the file: a strided CPU tensor, no dimension broadcast from one element (stride 0),
    no more elements than its storage holds, and no more bytes in all than ``file_size``.

    Returns the totals; raises ``CheckpointError`` naming the file and the first offending tensor.
    """
    nodes = (dict, list, tuple, set, frozenset, argparse.Namespace, torch.Tensor)
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("", obj)]
    count = numel = nbytes = 0
    while stack:
        name, x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, torch.Tensor):
            _check_tensor(x, name or "a tensor", path)
            count += 1
            numel += x.numel()
            nbytes += x.numel() * x.element_size()
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
        stack.extend((_child(name, k), v) for k, v in items if isinstance(v, nodes))
    if nbytes > file_size:
        raise CheckpointError(
            f"{path}: refused: its tensors declare {nbytes:,} bytes but the file has {file_size:,} "
            "(tensors sharing or re-reading the same data)"
        )
    return TensorStats(count, numel, nbytes)


def _child(name: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{name}[{key}]"
    key = key if isinstance(key, str) else type(key).__name__
    return f"{name}.{key[:60]}" if name else key[:60]


def _check_tensor(t: torch.Tensor, name: str, path: str | Path) -> None:
    name = name[:120]
    if t.layout != torch.strided or t.is_nested or t.device.type != "cpu" or t.is_quantized:
        raise CheckpointError(f"{path}: refused: {name} is not a plain tensor ({t.layout}, {t.device.type})")
    if any(size > 1 and stride == 0 for size, stride in zip(t.shape, t.stride())):
        raise CheckpointError(
            f"{path}: refused: {name} of shape {list(t.shape)} repeats one stored value (stride 0): "
            "a tiny file posing as a large model"
        )
    need = (t.storage_offset() + t.numel()) * t.element_size()
    have = t.untyped_storage().nbytes()
    if t.numel() and need > have:
        raise CheckpointError(
            f"{path}: refused: {name} of shape {list(t.shape)} needs {need:,} bytes but its storage has {have:,}"
        )


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


def load_error(exc: BaseException, limit: int = 240) -> str:
    """The useful part of a ``load_state_dict`` error (its first complaint), on one line."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = " ".join(lines[1:3]) if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def state_tensor(sd: dict, key: str, ndim: int | tuple[int, ...], path: str | Path, where: str = "") -> torch.Tensor:
    """``sd[key]`` if it is a floating-point tensor of ``ndim`` dimensions, else ``CheckpointError``."""
    t = sd.get(key)
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    label = f"{where}{key}"
    if t is None:
        raise CheckpointError(f"{path}: {label} is missing")
    if not isinstance(t, torch.Tensor):
        raise CheckpointError(f"{path}: {label} is a {type(t).__name__}, not a tensor")
    if t.dim() not in ndims or not t.is_floating_point():
        raise CheckpointError(
            f"{path}: {label} is a {t.dim()}-d {str(t.dtype).removeprefix('torch.')} tensor "
            f"{list(t.shape)[:8]}; expected a {' or '.join(map(str, ndims))}-d floating-point one"
        )
    return t
