"""NVIDIA stylegan2-ada-pytorch ``.pkl`` snapshots -> ``StyleGAN2Generator``, without running the pickle.

A snapshot is a pickled dict ``{"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}`` whose
modules are ``torch_utils.persistence`` objects: ``REDUCE(_reconstruct_persistent_obj, (meta,))``
with ``meta = {"type": "class", "module_src": <python source>, "class_name": ..., "state": <the
module's __dict__>}``. The reference loader *executes* ``module_src``; we never do.

``RestrictedUnpickler.find_class`` is an allow-list. Each allowed name maps to our own inert
function or class:

===========================================================  ===========================================
GLOBAL in the file                                           what we put in its place
===========================================================  ===========================================
``torch_utils.persistence._reconstruct_persistent_obj``      ``PersistentRecord(class_name, state)``
``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter``  a bounds-checked ``as_strided`` copy
``torch.storage._load_from_bytes``                           ``torch.load(bytes, weights_only=True)``
``collections.OrderedDict``, ``builtins.set``                 themselves (containers of loaded data)
``dnnlib.util.EasyDict``                                     a plain ``dict`` subclass
``numpy.dtype``, ``numpy[._]core.multiarray.scalar``          numeric dtypes / scalars rebuilt from bytes
``numpy.ndarray``, ``numpy[._]core.multiarray._reconstruct``  numeric arrays whose shape matches their bytes
===========================================================  ===========================================

Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``...) raises
``UnsafePickleError`` naming the file and the global *when the name is read*, before anything
could call it. Only ``G_ema`` is turned into a model (never ``G``), with its ``mapping.w_avg`` as
the truncation centre. Blocks that NVIDIA computes in float16 (``use_fp16``) are computed in
float32 here (the weights are stored in float32): results match the reference's
``force_fp32=True`` outputs.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import math
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.checkpoints.rosinality import MEAN_SAMPLES, MEAN_SEED, mean_w
from engine.checkpoints.torchfile import short_reason
from engine.errors import CheckpointError, UnsafePickleError
from engine.hashing import file_sha256
from engine.models.base import Generator
from engine.models.registry import CheckpointFormat, register_format
from engine.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator, fir_filter

FORMAT = "nvidia-stylegan2-ada-pytorch"


class BadPickleData(Exception):
    """The pickle is well-formed but holds something our inert stand-ins do not accept."""


# ---- inert stand-ins for the allowed globals -----------------------------------------------


class PersistentRecord:
    """A persisted NVIDIA module as data: its class name and its ``__dict__`` (``state``).

    ``module_src`` is dropped unread. Nothing here is callable from the pickle.
    """

    __slots__ = ("class_name", "state")

    def __init__(self, class_name: str, state: dict) -> None:
        self.class_name = class_name
        self.state = state

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name})"

    def _table(self, key: str) -> dict:
        t = self.state.get(key) or {}
        return t if isinstance(t, dict) else {}

    def param(self, name: str) -> torch.Tensor | None:
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


class _FlatStorage:
    """A storage read from a nested ``torch.save`` payload, as a flat tensor."""

    __slots__ = ("flat",)

    def __init__(self, flat: torch.Tensor) -> None:
        self.flat = flat


def _load_from_bytes(payload: Any) -> _FlatStorage:
    if not isinstance(payload, (bytes, bytearray)):
        raise BadPickleData("a storage payload that is not bytes")
    obj = torch.load(io.BytesIO(bytes(payload)), map_location="cpu", weights_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation notices
        if isinstance(obj, torch.storage.TypedStorage):
            flat = torch.empty(0, dtype=obj.dtype).set_(obj)
        elif isinstance(obj, torch.UntypedStorage):
            flat = torch.empty(0, dtype=torch.uint8).set_(obj)
        else:
            raise BadPickleData(f"a storage payload holding {type(obj).__name__}")
    return _FlatStorage(flat)


def _rebuild_tensor_v2(
    storage: Any,
    offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> torch.Tensor:
    if not isinstance(storage, _FlatStorage):
        raise BadPickleData("a tensor whose storage is not a loaded storage")
    try:
        offset, size, stride = int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride)
    except (TypeError, ValueError):
        raise BadPickleData("a tensor with a malformed shape") from None
    n = storage.flat.numel()
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise BadPickleData("a tensor with a malformed shape")
    if math.prod(size) and offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True)) >= n:
        raise BadPickleData("a tensor reaching past its storage")
    return storage.flat.as_strided(size, stride, offset).clone()


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
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
    if not isinstance(dtype, _DType) or not isinstance(data, (bytes, bytearray)) or len(data) != dtype.dtype.itemsize:
        raise BadPickleData("a numpy scalar that is not a plain number")
    return np.frombuffer(bytes(data), dtype=dtype.dtype)[0].item()


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
            or not isinstance(data, (bytes, bytearray))
        ):
            raise BadPickleData("a numpy array that is not plain numbers")
        if math.prod(shape) * dtype.dtype.itemsize != len(data):
            raise BadPickleData(f"a numpy array of shape {list(shape)} ({dtype.dtype}) stored in {len(data)} bytes")
        flat = np.frombuffer(bytes(data), dtype=dtype.dtype)
        self.array = flat.reshape(shape, order="F" if fortran else "C").copy()


def _np_reconstruct(cls: Any, shape: Any, typecode: Any) -> _NDArray:
    if cls is not _SealedNDArray or shape != (0,) or not isinstance(typecode, (bytes, bytearray)):
        raise BadPickleData("a numpy array reconstructed from something other than ndarray")
    return _SealedNDArray()


class _Sealed(type):
    """Metaclass of the stand-in classes: a pickle's BUILD cannot set attributes on them."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise BadPickleData(f"an attempt to modify {cls.__name__}")


