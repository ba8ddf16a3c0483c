"""NVIDIA stylegan3 ``.pkl`` snapshots (StyleGAN3-T and -R) -> ``StyleGAN3Generator``.

The file is read by ``nvidia_pkl.read_snapshot`` (the restricted unpickler: no code from the
file runs, ``module_src`` is dropped unread); ``nvidia_pkl.load_nvidia_pkl`` hands the ``G_ema``
record here when its synthesis network has a Fourier-feature ``input``. Every attribute read from
a record is type-checked (a wrong type or an out-of-range value is a one-line ``CheckpointError``
naming the file and the attribute), and the layer plan is checked to add up before any tensor is
used. What is read:

* ``mapping``: ``fc{i}.weight/bias`` (lr multiplier from ``bias_gain``), ``w_avg``; ``c_dim`` must be 0;
* ``synthesis.input``: ``affine``, ``weight``, the ``transform`` / ``freqs`` / ``phases`` buffers,
  ``channels``, ``size``, ``sampling_rate``, ``bandwidth``;
* each ``synthesis.L*`` layer (in ``layer_names`` order): ``weight``, ``bias``, ``affine``,
  ``magnitude_ema``, ``up_filter`` / ``down_filter`` (the stored filters are used as stored) and
  the attributes that fix its computation (``in_size``, ``out_size``, ``conv_kernel``,
  ``up_factor``, ``down_factor``, ``padding``, ``conv_clamp``, ``is_torgb``, ...);
* ``output_scale``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.checkpoints.nvidia_pkl import PersistentRecord, _NDArray, _need, record_tensor
from engine.checkpoints.torchfile import StateMismatch, load_into, read_tensor
from engine.errors import AtlasError, CheckpointError
from engine.hashing import file_sha256
from engine.models.stylegan3 import MAX_SIZE, LayerSpec, StyleGAN3Config, StyleGAN3Generator

FORMAT = "nvidia-stylegan3"
_LAYER_NAME = re.compile(r"L\d{1,3}_\d{1,5}_\d{1,5}")
_MISSING = object()


def is_stylegan3(G: PersistentRecord) -> bool:
    """Whether a ``G_ema`` record is a stylegan3 generator (a synthesis network with a Fourier ``input``)."""
    syn = G.module("synthesis")
    return syn is not None and syn.class_name == "SynthesisNetwork" and syn.module("input") is not None


# ---- typed attribute readers ---------------------------------------------------------------------


class _Reader:
    """Reads attributes of one record, each checked for type and range."""

    def __init__(self, rec: PersistentRecord, where: str, path: Path) -> None:
        self.rec, self.where, self.path = rec, where, path

    def fail(self, name: str, value: Any, want: str) -> CheckpointError:
        shown = value.array.tolist() if isinstance(value, _NDArray) else value
        text = repr(shown)
        if len(text) > 40:
            text = text[:37] + "..."
        kind = "an array" if isinstance(value, _NDArray) else type(value).__name__
        return CheckpointError(f"{self.path}: G_ema.{self.where}.{name} is {kind} {text}, expected {want}")

    def get(self, name: str, default: Any = _MISSING) -> Any:
        v = self.rec.attr(name, _MISSING)
        if v is _MISSING:
            if default is not _MISSING:
                return default
            raise CheckpointError(f"{self.path}: G_ema.{self.where} has no attribute '{name}'")
        return v

    def int(self, name: str, lo: int, hi: int, default: Any = _MISSING) -> int:
        v = self.get(name, default)
        if type(v) is not int or not lo <= v <= hi:
            raise self.fail(name, v, f"an integer in {lo}..{hi}")
        return v

    def number(self, name: str, lo: float, hi: float, default: Any = _MISSING) -> float:
        v = self.get(name, default)
        if type(v) not in (int, float) or not math.isfinite(v) or not lo <= v <= hi:
            raise self.fail(name, v, f"a number in {lo:g}..{hi:g}")
        return float(v)

    def optional_number(self, name: str, lo: float, hi: float) -> float | None:
        return None if self.get(name, None) is None else self.number(name, lo, hi)

    def bool(self, name: str, default: Any = _MISSING) -> bool:
        v = self.get(name, default)
        if type(v) is not bool:
            raise self.fail(name, v, "True or False")
        return v

    def str(self, name: str, default: Any = _MISSING) -> str:
        v = self.get(name, default)
        if type(v) is not str:
            raise self.fail(name, v, "a string")
        return v

    def size(self, name: str) -> tuple[int, int]:
        """A ``(width, height)`` stored as an int, a pair, or numpy's broadcast int64 array of shape [2]."""
        v = self.get(name)
        if isinstance(v, _NDArray) and isinstance(v.array, np.ndarray):
            a = v.array
            if a.shape == (2,) and a.dtype.kind in "iu":
                pair = tuple(int(x) for x in a)
            else:
                raise self.fail(name, v, "an integer array of shape [2]")
        elif type(v) is int:
            pair = (v, v)
        elif isinstance(v, (list, tuple)) and len(v) == 2 and all(type(x) is int for x in v):
            pair = tuple(v)
        else:
            raise self.fail(name, v, "a size (width, height)")
        if not all(1 <= s <= MAX_SIZE for s in pair):
            raise self.fail(name, v, f"sizes in 1..{MAX_SIZE}")
        return pair

    def padding(self, name: str) -> tuple[int, int, int, int]:
        v = self.get(name)
        if not isinstance(v, (list, tuple)) or len(v) != 4 or not all(type(x) is int for x in v):
            raise self.fail(name, v, "four integers [x0, x1, y0, y1]")
        if any(abs(x) > 4 * MAX_SIZE for x in v):
            raise self.fail(name, v, "paddings of a plausible size")
        return tuple(v)


