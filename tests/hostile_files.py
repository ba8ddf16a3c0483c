"""Hostile checkpoint files, as issue 11 describes them, for the tests and ``bench/bench_hostile_files.py``.

Each function writes one file and returns its path. None of them imports ``engine``: they build
the bytes the way an attacker would, with ``pickle``, ``zipfile`` and ``torch.save``.

* ``stride0_rosinality``: a few-KB rosinality ``.pt`` whose tensors are stride-0 views of one
  element declaring full-size shapes (torch's weights-only loader accepts them);
* ``memo_bomb_pickle``: a 9-byte ``.pkl``: ``LONG_BINPUT`` with a huge memo index;
* ``flip_memo_index``: a real NVIDIA snapshot with one bit of an unused ``LONG_BINPUT`` index set;
* ``zip_bomb_dcgan``: a DCGAN ``.pt`` whose weight records are deflated zeros;
* ``slow_probe_pt``: a ``.pt`` whose deflated ``data.pkl`` is 64 MB of ``NONE POP`` opcodes;
* ``many_ops_pickle``: a pickle of a given number of opcodes that builds nothing;
* ``many_dicts_pickle``: as many opcodes, keeping an empty dict per two;
* ``many_ops_torch_zip``: the same as a torch archive that passes the rosinality probe;
* ``legacy_memo_bomb``: a legacy ``torch.save`` stream whose object pickle ends on a huge memo index;
* ``huge_legacy_storage``: a legacy (non-zip) ``torch.save`` stream declaring a huge storage;
* ``source_replaced_pkl``: a real NVIDIA snapshot whose stored network sources would create a file.
"""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
import struct
import zipfile
from pathlib import Path

import torch

# ---- writing torch zip archives by hand ----------------------------------------------------------


class StorageRef:
    """A storage record ``data/<key>`` of a torch zip archive (pickled as a persistent id)."""

    def __init__(self, key: str, numel: int, storage_cls=torch.FloatStorage) -> None:
        self.key, self.numel, self.storage_cls = key, numel, storage_cls


class TensorRef:
    """A tensor over a ``StorageRef`` with any size / stride / offset (even ones torch never writes)."""

    def __init__(self, storage: StorageRef, size, stride=None, offset: int = 0) -> None:
        size = tuple(size)
        if stride is None:
            stride, acc = [], 1
            for s in reversed(size):
                stride.insert(0, acc)
                acc *= s
        self.storage, self.size, self.stride, self.offset = storage, size, tuple(stride), offset

    def __reduce__(self):
        return (
            torch._utils._rebuild_tensor_v2,
            (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict()),
        )


class _TorchPickler(pickle.Pickler):
    legacy = False  # legacy streams add a view record to each storage id

    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            return ("storage", obj.storage_cls, obj.key, "cpu", obj.numel) + ((None,) if self.legacy else ())
        return None


class _LegacyPickler(_TorchPickler):
    legacy = True


def torch_zip(path, obj, records: dict[str, int | bytes], *, compress: bool = False, level: int = 9) -> Path:
    """Write a torch zip archive: ``data.pkl`` pickling ``obj`` (with ``TensorRef`` leaves) and one
    record per storage key (``bytes``, or an ``int``: that many zero bytes, streamed)."""
    path = Path(path)
    buf = io.BytesIO()
    _TorchPickler(buf, protocol=2).dump(obj)
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    root = path.stem
    with zipfile.ZipFile(path, "w", compression=method, compresslevel=level if compress else None) as zf:
        zf.writestr(f"{root}/data.pkl", buf.getvalue())
        zf.writestr(f"{root}/byteorder", b"little")
        for key, content in records.items():
            with zf.open(f"{root}/data/{key}", "w", force_zip64=True) as f:
                if isinstance(content, bytes):
                    f.write(content)
                else:
                    chunk = bytes(1 << 24)
                    left = content
                    while left > 0:
                        f.write(chunk[: min(left, len(chunk))])
                        left -= len(chunk)
        zf.writestr(f"{root}/version", b"3\n")
    return path


# ---- NVIDIA-style pickles by hand ------------------------------------------------------------------


