"""Bring your own generator: a Python file that returns any ``torch.nn.Module``.

The adapter file (this runs the user's own code, by their choice) defines::

    def load_generator():
        ...
        return module, latent_dim          # or a dict, see below

``module(z)`` maps ``z [B, latent_dim]`` (standard normal) to images ``[B, C, H, W]`` in [-1, 1].
Instead of the tuple it may return ``{"module": m, "latent_dim": d, "name": str,
"resolution": int}``. Every ``nn.Conv2d`` / ``nn.ConvTranspose2d`` inside the module becomes an
editable layer (named by its qualified module name) for the parameter-space methods: edits are
added through forward hooks using the linearity of convolution, so the module needs no changes.
"""

from __future__ import annotations

import contextvars
import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import AtlasError
from engine.hashing import file_sha256, state_dict_sha256
from engine.models.base import EditArg, Generator, LayerInfo, ParamEdit, apply_conv_edit, as_edit_list

_ACTIVE_EDITS: contextvars.ContextVar[tuple[ParamEdit, ...]] = contextvars.ContextVar("atlas_adapter_edits", default=())


def _conv_of(m: nn.Module):
    if isinstance(m, nn.ConvTranspose2d):
        return lambda x, w: F.conv_transpose2d(
            x,
            w,
            stride=m.stride,
            padding=m.padding,
            output_padding=m.output_padding,
            groups=m.groups,
            dilation=m.dilation,
        )
    return lambda x, w: F.conv2d(x, w, stride=m.stride, padding=m.padding, groups=m.groups, dilation=m.dilation)


class AdapterGenerator(Generator):
    """Wraps a user module in the generator protocol (z space only)."""

    family = "adapter"

    def __init__(self, module: nn.Module, latent_dim: int, *, name: str, resolution: int | None = None) -> None:
        super().__init__()
        self.net = module
        self.z_dim = int(latent_dim)
        self.name = name
        self._convs: dict[str, nn.Module] = {}
        for qname, m in module.named_modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                self._convs[qname] = m
                m.register_forward_hook(self._make_hook(qname, m))
        with torch.no_grad():
            probe = self.net(torch.zeros(1, self.z_dim))
        if probe.dim() != 4:
            raise AtlasError(f"adapter '{name}': module output must be [B, C, H, W], got shape {tuple(probe.shape)}")
        self.img_channels = probe.shape[1]
        self.resolution = resolution or probe.shape[-1]
        self._res = self._layer_resolutions()
        if self._convs:
            names = list(self._convs)
            self.default_edit_layer = names[len(names) // 2]

    def _make_hook(self, qname: str, m: nn.Module):
        conv = _conv_of(m)

        def hook(module, inputs, output):
            mine = [e for e in _ACTIVE_EDITS.get() if e.layer == qname]
            return apply_conv_edit(inputs[0], output, mine, conv) if mine else output

        return hook

    def _layer_resolutions(self) -> dict[str, int]:
        res: dict[str, int] = {}
        hooks = [
            m.register_forward_hook(lambda mod, i, o, n=n: res.__setitem__(n, o.shape[-1]))
            for n, m in self._convs.items()
        ]
        with torch.no_grad():
            self.net(torch.zeros(1, self.z_dim))
        for h in hooks:
            h.remove()
        return res

    def editable_layers(self) -> list[LayerInfo]:
        return [
            LayerInfo(
                n,
                "conv_transpose" if isinstance(m, nn.ConvTranspose2d) else "conv",
                tuple(m.weight.shape),
                self._res.get(n, 0),
            )
            for n, m in self._convs.items()
        ]

    def layer_weight(self, name: str) -> torch.Tensor:
        self.layer_info(name)
        return self._convs[name].weight

    def synthesis(self, ws, *, noise="const", edit: EditArg = None, noise_generator=None, cond=None):
        edits = as_edit_list(edit)
        for e in edits:
            self.layer_info(e.layer)
        token = _ACTIVE_EDITS.set(tuple(edits))
        try:
            return self.net(ws)
        finally:
            _ACTIVE_EDITS.reset(token)


def load_adapter(path: str | Path) -> AdapterGenerator:
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"atlas_adapter_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise AtlasError(f"{path}: cannot be imported as a Python file")
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:  # noqa: BLE001 - the user's code failed; say where
        raise AtlasError(f"{path}: the adapter raised {exc.__class__.__name__}: {exc}") from None
    fn = getattr(mod, "load_generator", None)
    if not callable(fn):
        raise AtlasError(f"{path}: an adapter must define load_generator() returning (module, latent_dim)")
    try:
        res = fn()
    except Exception as exc:  # noqa: BLE001
        raise AtlasError(f"{path}: load_generator() raised {exc.__class__.__name__}: {exc}") from None
    if isinstance(res, dict):
        module, dim = res.get("module"), res.get("latent_dim")
        name, resolution = res.get("name") or path.stem, res.get("resolution")
    elif isinstance(res, tuple) and len(res) == 2:
        (module, dim), name, resolution = res, path.stem, None
    else:
        raise AtlasError(
            f"{path}: load_generator() must return (module, latent_dim) or a dict, got {type(res).__name__}"
        )
    if not isinstance(module, nn.Module) or not isinstance(dim, int) or dim <= 0:
        raise AtlasError(f"{path}: load_generator() must return an nn.Module and a positive int latent size")
    try:
        gen = AdapterGenerator(module.eval(), dim, name=name, resolution=resolution)
    except AtlasError as exc:
        raise AtlasError(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed on a probe latent
        raise AtlasError(
            f"{path}: the module failed on a latent of size {dim}: {exc.__class__.__name__}: {exc}"
        ) from None
    weights_hash = state_dict_sha256(module.state_dict())
    gen.identity = f"{file_sha256(path)[:32]}{weights_hash[:32]}"
    gen.source = str(path)
    return gen.eval()