def _linear(rec: PersistentRecord, where: str, path: Path, sd: dict, key: str) -> tuple[torch.Tensor, float]:
    """Copy a FullyConnectedLayer's weight/bias into ``sd[key.*]``; returns (weight, lr multiplier)."""
    r = _Reader(rec, where, path)
    w = record_tensor(rec, "weight", where, path, 2)
    b = record_tensor(rec, "bias", where, path, 1)
    if w.dim() != 2 or b.shape != (w.shape[0],):
        raise CheckpointError(f"{path}: G_ema.{where} has weight {list(w.shape)} and bias {list(b.shape)}")
    lr_mul = r.number("bias_gain", 1e-6, 1e6, 1.0)
    gain = r.number("weight_gain", 0.0, 1e6, lr_mul / math.sqrt(w.shape[1]))
    if not math.isclose(gain, lr_mul / math.sqrt(w.shape[1]), rel_tol=1e-6):
        raise CheckpointError(
            f"{path}: G_ema.{where} uses weight gain {gain:.6g}, expected {lr_mul / math.sqrt(w.shape[1]):.6g}; "
            "unsupported variant"
        )
    sd[f"{key}.weight"], sd[f"{key}.bias"] = w, b
    return w, lr_mul


def _filter(rec: PersistentRecord, name: str, taps: int, radial: bool, where: str, path: Path) -> torch.Tensor | None:
    f = read_tensor(rec.param(name))
    if taps == 1:
        if f is not None and (not isinstance(f, torch.Tensor) or f.numel() != 1 or float(f.reshape(-1)[0]) != 1.0):
            raise CheckpointError(f"{path}: G_ema.{where}.{name} should be absent for a one-tap filter")
        return None
    want = (taps, taps) if radial else (taps,)
    if not isinstance(f, torch.Tensor) or tuple(f.shape) != want or not f.is_floating_point():
        got = list(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
        raise CheckpointError(f"{path}: G_ema.{where}.{name} is {got}, expected a float filter of shape {list(want)}")
    if not torch.isfinite(f).all():
        raise CheckpointError(f"{path}: G_ema.{where}.{name} holds non-finite values")
    return f


def convert_stylegan3(G: PersistentRecord, path: Path) -> tuple[StyleGAN3Config, dict[str, torch.Tensor]]:
    """``(config, our state dict)`` from the ``G_ema`` record of a stylegan3 snapshot."""
    g = _Reader(G, "", path)
    g.where = "Generator"
    c_dim = g.int("c_dim", 0, 1 << 20, 0)
    if c_dim:
        raise CheckpointError(f"{path}: conditional StyleGAN3 generators (c_dim={c_dim}) are not supported")
    mapping = _need(G.module("mapping"), "mapping network", path)
    syn = _need(G.module("synthesis"), "synthesis network", path)
    if mapping.class_name != "MappingNetwork":
        raise CheckpointError(f"{path}: G_ema.mapping is a {mapping.class_name}, not a MappingNetwork")
    sd: dict[str, torch.Tensor] = {}

    # mapping network
    m = _Reader(mapping, "mapping", path)
    n_map = m.int("num_layers", 1, 64)
    if mapping.attr("embed") is not None:
        raise CheckpointError(f"{path}: G_ema.mapping has a label embedding; conditional StyleGAN3 is not supported")
    lr_mul = None
    for i in range(n_map):
        fc = _need(mapping.module(f"fc{i}"), f"mapping.fc{i}", path)
        if _Reader(fc, f"mapping.fc{i}", path).str("activation", "lrelu") != "lrelu":
            raise CheckpointError(f"{path}: G_ema.mapping.fc{i} does not use lrelu; unsupported variant")
        _, mul = _linear(fc, f"mapping.fc{i}", path, sd, f"mapping_net.fcs.{i}")
        if lr_mul is not None and not math.isclose(mul, lr_mul):
            raise CheckpointError(f"{path}: G_ema.mapping layers use different lr multipliers; unsupported")
        lr_mul = mul
    z_dim = int(sd["mapping_net.fcs.0.weight"].shape[1])
    w_dim = int(sd[f"mapping_net.fcs.{n_map - 1}.weight"].shape[0])
    if mapping.param("w_avg") is None:
        raise CheckpointError(f"{path}: G_ema.mapping has no w_avg")
    sd["w_avg"] = record_tensor(mapping, "w_avg", "mapping", path)
    w_avg_beta = m.optional_number("w_avg_beta", 0.0, 1.0) or 0.0

    # synthesis network
    s = _Reader(syn, "synthesis", path)
    R = s.int("img_resolution", 1, MAX_SIZE)
    img_channels = s.int("img_channels", 1, 16)
    output_scale = s.number("output_scale", 1e-6, 1e6, 1.0)
    names = s.get("layer_names")
    if not isinstance(names, list) or not names or len(names) > 256:
        raise s.fail("layer_names", names, "a list of layer names")
    for n in names:
        if type(n) is not str or not _LAYER_NAME.fullmatch(n):
            raise s.fail("layer_names", n, "names like L0_36_512")
    if len(set(names)) != len(names):
        raise CheckpointError(f"{path}: G_ema.synthesis.layer_names repeats a name")
    num_ws = m.int("num_ws", 1, 1024)
    if num_ws != len(names) + 1:
        raise CheckpointError(f"{path}: G_ema.mapping makes {num_ws} ws for {len(names) + 1} synthesis inputs")

    inp = _need(syn.module("input"), "synthesis.input", path)
    ri = _Reader(inp, "synthesis.input", path)
    in_channels = ri.int("channels", 1, 1 << 16)
    in_size = ri.size("size")
    in_rate = ri.number("sampling_rate", 1e-3, 1e6)
    bandwidth = ri.number("bandwidth", 0.0, in_rate / 2)
    if bandwidth >= in_rate / 2:
        raise ri.fail("bandwidth", bandwidth, f"below half the sampling rate ({in_rate / 2:g})")
    _linear(
        _need(inp.module("affine"), "synthesis.input.affine", path),
        "synthesis.input.affine",
        path,
        sd,
        "synthesis_net.input.affine",
    )
    for key in ("weight", "transform", "freqs", "phases"):
        sd[f"synthesis_net.input.{key}"] = record_tensor(inp, key, "synthesis.input", path)

    specs = []
    for name in names:
        lay = _need(syn.module(name), f"synthesis.{name}", path)
        where = f"synthesis.{name}"
        r = _Reader(lay, where, path)
        torgb = r.bool("is_torgb")
        k = r.int("conv_kernel", 1, 15)
        up_taps = r.int("up_taps", 1, 256)
        down_taps = r.int("down_taps", 1, 256)
        radial = r.bool("down_radial", False)
        spec = LayerSpec(
            name=name,
            is_torgb=torgb,
            is_critically_sampled=r.bool("is_critically_sampled", False),
            in_channels=r.int("in_channels", 1, 1 << 16),
            out_channels=r.int("out_channels", 1, 1 << 16),
            in_size=r.size("in_size"),
            out_size=r.size("out_size"),
            in_sampling_rate=r.number("in_sampling_rate", 1e-3, 1e6),
            out_sampling_rate=r.number("out_sampling_rate", 1e-3, 1e6),
            in_cutoff=r.number("in_cutoff", 0.0, 1e6),
            out_cutoff=r.number("out_cutoff", 0.0, 1e6),
            in_half_width=r.number("in_half_width", 0.0, 1e6),
            out_half_width=r.number("out_half_width", 0.0, 1e6),
            conv_kernel=k,
            up_factor=r.int("up_factor", 1, 16),
            down_factor=r.int("down_factor", 1, 16),
            up_taps=up_taps,
            down_taps=down_taps,
            down_radial=radial,
            padding=r.padding("padding"),
            conv_clamp=r.optional_number("conv_clamp", 0.0, 1e9),
            use_fp16=r.bool("use_fp16", False),
            magnitude_ema_beta=r.number("magnitude_ema_beta", 0.0, 1.0, 0.999),
        )
        pre = f"synthesis_net.{name}"
        sd[f"{pre}.weight"] = record_tensor(lay, "weight", where, path, 4)
        sd[f"{pre}.bias"] = record_tensor(lay, "bias", where, path, 1)
        ema = read_tensor(record_tensor(lay, "magnitude_ema", where, path))
        if ema.numel() != 1 or not 0 < float(ema.reshape(-1)[0]) < math.inf:
            raise CheckpointError(f"{path}: G_ema.{where}.magnitude_ema is not one positive number")
        sd[f"{pre}.magnitude_ema"] = ema.reshape([])
        _linear(_need(lay.module("affine"), f"{where}.affine", path), f"{where}.affine", path, sd, f"{pre}.affine")
        filters = {
            "up_filter": _filter(lay, "up_filter", up_taps, False, where, path),
            "down_filter": _filter(lay, "down_filter", down_taps, radial, where, path),
        }
        for key, f in filters.items():
            if f is not None:
                sd[f"{pre}.{key}"] = f
        specs.append((spec, filters))
    try:
        cfg = StyleGAN3Config(
            resolution=R,
            layers=tuple(spec for spec, _ in specs),
            input_channels=in_channels,
            input_size=in_size,
            input_sampling_rate=in_rate,
            input_bandwidth=bandwidth,
            z_dim=z_dim,
            w_dim=w_dim,
            img_channels=img_channels,
            mapping_layers=n_map,
            mapping_lr_mul=lr_mul,
            w_avg_beta=w_avg_beta,
            output_scale=output_scale,
            margin_size=s.int("margin_size", 0, MAX_SIZE, 10),
            num_critical=s.int("num_critical", 0, 256, 2),
        )
    except CheckpointError:
        raise
    except Exception as exc:  # AtlasError from the plan checks
        raise CheckpointError(f"{path}: G_ema is not a StyleGAN3 generator we can run: {exc}") from None
    return cfg, sd


def load_stylegan3(G: PersistentRecord, path: Path) -> StyleGAN3Generator:
    """A ``StyleGAN3Generator`` (eval mode, CPU) from a snapshot's ``G_ema`` record."""
    try:
        return _load(G, path)
    except AtlasError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever else a malformed record trips is the file's fault
        raise CheckpointError(
            f"{path}: G_ema is not a StyleGAN3 generator we can read ({type(exc).__name__}: {str(exc)[:120]})"
        ) from None


def plan_shapes(cfg: StyleGAN3Config) -> dict[str, tuple[int, ...]]:
    """The shapes ``cfg``'s layer plan gives the generator's weight tensors (mapping, input, every layer)."""
    c, shapes = cfg, {}
    dims = [c.z_dim] + [c.w_dim] * c.mapping_layers
    for i in range(c.mapping_layers):
        shapes[f"mapping_net.fcs.{i}.weight"], shapes[f"mapping_net.fcs.{i}.bias"] = (
            (dims[i + 1], dims[i]),
            (dims[i + 1],),
        )
    C = c.input_channels
    shapes["synthesis_net.input.weight"] = (C, C)
    shapes["synthesis_net.input.affine.weight"], shapes["synthesis_net.input.affine.bias"] = (4, c.w_dim), (4,)
    shapes["synthesis_net.input.freqs"], shapes["synthesis_net.input.phases"] = (C, 2), (C,)
    for spec in c.layers:
        pre, k = f"synthesis_net.{spec.name}", spec.conv_kernel
        shapes[f"{pre}.weight"] = (spec.out_channels, spec.in_channels, k, k)
        shapes[f"{pre}.bias"] = (spec.out_channels,)
        shapes[f"{pre}.affine.weight"], shapes[f"{pre}.affine.bias"] = (spec.in_channels, c.w_dim), (spec.in_channels,)
    return shapes


def _check_plan(cfg: StyleGAN3Config, sd: dict, path: Path) -> None:
    """Every weight the plan implies is in the file with that shape, before the model is built: the
    attributes of a hostile file cannot declare layers far larger than its tensors."""
    for key, shape in plan_shapes(cfg).items():
        t = sd.get(key)
        if t is None or tuple(t.shape) != shape:
            got = "missing" if t is None else f"of shape {list(t.shape)}"
            where = key.replace("synthesis_net.", "synthesis.").replace("mapping_net.fcs.", "mapping.fc")
            raise CheckpointError(
                f"{path}: G_ema.{where} is {got}, which does not fit the StyleGAN3 layer plan it declares "
                f"({list(shape)})"
            )


def _load(G: PersistentRecord, path: Path) -> StyleGAN3Generator:
    cfg, sd = convert_stylegan3(G, path)
    _check_plan(cfg, sd, path)
    # Built on the CPU (a meta-device build would import torch._dynamo: seconds on first use), then
    # filled one tensor at a time (load_into): each is read from the file into the model's own
    # parameter, whose initial values are released; loading holds the model plus one tensor.
    # One-tap filters are None in both.
    gen = StyleGAN3Generator(cfg, name=path.stem, design_filters=False)
    try:
        load_into(gen, sd)
    except StateMismatch as exc:
        raise CheckpointError(f"{path}: G_ema does not fit the StyleGAN3 layer plan it declares ({exc})") from None
    gen.eval()
    gen.w_avg_source = "mapping.w_avg stored in the checkpoint"
    gen.format = FORMAT
    gen.identity = file_sha256(path)
    gen.source = str(path)
    return gen