class NvStorage:
    """Pickles as ``torch.storage._load_from_bytes(<legacy torch.save of the storage>)``, as NVIDIA
    snapshots store every storage. One object pickled many times is one memo entry."""

    def __init__(self, values: torch.Tensor) -> None:
        import warnings

        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.save(values.contiguous().storage(), buf, _use_new_zipfile_serialization=False)
        self.payload = buf.getvalue()

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.payload,))


class NvTensor:
    """Pickles as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``."""

    def __init__(self, storage: NvStorage, size, stride, offset: int = 0) -> None:
        self.storage, self.size, self.stride, self.offset = storage, tuple(size), tuple(stride), offset

    def __reduce__(self):
        args = (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict())
        return (torch._utils._rebuild_tensor_v2, args)


class NvRecord:
    """Pickles as an NVIDIA ``torch_utils.persistence`` module record: ``_reconstruct_persistent_obj(meta)``
    with ``meta = {"type": "class", "module_src", "class_name", "state"}``; ``state`` is the module's
    ``__dict__`` (attributes, ``_parameters``, ``_buffers``, ``_modules``). Write with ``nvidia_pickle``."""

    def __init__(self, class_name: str, attrs=None, params=None, buffers=None, modules=None) -> None:
        self.class_name = class_name
        self.attrs, self.params = dict(attrs or {}), dict(params or {})
        self.buffers, self.modules = dict(buffers or {}), dict(modules or {})

    def __reduce__(self):
        state = {"training": False, **self.attrs}
        state["_parameters"] = collections.OrderedDict(
            (k, torch.nn.Parameter(v.detach().clone(), requires_grad=False)) for k, v in self.params.items()
        )
        state["_buffers"] = collections.OrderedDict((k, v.detach().clone()) for k, v in self.buffers.items())
        state["_modules"] = collections.OrderedDict(self.modules)
        meta = {"type": "class", "module_src": "# networks.py (not stored here)", "class_name": self.class_name}
        meta["state"] = state
        return (_persistence_function(), (meta,))


def _persistence_function():
    import sys

    mod = sys.modules.get("torch_utils.persistence")
    if mod is None or not hasattr(mod, "_reconstruct_persistent_obj"):
        raise RuntimeError("call nvidia_pickle(), which provides torch_utils.persistence while pickling")
    return mod._reconstruct_persistent_obj


def nvidia_pickle(obj, protocol: int = 4) -> bytes:
    """``pickle.dumps(obj)`` with a stand-in ``torch_utils.persistence`` module present (for ``NvRecord``)."""
    import sys
    import types

    def _reconstruct_persistent_obj(meta):  # never called: the name is all that is pickled
        raise RuntimeError("a pickling stand-in")

    pkg, mod = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")
    _reconstruct_persistent_obj.__module__ = mod.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    pkg.persistence = mod
    saved = {k: sys.modules.get(k) for k in (pkg.__name__, mod.__name__)}
    sys.modules.update({pkg.__name__: pkg, mod.__name__: mod})
    try:
        return pickle.dumps(obj, protocol=protocol)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


# ---- the hostile files -------------------------------------------------------------------------


def rosinality_shapes(resolution: int, style_dim: int, channels: int, n_mlp: int = 8) -> dict[str, tuple]:
    """Key -> shape of a rosinality ``g_ema`` with every width ``channels`` (no blur kernels)."""
    S, C = style_dim, channels
    shapes: dict[str, tuple] = {}
    for i in range(1, n_mlp + 1):
        shapes[f"style.{i}.weight"], shapes[f"style.{i}.bias"] = (S, S), (S,)
    shapes["input.input"] = (1, C, 4, 4)

    def conv(name):
        shapes[f"{name}.conv.weight"] = (1, C, C, 3, 3)
        shapes[f"{name}.conv.modulation.weight"], shapes[f"{name}.conv.modulation.bias"] = (C, S), (C,)
        shapes[f"{name}.noise.weight"], shapes[f"{name}.activate.bias"] = (1,), (C,)

    def rgb(name):
        shapes[f"{name}.conv.weight"], shapes[f"{name}.bias"] = (1, 3, C, 1, 1), (1, 3, 1, 1)
        shapes[f"{name}.conv.modulation.weight"], shapes[f"{name}.conv.modulation.bias"] = (C, S), (C,)

    conv("conv1")
    rgb("to_rgb1")
    n_blocks = resolution.bit_length() - 3  # blocks after 4x4
    for j in range(n_blocks):
        conv(f"convs.{2 * j}")
        conv(f"convs.{2 * j + 1}")
        rgb(f"to_rgbs.{j}")
    r = 4
    for i in range(2 * n_blocks + 1):
        shapes[f"noises.noise_{i}"] = (1, 1, r, r)
        if i % 2 == 0:
            r *= 2
    return shapes


