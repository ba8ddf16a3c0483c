"""NVIDIA stylegan2-ada-pytorch ``.pkl`` snapshots -> ``StyleGAN2Generator``, without running the pickle.

A snapshot is a pickled dict ``{"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}`` whose
modules are ``torch_utils.persistence`` objects: ``REDUCE(_reconstruct_persistent_obj, (meta,))``
with ``meta = {"type": "class", "module_src": <python source>, "class_name": ..., "state": <the
module's __dict__>}``. The reference loader *executes* ``module_src``; we never do.

``SnapshotUnpickler`` (``pickles.RestrictedUnpickler``) resolves only an allow-list. Each allowed
name maps to our own inert function or class:

===========================================================  ===========================================
GLOBAL in the file                                           what we put in its place
===========================================================  ===========================================
``torch_utils.persistence._reconstruct_persistent_obj``      ``PersistentRecord(class_name, state)``
``torch.storage._load_from_bytes``                           ``torchfile.storage_from_bytes``: the
                                                             storage's legacy ``torch.save`` stream,
                                                             parsed; its data left in the file
``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter``  a ``torchfile.TensorRef`` within its
                                                             storage (read when the model is filled)
``collections.OrderedDict``, ``builtins.set``                 themselves (containers of loaded data)
``dnnlib.util.EasyDict``                                     a plain ``dict`` subclass
``numpy.dtype``, ``numpy[._]core.multiarray.scalar``          numeric dtypes / scalars rebuilt from bytes
``numpy.ndarray``, ``numpy[._]core.multiarray._reconstruct``  numeric arrays whose shape matches their bytes
===========================================================  ===========================================

Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``...) raises
``UnsafePickleError`` naming the file and the global *when the name is read*, before anything
could call it. The opcodes are scanned first (``pickles.scan_pickle``), and the tensors declared
may not add up to more bytes than the file has.

Memory: the unpickler leaves every storage payload of 4 KB or more in the file (``FileBytes``), and
tensors are declared, not read, so ``G`` and ``D`` cost nothing; only ``G_ema``'s tensors are read,
each once, into the model (``torchfile.load_into``): loading holds the model plus one tensor. Only
``G_ema`` is turned into a model (never ``G``), with its ``mapping.w_avg`` as the truncation
centre. Blocks that NVIDIA computes in float16 (``use_fp16``) are computed in float32 here (the
weights are stored in float32): results match the reference's ``force_fp32=True`` outputs.
"""

from __future__ import annotations

import collections
import contextvars
import math
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from engine.checkpoints.pickles import (
    BadPickleData,
    Inert,
    RestrictedUnpickler,
    Sealed,
    as_bytes,
    file_errors,
    scan_pickle,
)
from engine.checkpoints.rosinality import stylegan2_from_state
from engine.checkpoints.torchfile import (
    TensorRef,
    check_model_size,
    is_tensor,
    read_tensor,
    rebuild_tensor,
    show,
    storage_from_bytes,
    tensor_stats,
)
from engine.errors import AtlasError, CheckpointError, UnsafePickleError
from engine.hashing import file_sha256
from engine.models.base import Generator
from engine.models.registry import CheckpointFormat, register_format
from engine.models.stylegan2 import (
    MAX_MAPPING_LAYERS,
    MAX_RESOLUTION,
    StyleGAN2Config,
    fir_filter,
)

FORMAT = "nvidia-stylegan2-ada-pytorch"
LARGE_BYTES = 4096  # storage payloads at least this long stay in the file until read


# ---- inert stand-ins for the allowed globals -----------------------------------------------


