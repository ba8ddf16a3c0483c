"""Write NVIDIA-style StyleGAN3 snapshot pickles for tests: re-pickled fixture records, altered at will.

``write_snapshot(obj, path)`` pickles the records ``read_snapshot`` returns (``PersistentRecord``,
numpy-array stand-ins, tensors declared or read) with the same GLOBALs NVIDIA's files use, so a test can take a
real fixture, change one attribute, and see what the loader says. ``records_of(gen)`` turns one of
our ``StyleGAN3Generator``s into such records (a snapshot of any size, for the memory test).
"""

from __future__ import annotations

import io
import pickle
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from engine.checkpoints.nvidia_pkl import PersistentRecord, _EasyDict, _NDArray
from engine.checkpoints.torchfile import TensorRef


@contextmanager
def _fake_persistence():
    """A ``torch_utils.persistence`` module, so pickle can name ``_reconstruct_persistent_obj``."""
    saved = {k: sys.modules.get(k) for k in ("torch_utils", "torch_utils.persistence")}
    pkg = types.ModuleType("torch_utils")
    mod = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - only its name is pickled
        raise AssertionError

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    pkg.persistence = mod
    sys.modules.update({"torch_utils": pkg, "torch_utils.persistence": mod})
    try:
        yield _reconstruct_persistent_obj
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _plain(obj):
    """EasyDict stand-ins back to dicts (they would pickle under our own class name)."""
    if isinstance(obj, _EasyDict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, dict) and type(obj) is dict:
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, PersistentRecord):
        return PersistentRecord(obj.class_name, _plain(obj.state))
    return obj


class _Writer(pickle.Pickler):
    def __init__(self, f, reconstruct, module_src: str) -> None:
        super().__init__(f, protocol=4)
        self.reconstruct, self.module_src = reconstruct, module_src

    def reducer_override(self, obj):
        if isinstance(obj, PersistentRecord):
            meta = {
                "type": "class",
                "version": 6,
                "module_src": self.module_src,
                "class_name": obj.class_name,
                "state": obj.state,
            }
            return self.reconstruct, (meta,)
        if isinstance(obj, _NDArray):
            return obj.array.__reduce__()
        if isinstance(obj, TensorRef):  # a tensor read_snapshot declared: pickled as the tensor it is
            return obj.read().__reduce_ex__(4)
        return NotImplemented


def write_snapshot(obj, path: Path, *, module_src: str = "# the reference network code (never run)\n") -> Path:
    """Pickle ``obj`` (e.g. ``{"G_ema": record}``) the way NVIDIA's snapshots are pickled."""
    buf = io.BytesIO()
    with _fake_persistence() as fn:
        _Writer(buf, fn, module_src).dump(_plain(obj))
    Path(path).write_bytes(buf.getvalue())
    return Path(path)


def _array(values) -> _NDArray:
    a = _NDArray()
    a.array = np.asarray(values, dtype=np.int64)
    return a


def _rec(class_name: str, params=None, buffers=None, modules=None, **attrs) -> PersistentRecord:
    state = {"training": False, "_parameters": params or {}, "_buffers": buffers or {}, "_modules": modules or {}}
    state.update(attrs)
    return PersistentRecord(class_name, state)


def _fc(lin, activation: str = "linear") -> PersistentRecord:
    w = lin.weight.detach().clone()
    return _rec(
        "FullyConnectedLayer",
        {"weight": w, "bias": lin.bias.detach().clone()},
        in_features=w.shape[1],
        out_features=w.shape[0],
        activation=activation,
        weight_gain=float(lin.weight_gain),
        bias_gain=float(lin.lr_mul),
    )


def records_of(gen) -> PersistentRecord:
    """The ``G_ema`` record NVIDIA's code would pickle for our ``StyleGAN3Generator`` ``gen``."""
    c = gen.config
    fcs = {f"fc{i}": _fc(fc, "lrelu") for i, fc in enumerate(gen.mapping_net.fcs)}
    mapping = _rec(
        "MappingNetwork",
        buffers={"w_avg": gen.w_avg.detach().clone()},
        modules=fcs,
        z_dim=c.z_dim,
        c_dim=0,
        w_dim=c.w_dim,
        num_ws=c.num_ws,
        num_layers=c.mapping_layers,
        w_avg_beta=c.w_avg_beta,
        embed=None,
    )
    inp = gen.synthesis_net.input
    layers = {
        "input": _rec(
            "SynthesisInput",
            {"weight": inp.weight.detach().clone()},
            {k: getattr(inp, k).detach().clone() for k in ("transform", "freqs", "phases")},
            {"affine": _fc(inp.affine)},
            w_dim=c.w_dim,
            channels=c.input_channels,
            size=_array(c.input_size),
            sampling_rate=c.input_sampling_rate,
            bandwidth=c.input_bandwidth,
        )
    }
    for s in c.layers:
        m = getattr(gen.synthesis_net, s.name)
        layers[s.name] = _rec(
            "SynthesisLayer",
            {"weight": m.weight.detach().clone(), "bias": m.bias.detach().clone()},
            {
                "magnitude_ema": m.magnitude_ema.detach().clone(),
                "up_filter": None if m.up_filter is None else m.up_filter.clone(),
                "down_filter": None if m.down_filter is None else m.down_filter.clone(),
            },
            {"affine": _fc(m.affine)},
            w_dim=c.w_dim,
            is_torgb=s.is_torgb,
            is_critically_sampled=s.is_critically_sampled,
            use_fp16=s.use_fp16,
            in_channels=s.in_channels,
            out_channels=s.out_channels,
            in_size=_array(s.in_size),
            out_size=_array(s.out_size),
            in_sampling_rate=int(s.in_sampling_rate),
            out_sampling_rate=int(s.out_sampling_rate),
            tmp_sampling_rate=int(s.tmp_sampling_rate),
            in_cutoff=s.in_cutoff,
            out_cutoff=s.out_cutoff,
            in_half_width=s.in_half_width,
            out_half_width=s.out_half_width,
            conv_kernel=s.conv_kernel,
            conv_clamp=None if s.conv_clamp is None else int(s.conv_clamp),
            magnitude_ema_beta=s.magnitude_ema_beta,
            up_factor=s.up_factor,
            up_taps=s.up_taps,
            down_factor=s.down_factor,
            down_taps=s.down_taps,
            down_radial=s.down_radial,
            padding=list(s.padding),
        )
    synthesis = _rec(
        "SynthesisNetwork",
        modules=layers,
        w_dim=c.w_dim,
        num_ws=c.num_ws,
        img_resolution=c.resolution,
        img_channels=c.img_channels,
        num_layers=len(c.layers) - 1,
        num_critical=c.num_critical,
        margin_size=c.margin_size,
        output_scale=c.output_scale,
        layer_names=[s.name for s in c.layers],
    )
    return _rec(
        "Generator",
        modules={"synthesis": synthesis, "mapping": mapping},
        z_dim=c.z_dim,
        c_dim=0,
        w_dim=c.w_dim,
        img_resolution=c.resolution,
        img_channels=c.img_channels,
        num_ws=c.num_ws,
    )


def tensor_bytes(obj) -> int:
    """Total bytes of the tensors reachable in a record tree."""
    seen, total, stack = set(), 0, [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, (torch.Tensor, TensorRef)):
            if id(o) not in seen:
                seen.add(id(o))
                total += o.numel() * o.element_size()
        elif isinstance(o, PersistentRecord):
            stack.append(o.state)
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
    return total