def rosinality_state(
    resolution: int = 8, style_dim: int = 8, channels: int = 4, n_mlp: int = 2, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A small valid rosinality ``g_ema`` state dict with random weights (and the [1,3,3,1] kernels)."""
    g = torch.Generator().manual_seed(seed)
    sd = {
        k: torch.randn(s, generator=g) * 0.5
        for k, s in rosinality_shapes(resolution, style_dim, channels, n_mlp).items()
    }
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = torch.outer(taps, taps) / 64 * 4
    for j in range(resolution.bit_length() - 3):
        sd[f"convs.{2 * j}.conv.blur.kernel"] = kernel.clone()
        sd[f"to_rgbs.{j}.upsample.kernel"] = kernel.clone()
    return sd


def stride0_rosinality(path, *, resolution: int = 64, style_dim: int = 2048, channels: int = 3072) -> Path:
    """A rosinality ``.pt`` of a few KB whose every tensor is one float broadcast (stride 0) to full size.

    At the defaults the declared generator holds about 1.2 G floats (4.9 GB).
    """
    one = torch.zeros(1)
    sd = {k: one.expand(s) for k, s in rosinality_shapes(resolution, style_dim, channels).items()}
    torch.save({"g_ema": sd, "latent_avg": one.expand(style_dim)}, path)
    return Path(path)


def memo_bomb_pickle(path, index: int = 225_000_000) -> Path:
    """9 bytes: PROTO 2, NONE, LONG_BINPUT ``index``, STOP (the C unpickler sizes its memo to 2 x index)."""
    path = Path(path)
    path.write_bytes(b"\x80\x02N" + b"r" + struct.pack("<I", index) + b".")
    return path


def flip_memo_index(src, dst, bit: int = 27) -> Path:
    """Copy the NVIDIA snapshot ``src`` with one bit set in the index of a ``LONG_BINPUT`` never read back."""
    data = bytearray(Path(src).read_bytes())
    ops = list(pickletools.genops(bytes(data)))
    read_back = {arg for op, arg, _ in ops if op.name in ("BINGET", "LONG_BINGET", "GET")}
    for op, arg, pos in ops:
        if op.name == "LONG_BINPUT" and arg not in read_back and not (arg >> bit) & 1:
            struct.pack_into("<I", data, pos + 1, arg | (1 << bit))
            Path(dst).write_bytes(bytes(data))
            return Path(dst)
    raise ValueError(f"{src}: no unused LONG_BINPUT to flip")


def dcgan_shapes(nz: int, ngf: int, n_up: int = 4, nc: int = 3) -> dict[str, tuple]:
    """Key -> shape of the DCGAN tutorial's ``netG`` state dict."""
    widths = [ngf * 2 ** (n_up - 1 - i) for i in range(n_up)]
    shapes: dict[str, tuple] = {}
    cin, i = nz, 0
    for w in widths:
        shapes[f"main.{i}.weight"] = (cin, w, 4, 4)
        for k in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"main.{i + 1}.{k}"] = (w,)
        shapes[f"main.{i + 1}.num_batches_tracked"] = ()
        cin, i = w, i + 3
    shapes[f"main.{i}.weight"] = (cin, nc, 4, 4)
    return shapes