class PersistentRecord:
    """A persisted NVIDIA module as data: its class name and its ``__dict__`` (``state``).

    ``module_src`` is dropped unread. Nothing here is callable from the pickle. Its tensors are
    ``TensorRef``s (declared, not read) or, in records a test builds, tensors.
    """

    __slots__ = ("class_name", "state")

    def __init__(self, class_name: str, state: dict) -> None:
        self.class_name = class_name
        self.state = state

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name})"

    def _table(self, key: str) -> dict:
        t = self.state.get(key)
        return t if isinstance(t, dict) else {}

    def param(self, name: str) -> torch.Tensor | TensorRef | None:
        v = self._table("_parameters").get(name)
        return v if v is not None else self._table("_buffers").get(name)

    def module(self, name: str) -> PersistentRecord | None:
        m = self._table("_modules").get(name)
        return m if isinstance(m, PersistentRecord) else None

    def attr(self, name: str, default: Any = None) -> Any:
        return self.state.get(name, default)


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise BadPickleData("a persistent object record without a class state")
    return PersistentRecord(str(meta.get("class_name")), meta["state"])


# The file being read and what its declared tensors may still add up to (a pickle may point many
# tensors at one storage): read_snapshot sets both, the stand-ins below use them.
_READING: contextvars.ContextVar[tuple[Path, list[int]] | None] = contextvars.ContextVar("nvidia_pkl", default=None)


def _load_from_bytes(payload: Any) -> Any:
    reading = _READING.get()
    return storage_from_bytes(payload, reading[0] if reading else Path("a storage payload"))


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> TensorRef:
    ref = rebuild_tensor(storage, offset, size, stride)
    problem = ref.problem()
    if problem is not None:
        raise BadPickleData(f"a tensor {problem}")
    reading = _READING.get()
    if reading is not None:
        reading[1][0] -= ref.nbytes
        if reading[1][0] < 0:
            raise BadPickleData("tensors that add up to more bytes than the file has")
    return ref


def _rebuild_parameter(data: Any, *rest: Any) -> TensorRef:
    if not isinstance(data, TensorRef):
        raise BadPickleData("a parameter that is not a tensor")
    return data


class _EasyDict(dict):
    """Stands in for ``dnnlib.util.EasyDict`` (a dict with attribute access): here a plain dict."""


_NUMERIC_KINDS = set("biufc")


class _DType:
    """A numpy dtype as data: built only for numeric kinds, byte order set by BUILD."""

    __slots__ = ("dtype",)

    def __init__(self, spec: Any, align: Any = False, copy: Any = False) -> None:
        if not isinstance(spec, str):
            raise BadPickleData("a numpy dtype that is not named by a string")
        try:
            dt = np.dtype(spec)
        except TypeError:
            raise BadPickleData(f"unknown numpy dtype {spec!r}") from None
        if dt.kind not in _NUMERIC_KINDS or dt.fields is not None or dt.subdtype is not None:
            raise BadPickleData(f"numpy dtype {spec!r} is not a plain number")
        self.dtype = dt

    def __setstate__(self, state: Any) -> None:
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else "|"
        if order not in ("<", ">", "=", "|"):
            raise BadPickleData("a numpy dtype with an unknown byte order")
        if order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(order)


def _np_scalar(dtype: Any, data: Any = None) -> Any:
    data = as_bytes(data)
    if not isinstance(dtype, _DType) or data is None or len(data) != dtype.dtype.itemsize:
        raise BadPickleData("a numpy scalar that is not a plain number")
    return np.frombuffer(data, dtype=dtype.dtype)[0].item()


