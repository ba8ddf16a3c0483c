"""ProGAN state dicts in the two PyTorch layouts that circulate -> ``ProGANGenerator``.

=====================  ======================================================  ==========================
layout                 keys                                                    runtime scale ``s``
=====================  ======================================================  ==========================
netdissect (GANSpace)  ``layer{k}.conv.weight``, ``layer{k}.wscale.b``,         not stored: ``sqrt(2) /
                       ``output_{R}x{R}.conv.weight``, ``...wscale.b``          (k_size sqrt(C_in))``,
                                                                               output ``1 / sqrt(C_in)``
netdissect, old names  ``features.{i}.conv.weight``, ``features.{i}.wscale.b``  the same constants
                       (no ``wscale.scale``), ``output.conv.weight`` / ``.b``
GANLatentDiscovery     ``features.{i}.conv.weight``, ``features.{i}.wscale.b``,  **stored**: ``wscale.scale``
                       ``features.{i}.wscale.scale``, ``output.*`` likewise    (a learned ``[1]`` tensor)
=====================  ======================================================  ==========================

Both compute ``conv(x, W) * s + b``; the loader folds ``s`` into the weight (``W * s`` in
float32, as the references scale the output). GLD's stored scales differ from netdissect's constants, and netdissect's own
``from_pth_file`` silently drops them when it converts a GLD file (its images are then wrong by
up to 0.4), so the layout decides: a file with ``wscale.scale`` uses its scales, every layer's.

Resolution, latent size and widths come from the weight shapes; every key must be accounted for
and every shape must fit the inferred network. A ``{"state_dict": ...}`` wrapper (netdissect
accepts one) is unwrapped. Files are read by ``torchfile.open_torch_file`` (legacy stream or zip
container, no code run, every declared size checked against the file), each layer's tensors
when it is folded.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from engine.checkpoints.torchfile import (
    TensorRef,
    all_finite,
    head_contains,
    is_tensor,
    open_torch_file,
    pickle_strings,
)
from engine.errors import CheckpointError
from engine.hashing import file_sha256
from engine.models.proggan import ProGANConfig, ProGANGenerator
from engine.models.registry import CheckpointFormat, register_format

FORMAT = "proggan"
NETDISSECT = "netdissect (GANSpace)"
NETDISSECT_OLD = "netdissect, old features.N names (GANSpace)"
GLD = "GANLatentDiscovery"

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def netdissect_scale(c_in: int, kernel: int, *, output: bool) -> float:
    """netdissect's ``WScaleLayer`` constant: gain / sqrt(fan_in), gain sqrt(2)/k (1 for the output)."""
    gain = 1.0 if output else math.sqrt(2.0) / kernel
    return gain / math.sqrt(c_in)


class _Layer:
    """One stored layer: its file prefix, weight, bias and (GLD) stored scale."""

    def __init__(self, prefix: str, weight: TensorRef, bias: TensorRef, scale: TensorRef | None) -> None:
        self.prefix, self.weight, self.bias, self.scale = prefix, weight, bias, scale


def _state_dict(obj, path: Path) -> dict[str, TensorRef]:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a ProGAN state dict")
    for k, v in obj.items():
        if not isinstance(k, str):
            raise CheckpointError(f"{path}: the state dict has a key of type {type(k).__name__} ({str(k)[:40]!r})")
        if not is_tensor(v):
            raise CheckpointError(f"{path}: '{k[:80]}' is a {type(v).__name__}, not a tensor")
    return obj


def _layout(sd: dict[str, torch.Tensor], path: Path) -> str:
    if "layer1.conv.weight" in sd:
        return NETDISSECT
    if "features.0.conv.weight" in sd:
        return GLD if any(k.endswith(".wscale.scale") for k in sd) else NETDISSECT_OLD
    raise CheckpointError(
        f"{path}: no ProGAN generator weights (expected layer1.conv.weight as netdissect/GANSpace stores them, "
        "or features.0.conv.weight as GANLatentDiscovery does)"
    )


def _take(sd: dict, used: set, key: str, path: Path) -> torch.Tensor:
    if key not in sd:
        raise CheckpointError(f"{path}: missing {key}")
    used.add(key)
    t = sd[key]
    if t.dtype not in _FLOATS:
        raise CheckpointError(f"{path}: {key} holds {t.dtype} values, not floating point")
    return t