class _SealedEasyDict(_EasyDict, metaclass=_Sealed):
    """Stands in for ``dnnlib.util.EasyDict`` (a dict with attribute access): here a plain dict."""


class _SealedDType(_DType, metaclass=_Sealed):
    __slots__ = ()


class _SealedNDArray(_NDArray, metaclass=_Sealed):
    __slots__ = ()


class _Inert:
    """A stand-in function as an object without attributes, so BUILD cannot alter it
    (a bare function would accept e.g. a new ``__defaults__``)."""

    __slots__ = ("_fn",)

    def __init__(self, fn) -> None:
        object.__setattr__(self, "_fn", fn)

    def __setattr__(self, name: str, value: Any) -> None:
        raise BadPickleData("an attempt to modify a loader function")

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _Inert(_reconstruct_persistent_obj),
    ("torch._utils", "_rebuild_tensor_v2"): _Inert(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): _Inert(_rebuild_parameter),
    ("torch.storage", "_load_from_bytes"): _Inert(_load_from_bytes),
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("dnnlib.util", "EasyDict"): _SealedEasyDict,
    ("numpy", "dtype"): _SealedDType,
    ("numpy.core.multiarray", "scalar"): _Inert(_np_scalar),
    ("numpy._core.multiarray", "scalar"): _Inert(_np_scalar),
    # StyleGAN3 snapshots store a few sizes as small int64 arrays
    ("numpy", "ndarray"): _SealedNDArray,
    ("numpy.core.multiarray", "_reconstruct"): _Inert(_np_reconstruct),
    ("numpy._core.multiarray", "_reconstruct"): _Inert(_np_reconstruct),
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the globals in ``ALLOWED``, to inert stand-ins."""

    def __init__(self, file, path: Path) -> None:
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 spellings (``__builtin__.set``) as the stock unpickler translates them
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        found = ALLOWED.get((module, name))
        if found is not None:
            return found
        if module.startswith("dnnlib.tflib"):
            raise UnsafePickleError(
                f"{self.path}: this is a TensorFlow StyleGAN pickle ({module}.{name}); loading it would run its "
                "code, so it is refused. Convert it with stylegan2-ada-pytorch's legacy.py first"
            )
        raise UnsafePickleError(
            f"{self.path}: refused to load: the pickle references '{module}.{name}', which is not on the "
            "allow-list of data types (loading it could run code from the file)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f"{self.path}: refused to load: the pickle uses persistent ids, which NVIDIA snapshots do not"
        )


def read_snapshot(path: str | Path) -> Any:
    """Unpickle ``path`` with ``RestrictedUnpickler``; errors are ``CheckpointError`` naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, path).load()
    except UnsafePickleError:
        raise
    except BadPickleData as exc:
        raise CheckpointError(f"{path}: not an NVIDIA StyleGAN2 snapshot: it holds {exc}") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the file ({short_reason(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - any other parse failure is the file's fault
        raise CheckpointError(
            f"{path}: not a readable NVIDIA pickle, damaged or truncated? ({short_reason(exc)})"
        ) from None


# ---- from records to our model -------------------------------------------------------------


def _need(rec: PersistentRecord | None, what: str, path: Path) -> PersistentRecord:
    if rec is None:
        raise CheckpointError(f"{path}: G_ema has no {what}")
    return rec


def _tensor(rec: PersistentRecord, name: str, where: str, path: Path) -> torch.Tensor:
    t = rec.param(name)
    if not isinstance(t, torch.Tensor):
        raise CheckpointError(f"{path}: G_ema.{where} has no tensor '{name}'")
    return t.detach().clone()  # a fresh tensor: nothing a pickle BUILD may have attached comes along


def _check_gain(value: Any, want: float, where: str, path: Path) -> None:
    if value is not None and not math.isclose(float(value), want, rel_tol=1e-6):
        raise CheckpointError(
            f"{path}: G_ema.{where} uses gain {float(value):.6g}, expected {want:.6g}; unsupported variant"
        )


def _count_attr(rec: PersistentRecord, name: str, path: Path, default: int = 0) -> int:
    """A non-negative int attribute of a record (``default`` when absent); anything else is refused."""
    v = rec.attr(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << 20:
        raise CheckpointError(f"{path}: G_ema.{name} is {type(v).__name__} {str(v)[:40]!r}, not a small count")
    return v


def _label_embedding(mapping: PersistentRecord, c_dim: int, sd: dict[str, torch.Tensor], path: Path) -> int:
    """Copy ``mapping.embed`` (conditional models) into ``sd``; returns the embedding width (0: none)."""
    if c_dim == 0:
        return 0
    if _count_attr(mapping, "c_dim", path, c_dim) != c_dim:
        raise CheckpointError(f"{path}: G_ema.mapping.c_dim differs from G_ema.c_dim {c_dim}")
    embed = _need(mapping.module("embed"), "label embedding (mapping.embed) although c_dim > 0", path)
    w = _tensor(embed, "weight", "mapping.embed", path)
    if w.dim() != 2 or w.shape[1] != c_dim or w.shape[0] < 1:
        raise CheckpointError(f"{path}: G_ema.mapping.embed weight {list(w.shape)} does not take {c_dim} labels")
    b = _tensor(embed, "bias", "mapping.embed", path)
    if b.shape != (w.shape[0],):
        raise CheckpointError(f"{path}: G_ema.mapping.embed bias {list(b.shape)} does not fit its weight")
    if embed.attr("activation", "linear") != "linear":
        raise CheckpointError(
            f"{path}: G_ema.mapping.embed uses activation {embed.attr('activation')!r}; expected linear"
        )
    for name, want in (("weight_gain", 1 / math.sqrt(c_dim)), ("bias_gain", 1.0)):
        v = embed.attr(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise CheckpointError(f"{path}: G_ema.mapping.embed.{name} is a {type(v).__name__}, not a number")
        _check_gain(v, want, "mapping.embed", path)
    sd["mapping_net.embed.weight"], sd["mapping_net.embed.bias"] = w, b
    return int(w.shape[0])


def convert_generator(G: PersistentRecord, path: Path) -> tuple[StyleGAN2Config, dict[str, torch.Tensor], bool]:
    """``(config, our state dict, has_w_avg)`` from the ``G_ema`` record of a snapshot."""
    if G.class_name != "Generator":
        raise CheckpointError(f"{path}: G_ema is a {G.class_name}, not a StyleGAN2 Generator")
    c_dim = _count_attr(G, "c_dim", path)
    mapping = _need(G.module("mapping"), "mapping network", path)
    synthesis = _need(G.module("synthesis"), "synthesis network", path)
    if synthesis.class_name != "SynthesisNetwork" or mapping.class_name != "MappingNetwork":
        raise CheckpointError(
            f"{path}: G_ema is not a StyleGAN2 generator ({synthesis.class_name}, {mapping.class_name}); "
            "StyleGAN3 and other variants are not supported"
        )
    sd: dict[str, torch.Tensor] = {}

    # mapping network
    n_layers = int(mapping.attr("num_layers", 0) or 0)
    lr_mul = None
    for i in range(n_layers):
        fc = _need(mapping.module(f"fc{i}"), f"mapping.fc{i}", path)
        w = _tensor(fc, "weight", f"mapping.fc{i}", path)
        sd[f"mapping_net.fcs.{i}.weight"] = w
        sd[f"mapping_net.fcs.{i}.bias"] = _tensor(fc, "bias", f"mapping.fc{i}", path)
        if fc.attr("activation", "lrelu") != "lrelu":
            raise CheckpointError(
                f"{path}: mapping.fc{i} uses activation {fc.attr('activation')!r}; only lrelu is supported"
            )
        lr_mul = float(fc.attr("bias_gain", 0.01))
        _check_gain(fc.attr("weight_gain"), lr_mul / math.sqrt(w.shape[1]), f"mapping.fc{i}", path)
    if n_layers == 0 or lr_mul is None:
        raise CheckpointError(f"{path}: G_ema.mapping has no layers")
    w_avg = _tensor(mapping, "w_avg", "mapping", path) if mapping.param("w_avg") is not None else None
    embed_dim = _label_embedding(mapping, c_dim, sd, path)
    z_dim = int(sd["mapping_net.fcs.0.weight"].shape[1]) - embed_dim
    if z_dim < 1 or _count_attr(mapping, "z_dim", path, z_dim) != z_dim:
        raise CheckpointError(f"{path}: G_ema.mapping's first layer does not fit z_dim + the label embedding")
    w_dim = int(sd[f"mapping_net.fcs.{n_layers - 1}.weight"].shape[0])
    hidden = int(sd["mapping_net.fcs.0.weight"].shape[0]) if n_layers > 1 else None

    # synthesis network
    R = int(synthesis.attr("img_resolution", G.attr("img_resolution", 0)) or 0)
    if R < 4 or R & (R - 1):
        raise CheckpointError(f"{path}: G_ema has image resolution {R}, not a power of two >= 4")
    resolutions = [2**i for i in range(2, int(math.log2(R)) + 1)]
    channels: dict[int, int] = {}
    archs, clamps, noises, fp16 = set(), set(), set(), []
    filt = fir_filter()
    for r in resolutions:
        blk = _need(synthesis.module(f"b{r}"), f"synthesis.b{r}", path)
        archs.add(blk.attr("architecture", "skip"))
        if blk.attr("use_fp16", False):
            fp16.append(r)
        pre = f"synthesis_net.b{r}"
        f = blk.param("resample_filter")
        if f is not None and (f.shape != filt.shape or not torch.allclose(f.float(), filt, atol=1e-6)):
            raise CheckpointError(f"{path}: synthesis.b{r} resamples with a filter other than [1,3,3,1]; unsupported")
        if r == 4:
            const = _tensor(blk, "const", "synthesis.b4", path)
            sd[f"{pre}.const"] = const
        for short in ("conv1",) if r == 4 else ("conv0", "conv1"):
            lay = _need(blk.module(short), f"synthesis.b{r}.{short}", path)
            where = f"synthesis.b{r}.{short}"
            if lay.attr("activation", "lrelu") != "lrelu":
                raise CheckpointError(
                    f"{path}: {where} uses activation {lay.attr('activation')!r}; only lrelu is supported"
                )
            weight = _tensor(lay, "weight", where, path)
            if weight.shape[-1] != 3:
                raise CheckpointError(
                    f"{path}: {where} has {weight.shape[-1]}x{weight.shape[-1]} kernels; only 3x3 is supported"
                )
            sd[f"{pre}.{short}.weight"] = weight
            sd[f"{pre}.{short}.bias"] = _tensor(lay, "bias", where, path)
            aff = _need(lay.module("affine"), f"{where}.affine", path)
            sd[f"{pre}.{short}.affine.weight"] = _tensor(aff, "weight", f"{where}.affine", path)
            sd[f"{pre}.{short}.affine.bias"] = _tensor(aff, "bias", f"{where}.affine", path)
            _check_gain(aff.attr("bias_gain"), 1.0, f"{where}.affine", path)
            use_noise = bool(lay.attr("use_noise", True))
            noises.add(use_noise)
            if use_noise:
                sd[f"{pre}.{short}.noise_strength"] = _tensor(lay, "noise_strength", where, path).reshape([])
                sd[f"{pre}.{short}.noise_const"] = _tensor(lay, "noise_const", where, path)
            clamps.add(lay.attr("conv_clamp"))
        channels[r] = int(sd[f"{pre}.conv1.weight"].shape[0])
        rgb = blk.module("torgb")
        if rgb is not None:
            where = f"synthesis.b{r}.torgb"
            sd[f"{pre}.torgb.weight"] = _tensor(rgb, "weight", where, path)
            sd[f"{pre}.torgb.bias"] = _tensor(rgb, "bias", where, path)
            aff = _need(rgb.module("affine"), f"{where}.affine", path)
            sd[f"{pre}.torgb.affine.weight"] = _tensor(aff, "weight", f"{where}.affine", path)
            sd[f"{pre}.torgb.affine.bias"] = _tensor(aff, "bias", f"{where}.affine", path)
            clamps.add(rgb.attr("conv_clamp"))
        skip = blk.module("skip")
        if skip is not None:
            sd[f"{pre}.skip.weight"] = _tensor(skip, "weight", f"synthesis.b{r}.skip", path)
    if len(archs) != 1 or len(clamps) != 1 or len(noises) != 1:
        raise CheckpointError(
            f"{path}: G_ema mixes architectures {sorted(archs)} / conv_clamp values "
            f"{sorted(map(str, clamps))} across blocks; unsupported"
        )
    clamp = clamps.pop()
    cfg = StyleGAN2Config(
        resolution=R,
        channels=channels,
        z_dim=z_dim,
        w_dim=w_dim,
        mapping_layers=n_layers,
        mapping_hidden=hidden,
        mapping_lr_mul=lr_mul,
        architecture=str(archs.pop()),
        conv_clamp=None if clamp is None else float(clamp),
        img_channels=int(G.attr("img_channels", 3)),
        use_noise=noises.pop(),
        fp16_resolutions=tuple(fp16),
        c_dim=c_dim,
        embed_features=embed_dim or None,
    )
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
        keys = ", ".join(map(str, list(snap)[:8])) if isinstance(snap, dict) else type(snap).__name__
        raise CheckpointError(f"{path}: no G_ema generator in this NVIDIA snapshot (found {keys})")
    from engine.checkpoints import nvidia_sg3

    if nvidia_sg3.is_stylegan3(G):
        return nvidia_sg3.load_stylegan3(G, path)
    cfg, sd, has_w_avg = convert_generator(G, path)
    gen = StyleGAN2Generator(cfg, name=path.stem)
    if not has_w_avg:
        sd["w_avg"] = torch.zeros(cfg.w_dim)
    try:
        gen.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        raise CheckpointError(
            f"{path}: G_ema does not fit the inferred {cfg.resolution}px {cfg.architecture} architecture "
            f"({' '.join(lines[1:3]) if len(lines) > 1 else lines[0]})"
        ) from None
    gen.eval()
    if has_w_avg:
        gen.w_avg_source = "mapping.w_avg stored in the checkpoint"
    else:
        with torch.no_grad():
            gen.w_avg.copy_(mean_w(gen, MEAN_SAMPLES, MEAN_SEED))
        gen.w_avg_source = (
            f"computed: mean of mapping(z) over {MEAN_SAMPLES} z (seed {MEAN_SEED}); "
            "the checkpoint has no mapping.w_avg"
        )
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