class _NDArray:
    """A pickled numpy array as data: ``_reconstruct(ndarray, (0,), b"b")`` then BUILD with
    ``(version, shape, dtype, is_fortran, raw bytes)``. Only plain numeric dtypes, and the shape
    must account for exactly the bytes present (nothing is allocated beyond what the file holds).
    The loaded value is ``.array`` (``None`` until BUILD fills it)."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array = None

    def __setstate__(self, state: Any) -> None:
        if getattr(self, "array", None) is not None:
            raise BadPickleData("a numpy array built twice")
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise BadPickleData("a numpy array with a malformed state")
        if len(state) == 5:
            if type(state[0]) is not int or state[0] != 1:
                raise BadPickleData("a numpy array of an unknown pickle version")
            state = state[1:]
        shape, dtype, fortran, data = state
        if (
            not isinstance(shape, tuple)
            or len(shape) > 32
            or not all(type(s) is int and s >= 0 for s in shape)
            or not isinstance(dtype, _DType)
            or type(fortran) is not bool
            or as_bytes(data) is None
        ):
            raise BadPickleData("a numpy array that is not plain numbers")
        data = as_bytes(data)
        if math.prod(shape) * dtype.dtype.itemsize != len(data):
            raise BadPickleData(f"a numpy array of shape {list(shape)} ({dtype.dtype}) stored in {len(data)} bytes")
        flat = np.frombuffer(data, dtype=dtype.dtype)
        self.array = flat.reshape(shape, order="F" if fortran else "C").copy()


def _np_reconstruct(cls: Any, shape: Any, typecode: Any) -> _NDArray:
    if cls is not _SealedNDArray or shape != (0,) or not isinstance(typecode, (bytes, bytearray)):
        raise BadPickleData("a numpy array reconstructed from something other than ndarray")
    return _SealedNDArray()


class _SealedEasyDict(_EasyDict, metaclass=Sealed):
    """Stands in for ``dnnlib.util.EasyDict`` (a dict with attribute access): here a plain dict."""


class _SealedDType(_DType, metaclass=Sealed):
    __slots__ = ()


class _SealedNDArray(_NDArray, metaclass=Sealed):
    __slots__ = ()


ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): Inert(_reconstruct_persistent_obj),
    ("torch._utils", "_rebuild_tensor_v2"): Inert(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): Inert(_rebuild_parameter),
    ("torch.storage", "_load_from_bytes"): Inert(_load_from_bytes),
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("dnnlib.util", "EasyDict"): _SealedEasyDict,
    ("numpy", "dtype"): _SealedDType,
    ("numpy.core.multiarray", "scalar"): Inert(_np_scalar),
    ("numpy._core.multiarray", "scalar"): Inert(_np_scalar),
    # StyleGAN3 snapshots store a few sizes as small int64 arrays
    ("numpy", "ndarray"): _SealedNDArray,
    ("numpy.core.multiarray", "_reconstruct"): Inert(_np_reconstruct),
    ("numpy._core.multiarray", "_reconstruct"): Inert(_np_reconstruct),
}


class SnapshotUnpickler(RestrictedUnpickler):
    """Resolves only ``ALLOWED``; a TensorFlow snapshot's globals get a refusal of their own."""

    def __init__(self, file: BinaryIO, path: Path, size: int) -> None:
        super().__init__(file, path, ALLOWED, what="the pickle", large_bytes=LARGE_BYTES, end=size)

    def refusal(self, module: str, name: str) -> UnsafePickleError:
        if module.startswith("dnnlib.tflib"):
            return UnsafePickleError(
                f"{self.path}: this is a TensorFlow StyleGAN pickle ({module}.{name}); loading it would run its "
                "code, so it is refused. Convert it with stylegan2-ada-pytorch's legacy.py first"
            )
        return super().refusal(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f"{self.path}: refused to load: the pickle uses persistent ids, which NVIDIA snapshots do not"
        )


def read_snapshot(path: str | Path) -> Any:
    """Unpickle ``path`` with ``SnapshotUnpickler``; errors are ``CheckpointError`` naming the file.

    The opcodes are scanned first (``scan_pickle``: an operation budget, memo indices in
    sequence, lengths within the file), and the tensors declared may not add up to more bytes
    than the file has. Tensors come back declared (``TensorRef``), not read.
    """
    path = Path(path)
    token = None
    try:
        with file_errors(path, "NVIDIA snapshot"):
            size = path.stat().st_size
            with open(path, "rb") as fh:  # read twice, never held: G and D cost no memory
                scan_pickle(fh, where=str(path), end=size)
                fh.seek(0)
                token = _READING.set((path, [size]))
                return SnapshotUnpickler(fh, path, size).load()
    finally:
        if token is not None:
            _READING.reset(token)