def _layers(sd: dict[str, torch.Tensor], layout: str, path: Path) -> tuple[list[_Layer], _Layer, int | None]:
    """``(blocks, output layer, resolution named by the output key or None)``; every key is used."""
    used: set[str] = set()
    stored = layout == GLD
    blocks: list[_Layer] = []
    name = "layer{}" if layout == NETDISSECT else "features.{}"
    first = 1 if layout == NETDISSECT else 0
    pattern = re.compile(re.escape(name).replace(r"\{\}", r"(\d+)") + r"\.")
    present = sorted({int(m.group(1)) for k in sd if (m := pattern.match(k))})
    expect = list(range(first, first + len(present)))
    if present != expect:
        gap = next(i for i in expect if i not in present)
        raise CheckpointError(
            f"{path}: missing {name.format(gap)}.conv.weight (the file has {name.format('N')} for N in "
            f"{', '.join(map(str, present[:12]))}{'...' if len(present) > 12 else ''})"
        )
    i = first
    while f"{name.format(i)}.conv.weight" in sd:
        pre = name.format(i)
        w = _take(sd, used, f"{pre}.conv.weight", path)
        b = _take(sd, used, f"{pre}.wscale.b", path)
        s = _take(sd, used, f"{pre}.wscale.scale", path) if stored else None
        blocks.append(_Layer(pre, w, b, s))
        i += 1
    named_res = None
    if layout == NETDISSECT:
        outs = [m for k in sd if (m := re.fullmatch(r"(output_(\d+)x(\d+))\.conv\.weight", k))]
        if len(outs) != 1:
            found = ", ".join(m.group(1) for m in outs) or "none"
            raise CheckpointError(f"{path}: expected one output_RxR layer, found {found}")
        out_pre = outs[0].group(1)
        if outs[0].group(2) != outs[0].group(3):
            raise CheckpointError(f"{path}: {out_pre} is not square")
        named_res = int(outs[0].group(2))
    else:
        out_pre = "output"
    out = _Layer(
        out_pre,
        _take(sd, used, f"{out_pre}.conv.weight", path),
        _take(sd, used, f"{out_pre}.wscale.b", path),
        _take(sd, used, f"{out_pre}.wscale.scale", path) if stored else None,
    )
    extra = [k for k in sd if k not in used]
    if extra:
        more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
        raise CheckpointError(
            f"{path}: unexpected keys for a {layout} ProGAN: {', '.join(k[:60] for k in extra[:3])}{more}"
        )
    return blocks, out, named_res