def zip_bomb_dcgan(path, *, nz: int = 100, ngf: int = 1024, level: int = 9) -> Path:
    """A DCGAN-tutorial ``.pt`` whose records are deflated zeros (ngf 1024: 2.9 GB inflated, about 3 MB)."""
    obj, records = {}, {}
    for n, (key, shape) in enumerate(dcgan_shapes(nz, ngf).items()):
        numel = 1
        for s in shape:
            numel *= s
        cls = torch.LongStorage if key.endswith("num_batches_tracked") else torch.FloatStorage
        ref = StorageRef(str(n), numel, cls)
        obj[key] = TensorRef(ref, shape)
        records[str(n)] = numel * 8 if cls is torch.LongStorage else numel * 4
    return torch_zip(path, {"netG_state_dict": obj}, records, compress=True, level=level)


def slow_probe_pt(path, *, pickle_bytes: int = (64 << 20) - 64) -> Path:
    """A ``.pt`` of about 62 KB whose deflated ``data.pkl`` holds ``pickle_bytes`` of NONE, POP opcodes."""
    path = Path(path)
    body = b"\x80\x02" + b"N0" * ((pickle_bytes - 4) // 2) + b"N."
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr(f"{path.stem}/data.pkl", body)
        zf.writestr(f"{path.stem}/version", b"3\n")
    return path


def many_ops_pickle(path, ops: int) -> Path:
    """A pickle of ``ops`` opcodes (NONE, POP pairs) that builds nothing: the cost of walking opcodes."""
    path = Path(path)
    path.write_bytes(b"\x80\x02" + b"N0" * ((ops - 3) // 2) + b"N.")
    return path


def many_dicts_pickle(path, ops: int) -> Path:
    """A pickle of ``ops`` opcodes that keeps an empty dict per two of them (a list of dicts):
    what unpickling can allocate per byte of file."""
    path = Path(path)
    path.write_bytes(b"\x80\x02]" + b"}a" * ((ops - 3) // 2) + b".")
    return path


def many_ops_torch_zip(path, items: int) -> Path:
    """A torch archive naming rosinality keys whose ``data.pkl`` also holds a list of ``items`` Nones
    (about one opcode each): the cost of torch's own unpickler on a long pickle."""
    obj = {"g_ema": {"style.1.weight": None, "input.input": None}, "padding": [None] * items}
    return torch_zip(path, obj, {})


def legacy_memo_bomb(path, keys=("g_ema",), index: int = 225_000_000) -> Path:
    """A legacy ``torch.save`` stream whose object pickle (a dict of ``keys``) ends by storing itself
    at memo index ``index``: a valid pickle that the C unpickler answers with a 2 x index memo."""
    buf = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    body = pickle.dumps(dict.fromkeys(keys), protocol=2)
    buf.write(body[:-1] + b"r" + struct.pack("<I", index) + b".")
    pickle.dump([], buf, protocol=2)
    Path(path).write_bytes(buf.getvalue())
    return Path(path)


def huge_legacy_storage(path, *, numel: int = 1 << 29) -> Path:
    """A legacy (non-zip) ``torch.save`` stream whose one tensor declares a storage of ``numel`` floats."""
    buf = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    ref = StorageRef("0", numel)
    _LegacyPickler(buf, protocol=2).dump({"g_ema": {"style.1.weight": TensorRef(ref, (numel,))}})
    pickle.dump(["0"], buf, protocol=2)
    buf.write(struct.pack("<q", numel))
    buf.write(bytes(64))
    Path(path).write_bytes(buf.getvalue())
    return Path(path)


def source_replaced_pkl(src, dst, sentinel) -> int:
    """Copy the NVIDIA snapshot ``src`` to ``dst`` with every stored module source (the strings that
    start ``# Copyright``) replaced, at the same length, by code that would create ``sentinel``.
    Returns how many sources were replaced."""
    data = bytearray(Path(src).read_bytes())
    replaced = 0
    for op, arg, pos in list(pickletools.genops(bytes(data))):
        if op.name == "BINUNICODE" and isinstance(arg, str) and arg.startswith("# Copyright"):
            n = len(arg.encode("utf-8"))
            code = f"import pathlib; pathlib.Path({str(sentinel)!r}).touch()\n".encode()
            data[pos + 5 : pos + 5 + n] = code + b"#" * (n - len(code))
            replaced += 1
    Path(dst).write_bytes(bytes(data))
    return replaced