# ---- from records to our model -------------------------------------------------------------


def _need(rec: PersistentRecord | None, what: str, path: Path) -> PersistentRecord:
    if rec is None:
        raise CheckpointError(f"{path}: G_ema has no {what}")
    return rec


def record_tensor(
    rec: PersistentRecord, name: str, where: str, path: Path, ndim: int | tuple[int, ...] | None = None
) -> torch.Tensor | TensorRef:
    """The floating-point tensor ``name`` of a record (declared or read), of ``ndim`` dimensions if given.

    Nothing is copied: ``load_into`` reads it into the model's own parameter.
    """
    t = rec.param(name)
    if not is_tensor(t):
        raise CheckpointError(f"{path}: G_ema.{where} has no tensor '{name}'")
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if not t.is_floating_point() or (ndims is not None and t.dim() not in ndims):
        want = "" if ndims is None else f"{' or '.join(map(str, ndims))}-d "
        raise CheckpointError(
            f"{path}: G_ema.{where}.{name} is a {t.dim()}-d {str(t.dtype).removeprefix('torch.')} tensor "
            f"{list(t.shape)[:8]}, not the floating-point {want}tensor expected"
        )
    return t


# Typed reads of record attributes: a snapshot's values are data from the file, checked before use.


def _attr_int(rec: PersistentRecord, name: str, default: int, where: str, path: Path, lo: int, hi: int) -> int:
    v = rec.attr(name, default)
    v = default if v is None else v
    if type(v) is not int or not lo <= v <= hi:
        raise CheckpointError(f"{path}: G_ema{where}.{name} is {show(v)}, not an integer {lo}..{hi}")
    return v


def _attr_float(rec: PersistentRecord, name: str, default: float | None, where: str, path: Path) -> float | None:
    v = rec.attr(name, default)
    if v is None:
        return None
    if type(v) not in (int, float) or not math.isfinite(v):
        raise CheckpointError(f"{path}: G_ema{where}.{name} is {show(v)}, not a finite number")
    return float(v)


def _attr_str(rec: PersistentRecord, name: str, default: str, where: str, path: Path) -> str:
    v = rec.attr(name, default)
    if not isinstance(v, str) or len(v) > 64:
        raise CheckpointError(f"{path}: G_ema{where}.{name} is {show(v)}, not a name")
    return v


def _attr_bool(rec: PersistentRecord, name: str, default: bool, where: str, path: Path) -> bool:
    v = rec.attr(name, default)
    if type(v) is not bool and not (type(v) is int and v in (0, 1)):
        raise CheckpointError(f"{path}: G_ema{where}.{name} is {show(v)}, not true or false")
    return bool(v)


def _check_gain(value: float | None, want: float, where: str, path: Path) -> None:
    if value is not None and not math.isclose(value, want, rel_tol=1e-6):
        raise CheckpointError(f"{path}: G_ema.{where} uses gain {value:.6g}, expected {want:.6g}; unsupported variant")