def _config(blocks: list[_Layer], out: _Layer, named_res: int | None, path: Path) -> ProGANConfig:
    if len(blocks) < 2 or len(blocks) % 2:
        raise CheckpointError(
            f"{path}: {len(blocks)} convolution blocks; a ProGAN generator has an even number (two per resolution)"
        )
    w1 = blocks[0].weight
    if w1.dim() != 4:
        raise CheckpointError(f"{path}: {blocks[0].prefix}.conv.weight has shape {list(w1.shape)}, not [C, z, 4, 4]")
    widths = []
    for j in range(len(blocks) // 2):
        w = blocks[2 * j].weight
        if w.dim() != 4:
            raise CheckpointError(f"{path}: {blocks[2 * j].prefix}.conv.weight has shape {list(w.shape)}")
        widths.append(int(w.shape[0]))
    img = out.weight.shape[0] if out.weight.dim() == 4 else 0
    cfg = ProGANConfig(z_dim=int(w1.shape[1]), widths=tuple(widths), img_channels=int(img))
    if cfg.z_dim < 1 or min(widths) < 1 or img not in (1, 3):
        raise CheckpointError(f"{path}: latent size {cfg.z_dim}, widths {widths}, {img} image channels: not a ProGAN")
    for k, layer in enumerate(blocks, start=1):
        c_in, c_out, kernel, _ = cfg.block(k)
        _check_shapes(layer, (c_out, c_in, kernel, kernel), path)
    _check_shapes(out, (cfg.img_channels, widths[-1], 1, 1), path)
    if named_res is not None and named_res != cfg.resolution:
        raise CheckpointError(
            f"{path}: {out.prefix} names {named_res}px but the {len(blocks)} blocks make {cfg.resolution}px images"
        )
    return cfg


def _check_shapes(layer: _Layer, shape: tuple[int, ...], path: Path) -> None:
    if tuple(layer.weight.shape) != shape:
        raise CheckpointError(
            f"{path}: {layer.prefix}.conv.weight has shape {list(layer.weight.shape)}, expected {list(shape)}"
        )
    if tuple(layer.bias.shape) != (shape[0],):
        raise CheckpointError(
            f"{path}: {layer.prefix}.wscale.b has shape {list(layer.bias.shape)}, expected [{shape[0]}]"
        )
    if layer.scale is not None and layer.scale.numel() != 1:
        raise CheckpointError(f"{path}: {layer.prefix}.wscale.scale has shape {list(layer.scale.shape)}, expected [1]")


def _scale(layer: _Layer, *, output: bool, path: Path) -> float:
    if layer.scale is None:
        return netdissect_scale(layer.weight.shape[1], layer.weight.shape[-1], output=output)
    s = float(_read(layer.scale).reshape(()).double())
    if not math.isfinite(s) or s == 0.0:
        raise CheckpointError(f"{path}: {layer.prefix}.wscale.scale is {s}")
    return s


def _read(t: TensorRef | torch.Tensor) -> torch.Tensor:
    """A tensor of our own: read from the file, or a copy."""
    return t.read() if isinstance(t, TensorRef) else t.detach().clone()


def _fold(dst: torch.nn.Module, layer: _Layer, scale: float, path: Path) -> None:
    """Give ``dst`` (built on the meta device) ``weight = W * scale`` and the bias, reading this
    layer's tensors from the file now: loading holds the model built so far plus one layer."""
    weight, bias = _read(layer.weight), _read(layer.bias)
    for what, t in (("conv.weight", weight), ("wscale.b", bias)):
        if not all_finite(t):
            raise CheckpointError(f"{path}: {layer.prefix}.{what} holds NaN or infinite values")
    with torch.no_grad():
        weight = weight.float().mul_(scale)  # float() of float32 is the tensor itself: ours, scaled in place
    dst.weight, dst.bias = torch.nn.Parameter(weight), torch.nn.Parameter(bias.float())
    layer.weight = layer.bias = layer.scale = None


def load_proggan(path: str | Path) -> ProGANGenerator:
    """A ``ProGANGenerator`` (eval mode, CPU) from a netdissect or GANLatentDiscovery ``.pth`` file.

    Peak memory: the model plus one layer (the model is built on the meta device, and each layer
    is read from the file when it is folded in).
    """
    path = Path(path)
    sd = _state_dict(open_torch_file(path, what="ProGAN state dict").obj, path)
    layout = _layout(sd, path)
    blocks, out, named_res = _layers(sd, layout, path)
    sd.clear()  # the layers hold the declared tensors now
    cfg = _config(blocks, out, named_res, path)
    scales = [_scale(b, output=False, path=path) for b in blocks] + [_scale(out, output=True, path=path)]
    with torch.device("meta"):  # no memory until each layer is folded in
        gen = ProGANGenerator(cfg, name=path.stem)
    for name, layer, s in zip(gen.layer_names, [*blocks, out], scales, strict=True):
        _fold(getattr(gen, name), layer, s, path)
    gen.format = f"{FORMAT} ({layout} layout)"
    gen.wscale_source = (
        "wscale.scale stored in the file, folded into the weights"
        if layout == GLD
        else "netdissect constants sqrt(2)/(k sqrt(C_in)), output 1/sqrt(C_in), folded into the weights"
    )
    gen.scales = scales
    gen.identity = file_sha256(path)
    gen.source = str(path)
    return gen.eval()


_KEYS = (("layer1.conv.weight", "layer1.wscale.b"), ("features.0.conv.weight", "features.0.wscale.b"))


def probe_proggan(path: Path) -> bool:
    """True for a torch file whose keys name ProGAN layers (scans names; loads no tensor)."""
    strings = pickle_strings(path)
    if strings is not None:
        return any(all(k in strings for k in keys) for keys in _KEYS)
    # a legacy stream keeps every key in the pickles before the data; a damaged zip its data.pkl first
    return any(head_contains(path, tuple(k.encode() for k in keys)) for keys in _KEYS)


register_format(CheckpointFormat(FORMAT, (".pth", ".pt"), probe_proggan, load_proggan))