def _count_attr(rec: PersistentRecord, name: str, path: Path, default: int = 0) -> int:
    """A non-negative int attribute of a record (``default`` when absent); anything else is refused."""
    v = rec.attr(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << 20:
        raise CheckpointError(f"{path}: G_ema.{name} is {type(v).__name__} {show(v)}, not a small count")
    return v


def _label_embedding(mapping: PersistentRecord, c_dim: int, sd: dict[str, Any], path: Path) -> int:
    """Copy ``mapping.embed`` (conditional models) into ``sd``; returns the embedding width (0: none)."""
    if c_dim == 0:
        return 0
    if _count_attr(mapping, "c_dim", path, c_dim) != c_dim:
        raise CheckpointError(f"{path}: G_ema.mapping.c_dim differs from G_ema.c_dim {c_dim}")
    embed = _need(mapping.module("embed"), "label embedding (mapping.embed) although c_dim > 0", path)
    w = record_tensor(embed, "weight", "mapping.embed", path)
    if w.dim() != 2 or w.shape[1] != c_dim or w.shape[0] < 1:
        raise CheckpointError(f"{path}: G_ema.mapping.embed weight {list(w.shape)} does not take {c_dim} labels")
    b = record_tensor(embed, "bias", "mapping.embed", path)
    if b.shape != (w.shape[0],):
        raise CheckpointError(f"{path}: G_ema.mapping.embed bias {list(b.shape)} does not fit its weight")
    activation = _attr_str(embed, "activation", "linear", ".mapping.embed", path)
    if activation != "linear":
        raise CheckpointError(f"{path}: G_ema.mapping.embed uses activation {activation!r}; expected linear")
    for name, want in (("weight_gain", 1 / math.sqrt(c_dim)), ("bias_gain", 1.0)):
        _check_gain(_attr_float(embed, name, None, ".mapping.embed", path), want, "mapping.embed", path)
    sd["mapping_net.embed.weight"], sd["mapping_net.embed.bias"] = w, b
    return int(w.shape[0])


def convert_generator(G: PersistentRecord, path: Path) -> tuple[StyleGAN2Config, dict[str, Any], bool]:
    """``(config, our state dict, has_w_avg)`` from the ``G_ema`` record of a snapshot (its tensors
    declared, not read: ``load_into`` reads them)."""
    if G.class_name != "Generator":
        raise CheckpointError(f"{path}: G_ema is a {show(G.class_name)}, not a StyleGAN2 Generator")
    c_dim = _count_attr(G, "c_dim", path)
    mapping = _need(G.module("mapping"), "mapping network", path)
    synthesis = _need(G.module("synthesis"), "synthesis network", path)
    if synthesis.class_name != "SynthesisNetwork" or mapping.class_name != "MappingNetwork":
        raise CheckpointError(
            f"{path}: G_ema is not a StyleGAN2 generator ({show(synthesis.class_name)}, {show(mapping.class_name)}); "
            "StyleGAN3 and other variants are not supported"
        )
    sd: dict[str, Any] = {}

    # mapping network
    n_layers = _attr_int(mapping, "num_layers", 0, ".mapping", path, 0, MAX_MAPPING_LAYERS)
    lr_mul = None
    for i in range(n_layers):
        fc = _need(mapping.module(f"fc{i}"), f"mapping.fc{i}", path)
        w = record_tensor(fc, "weight", f"mapping.fc{i}", path, ndim=2)
        sd[f"mapping_net.fcs.{i}.weight"] = w
        sd[f"mapping_net.fcs.{i}.bias"] = record_tensor(fc, "bias", f"mapping.fc{i}", path, ndim=1)
        activation = _attr_str(fc, "activation", "lrelu", f".mapping.fc{i}", path)
        if activation != "lrelu":
            raise CheckpointError(f"{path}: mapping.fc{i} uses activation {activation!r}; only lrelu is supported")
        lr_mul = _attr_float(fc, "bias_gain", 0.01, f".mapping.fc{i}", path)
        if w.shape[1] < 1 or lr_mul <= 0:
            raise CheckpointError(f"{path}: G_ema.mapping.fc{i} has no inputs or a gain <= 0")
        gain = _attr_float(fc, "weight_gain", None, f".mapping.fc{i}", path)
        _check_gain(gain, lr_mul / math.sqrt(w.shape[1]), f"mapping.fc{i}", path)
    if n_layers == 0 or lr_mul is None:
        raise CheckpointError(f"{path}: G_ema.mapping has no layers")
    w_avg = record_tensor(mapping, "w_avg", "mapping", path, ndim=1) if mapping.param("w_avg") is not None else None
    embed_dim = _label_embedding(mapping, c_dim, sd, path)
    z_dim = int(sd["mapping_net.fcs.0.weight"].shape[1]) - embed_dim
    if z_dim < 1 or _count_attr(mapping, "z_dim", path, z_dim) != z_dim:
        raise CheckpointError(f"{path}: G_ema.mapping's first layer does not fit z_dim + the label embedding")
    w_dim = int(sd[f"mapping_net.fcs.{n_layers - 1}.weight"].shape[0])
    hidden = int(sd["mapping_net.fcs.0.weight"].shape[0]) if n_layers > 1 else None

    # synthesis network
    R = _attr_int(G, "img_resolution", 0, "", path, 0, MAX_RESOLUTION)
    R = _attr_int(synthesis, "img_resolution", R, ".synthesis", path, 0, MAX_RESOLUTION)
    if R < 4 or R & (R - 1):
        raise CheckpointError(f"{path}: G_ema has image resolution {R}, not a power of two >= 4")
    resolutions = [2**i for i in range(2, int(math.log2(R)) + 1)]
    channels: dict[int, int] = {}
    archs, clamps, noises, fp16 = set(), set(), set(), []
    filt = fir_filter()
    for r in resolutions:
        blk = _need(synthesis.module(f"b{r}"), f"synthesis.b{r}", path)
        archs.add(_attr_str(blk, "architecture", "skip", f".synthesis.b{r}", path))
        if _attr_bool(blk, "use_fp16", False, f".synthesis.b{r}", path):
            fp16.append(r)
        pre = f"synthesis_net.b{r}"
        f = read_tensor(blk.param("resample_filter"))
        if f is not None and (
            not isinstance(f, torch.Tensor)
            or f.shape != filt.shape
            or not f.is_floating_point()
            or not torch.allclose(f.float(), filt, atol=1e-6)
        ):
            raise CheckpointError(f"{path}: synthesis.b{r} resamples with a filter other than [1,3,3,1]; unsupported")
        if r == 4:
            sd[f"{pre}.const"] = record_tensor(blk, "const", "synthesis.b4", path, ndim=3)
        for short in ("conv1",) if r == 4 else ("conv0", "conv1"):
            lay = _need(blk.module(short), f"synthesis.b{r}.{short}", path)
            where = f"synthesis.b{r}.{short}"
            activation = _attr_str(lay, "activation", "lrelu", f".{where}", path)
            if activation != "lrelu":
                raise CheckpointError(f"{path}: {where} uses activation {activation!r}; only lrelu is supported")
            weight = record_tensor(lay, "weight", where, path, ndim=4)
            if weight.shape[-1] != 3:
                raise CheckpointError(
                    f"{path}: {where} has {weight.shape[-1]}x{weight.shape[-1]} kernels; only 3x3 is supported"
                )
            sd[f"{pre}.{short}.weight"] = weight
            sd[f"{pre}.{short}.bias"] = record_tensor(lay, "bias", where, path, ndim=1)
            aff = _need(lay.module("affine"), f"{where}.affine", path)
            sd[f"{pre}.{short}.affine.weight"] = record_tensor(aff, "weight", f"{where}.affine", path, ndim=2)
            sd[f"{pre}.{short}.affine.bias"] = record_tensor(aff, "bias", f"{where}.affine", path, ndim=1)
            _check_gain(_attr_float(aff, "bias_gain", None, f".{where}.affine", path), 1.0, f"{where}.affine", path)
            use_noise = _attr_bool(lay, "use_noise", True, f".{where}", path)
            noises.add(use_noise)
            if use_noise:
                strength = record_tensor(lay, "noise_strength", where, path, ndim=(0, 1))
                if strength.numel() != 1:
                    raise CheckpointError(f"{path}: G_ema.{where}.noise_strength is not one number")
                sd[f"{pre}.{short}.noise_strength"] = strength.reshape([])
                sd[f"{pre}.{short}.noise_const"] = record_tensor(lay, "noise_const", where, path, ndim=2)
            clamps.add(_attr_float(lay, "conv_clamp", None, f".{where}", path))
        channels[r] = int(sd[f"{pre}.conv1.weight"].shape[0])
        rgb = blk.module("torgb")
        if rgb is not None:
            where = f"synthesis.b{r}.torgb"
            sd[f"{pre}.torgb.weight"] = record_tensor(rgb, "weight", where, path, ndim=4)
            sd[f"{pre}.torgb.bias"] = record_tensor(rgb, "bias", where, path, ndim=1)
            aff = _need(rgb.module("affine"), f"{where}.affine", path)
            sd[f"{pre}.torgb.affine.weight"] = record_tensor(aff, "weight", f"{where}.affine", path, ndim=2)
            sd[f"{pre}.torgb.affine.bias"] = record_tensor(aff, "bias", f"{where}.affine", path, ndim=1)
            clamps.add(_attr_float(rgb, "conv_clamp", None, f".{where}", path))
        skip = blk.module("skip")
        if skip is not None:
            sd[f"{pre}.skip.weight"] = record_tensor(skip, "weight", f"synthesis.b{r}.skip", path, ndim=4)
    if len(archs) != 1 or len(clamps) != 1 or len(noises) != 1:
        raise CheckpointError(
            f"{path}: G_ema mixes architectures {sorted(archs)} / conv_clamp values "
            f"{sorted(map(str, clamps))} across blocks; unsupported"
        )
    clamp = clamps.pop()
    try:
        cfg = StyleGAN2Config(
            resolution=R,
            channels=channels,
            z_dim=z_dim,
            w_dim=w_dim,
            mapping_layers=n_layers,
            mapping_hidden=hidden,
            mapping_lr_mul=lr_mul,
            architecture=archs.pop(),
            conv_clamp=clamp,
            img_channels=_attr_int(G, "img_channels", 3, "", path, 1, 16),
            use_noise=noises.pop(),
            fp16_resolutions=tuple(fp16),
            c_dim=c_dim,
            embed_features=embed_dim or None,
        )
    except AtlasError as exc:
        raise CheckpointError(f"{path}: G_ema describes no valid StyleGAN2 generator ({exc})") from None
    if w_avg is not None:
        sd["w_avg"] = w_avg
    return cfg, sd, w_avg is not None


def load_nvidia_pkl(path: str | Path) -> Generator:
    """A generator (eval mode, CPU) from an NVIDIA snapshot's ``G_ema``, loaded safely: StyleGAN2
    (stylegan2-ada-pytorch) here, StyleGAN3 (stylegan3) by ``nvidia_sg3``."""
    path = Path(path)
    snap = read_snapshot(path)
    if isinstance(snap, PersistentRecord):
        G = snap  # a bare pickled generator
    elif isinstance(snap, dict) and isinstance(snap.get("G_ema"), PersistentRecord):
        G = snap["G_ema"]
    else:
        keys = ", ".join(show(k) for k in list(snap)[:8]) if isinstance(snap, dict) else type(snap).__name__
        raise CheckpointError(f"{path}: no G_ema generator in this NVIDIA snapshot (found {keys})")
    from engine.checkpoints import nvidia_sg3

    if nvidia_sg3.is_stylegan3(G):
        return nvidia_sg3.load_stylegan3(G, path)
    cfg, sd, _ = convert_generator(G, path)
    check_model_size(cfg.state_numel(), tensor_stats(sd), path, f"{cfg.resolution}px generator")
    gen = stylegan2_from_state(cfg, sd, path, source="G_ema", w_avg_name="mapping.w_avg")
    gen.format = FORMAT
    gen.identity = file_sha256(path)
    gen.source = str(path)
    return gen


def probe_nvidia_pkl(path: Path) -> bool:
    """True for a file that starts like a pickle (the loader then decides, safely, what it holds)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


register_format(CheckpointFormat(FORMAT, (".pkl", ".pickle"), probe_nvidia_pkl, load_nvidia_pkl))
