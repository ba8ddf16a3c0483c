"""Bring your own generator: a Python file that returns any ``torch.nn.Module``.

The adapter file (this runs the user's own code, by their choice) defines::

    def load_generator():
        ...
        return module, latent_dim          # or a dict, see below

``module(z)`` maps ``z [B, latent_dim]`` (standard normal) to images ``[B, C, H, W]`` in [-1, 1].
Instead of the tuple it may return ``{"module": m, "latent_dim": d, "name": str,
"resolution": int}``.

Editable layers. Every ``nn.Linear``, ``nn.Conv{1,2,3}d`` and ``nn.ConvTranspose{1,2,3}d`` the
forward pass calls becomes an editable layer (named by its qualified module name) for the
parameter-space methods: edits are added through forward hooks using the layer's linearity in
its weight, ``op(x, W + t D) + b = op(x, W) + b + t op(x, D)``, so the module needs no changes.
A probe forward with two latents checks each layer; one is left out, and ``info`` says why, when
it is never called as a module (its weight used through a functional call, say), when its input
does not keep one row per latent, or when its output is not ``op(input, weight) + bias`` (a
custom forward the hooks cannot reproduce). Other weight-bearing modules (``nn.Embedding``...)
are listed as not editable with the reason.

First latent layer (SeFa) and early activations (GANSpace). The probe also records which module
first receives z itself (up to a reshape): when it is a Linear or (transposed) convolution, the
adapter declares ``FIRST_LATENT_LAYER`` with that layer's linear map of z (a following eval-mode
BatchNorm's scale folded in, as for DCGAN) and ``EARLY_ACTIVATION`` with the outputs of the
modules the forward calls from that layer on. Otherwise it declares neither and says why.
"""

from __future__ import annotations

import contextvars
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import AtlasError, describe_exception
from engine.hashing import file_sha256, state_dict_sha256
from engine.models.base import (
    EARLY_ACTIVATION,
    FIRST_LATENT_LAYER,
    EditArg,
    Generator,
    LatentLayer,
    LayerInfo,
    ParamEdit,
    apply_conv_edit,
)

_ACTIVE_EDITS: contextvars.ContextVar[tuple[ParamEdit, ...]] = contextvars.ContextVar("atlas_adapter_edits", default=())
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = {nn.ConvTranspose1d: F.conv_transpose1d, nn.ConvTranspose2d: F.conv_transpose2d}
_TRANSPOSED[nn.ConvTranspose3d] = F.conv_transpose3d
_EDITABLE = (nn.Linear, *_CONVS, *_TRANSPOSED)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
PROBE_BATCH = 2


def _kind(m: nn.Module) -> str:
    if isinstance(m, nn.Linear):
        return "linear"
    return "conv_transpose" if isinstance(m, tuple(_TRANSPOSED)) else "conv"


def weight_op(m: nn.Module):
    """``op(x, weight)``: the layer ``m`` without its bias, for any weight (linear in it)."""
    if isinstance(m, nn.Linear):
        return lambda x, w: F.linear(x, w)
    if isinstance(m, _CONVS):
        return lambda x, w: m._conv_forward(x, w, None)  # honours padding_mode, groups, dilation
    for cls, fn in _TRANSPOSED.items():
        if isinstance(m, cls):
            return lambda x, w: fn(x, w, None, m.stride, m.padding, m.output_padding, m.groups, m.dilation)
    raise TypeError(f"not an editable layer type: {type(m).__name__}")


class _StopForward(BaseException):
    """Raised by a hook to end a forward pass once the wanted activation exists (BaseException:
    a user's ``except Exception`` must not swallow it)."""


@dataclass
class _Call:
    """One module call seen by the probe."""

    name: str
    occurrence: int  # how many times this module had been called before
    kind: str  # "layer" (editable type), "activation", "batchnorm" or "other"
    receives_z: bool
    input_is_prev_output: bool


class AdapterGenerator(Generator):
    """Wraps a user module in the generator protocol (z space only)."""

    family = "adapter"

    def __init__(self, module: nn.Module, latent_dim: int, *, name: str, resolution: int | None = None) -> None:
        super().__init__()
        self.net = module
        self.z_dim = int(latent_dim)
        self.name = name
        self._layers: dict[str, nn.Module] = {}
        self._res: dict[str, int] = {}  # output width in px of each conv layer (0: Linear, not spatial)
        self._in_shape: dict[str, tuple[int, ...]] = {}  # per-sample input shape of each layer
        self._not_editable: list[tuple[str, str, str]] = []
        self._first: tuple[str, str | None] | None = None  # (layer, folded BatchNorm or None)
        self._trace: list[tuple[str, int]] = []  # module calls from the first latent layer on
        self._default_depth = 1
        self.capability_notes: dict[str, str] = {}
        probe = self._probe()
        if probe.dim() != 4:
            raise AtlasError(f"adapter '{name}': module output must be [B, C, H, W], got shape {tuple(probe.shape)}")
        self.img_channels = probe.shape[1]
        self.resolution = resolution or probe.shape[-1]
        for qname, m in self._layers.items():
            m.register_forward_hook(self._make_hook(qname, m))
        caps = set()
        if self._first is not None:
            caps |= {FIRST_LATENT_LAYER, EARLY_ACTIVATION}
        self.capabilities = frozenset(caps)
        if self._layers:
            names = list(self._layers)
            self.default_edit_layer = names[len(names) // 2]

    # ---- the probe ----------------------------------------------------------------------
    def _probe(self) -> torch.Tensor:
        """Run two seeded latents through the module, watching every module call."""
        z = torch.randn(PROBE_BATCH, self.z_dim, generator=torch.Generator().manual_seed(0))
        modules = dict(self.net.named_modules())
        calls: list[_Call] = []
        counts: dict[str, int] = {}
        bad: dict[str, str] = {}
        last_out: list[torch.Tensor | None] = [None]
        candidates = {n: m for n, m in modules.items() if isinstance(m, _EDITABLE)}

        def hook(qname: str, m: nn.Module):
            def fn(module, inputs, output):
                x = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
                occurrence = counts.get(qname, 0)
                counts[qname] = occurrence + 1
                receives_z = (
                    x is not None
                    and x.shape[:1] == z.shape[:1]
                    and x.numel() == z.numel()
                    and torch.equal(x.reshape(z.shape), z)
                )
                if qname in candidates and qname not in bad:
                    why = self._check_layer(m, x, output)
                    if why:
                        bad[qname] = why
                    elif not occurrence:
                        self._in_shape[qname] = tuple(x.shape[1:])
                        spatial = not isinstance(m, nn.Linear) and output.dim() > 2
                        self._res[qname] = int(output.shape[-1]) if spatial else 0
                kind = (
                    "layer"
                    if qname in candidates
                    else "batchnorm"
                    if isinstance(m, _BATCHNORMS)
                    else "activation"
                    if type(m).__module__ == "torch.nn.modules.activation"
                    else "other"
                )
                calls.append(_Call(qname, occurrence, kind, receives_z, x is not None and x is last_out[0]))
                last_out[0] = output if isinstance(output, torch.Tensor) else None

            return fn

        # leaf modules (a container's output is its last child's) and every candidate layer
        watched = {n: m for n, m in modules.items() if n and (n in candidates or not any(True for _ in m.children()))}
        handles = [m.register_forward_hook(hook(n, m)) for n, m in watched.items()]
        try:
            with torch.no_grad():
                out = self.net(z)
        finally:
            for h in handles:
                h.remove()
        if not isinstance(out, torch.Tensor):
            raise AtlasError(f"adapter '{self.name}': module output must be a tensor, got {type(out).__name__}")
        if out.shape[0] != PROBE_BATCH:
            raise AtlasError(
                f"adapter '{self.name}': module output must have one image per latent; {PROBE_BATCH} latents "
                f"gave shape {tuple(out.shape)}"
            )
        for qname, m in modules.items():
            if qname in candidates:
                if qname not in counts:
                    bad[qname] = (
                        "the forward pass never calls it as a module, so the hooks cannot reach it "
                        "(its weight is used some other way, e.g. by a functional call)"
                    )
                if qname in bad:
                    self._not_editable.append((qname, type(m).__name__, bad[qname]))
                else:
                    self._layers[qname] = m
            elif isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() >= 2 and qname:
                why = (
                    "an embedding table: a lookup by index, not a linear map of its input"
                    if isinstance(m, nn.Embedding)
                    else f"{type(m).__name__} is not a layer type the parameter methods edit "
                    "(Linear, Conv1d/2d/3d, ConvTranspose1d/2d/3d)"
                )
                self._not_editable.append((qname, type(m).__name__, why))
        self._find_first_layer(calls)
        return out

    @staticmethod
    def _check_layer(m: nn.Module, x: torch.Tensor | None, out) -> str | None:
        if x is None or not isinstance(out, torch.Tensor):
            return "it is not called with a tensor input and output"
        if x.shape[0] != PROBE_BATCH or out.shape[0] != PROBE_BATCH:
            return (
                f"its input does not keep one row per latent ({x.shape[0]} rows for {PROBE_BATCH} latents), so "
                "per-sample edits cannot be applied"
            )
        try:
            want = weight_op(m)(x, m.weight)
            if m.bias is not None:
                b = m.bias
                want = want + (b if isinstance(m, nn.Linear) else b.view(1, -1, *([1] * (want.dim() - 2))))
        except Exception as exc:  # noqa: BLE001 - the layer cannot be recomputed from its weight
            return f"its output cannot be recomputed from its weight ({exc.__class__.__name__})"
        if want.shape != out.shape or not torch.allclose(
            want, out, rtol=1e-4, atol=1e-5 * (1 + float(out.abs().max()))
        ):
            return "its output is not op(input, weight) + bias (a custom forward or output_size the hooks cannot reproduce)"
        return None

    def _find_first_layer(self, calls: list[_Call]) -> None:
        layers = [i for i, c in enumerate(calls) if c.kind == "layer"]
        if not layers:
            self.capability_notes[FIRST_LATENT_LAYER] = "the module calls no Linear or convolution layer"
        else:
            i = layers[0]
            c = calls[i]
            if not c.receives_z:
                self.capability_notes[FIRST_LATENT_LAYER] = (
                    f"the first layer the module calls, '{c.name}', does not receive z itself (z is changed before "
                    "it, e.g. normalised or concatenated), so its map of z is not linear"
                )
            elif c.name not in self._layers or c.occurrence:
                self.capability_notes[FIRST_LATENT_LAYER] = (
                    f"the first layer the module calls, '{c.name}', is not editable"
                )
            else:
                nxt = calls[i + 1] if i + 1 < len(calls) else None
                bn = nxt.name if nxt and nxt.kind == "batchnorm" and nxt.input_is_prev_output else None
                self._first = (c.name, bn)
                self._trace = [(t.name, t.occurrence) for t in calls[i:]]
                acts = [k for k, t in enumerate(calls[i:], start=1) if t.kind == "activation"]
                self._default_depth = acts[0] if acts else 1
        if self._first is None:
            self.capability_notes[EARLY_ACTIVATION] = self.capability_notes[FIRST_LATENT_LAYER]

    # ---- edits --------------------------------------------------------------------------
    def _make_hook(self, qname: str, m: nn.Module):
        op = weight_op(m)

        def hook(module, inputs, output):
            mine = [e for e in _ACTIVE_EDITS.get() if e.layer == qname]
            return apply_conv_edit(inputs[0], output, mine, op) if mine else output

        return hook

    def editable_layers(self) -> list[LayerInfo]:
        return [LayerInfo(n, _kind(m), tuple(m.weight.shape), self._res.get(n, 0)) for n, m in self._layers.items()]

    def uneditable_layers(self) -> list[tuple[str, str, str]]:
        return list(self._not_editable)

    def layer_weight(self, name: str) -> torch.Tensor:
        self.layer_info(name)
        return self._layers[name].weight

    # ---- capabilities -------------------------------------------------------------------
    def first_latent_layer(self) -> LatentLayer:
        """The first layer's map of z, ``[out_numel, z_dim]``: the layer applied (without bias) to the
        identity (reshaped as z is before it), with a following eval-mode BatchNorm's scale folded in.

        Rows are normalised by default (SeFa's choice) unless a BatchNorm scale was folded in.
        """
        self.require(FIRST_LATENT_LAYER, "the first latent layer")
        name, bn_name = self._first
        m = self._layers[name]
        shape = self._in_shape[name]
        eye = torch.eye(self.z_dim, dtype=torch.float64, device=m.weight.device).reshape(self.z_dim, *shape)
        with torch.no_grad():
            out = weight_op(m)(eye, m.weight.detach().double())  # [z_dim, ...]: column n = layer(e_n)
            if bn_name is not None:
                bn = dict(self.net.named_modules())[bn_name]
                if bn.running_var is not None and bn.weight is not None:
                    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
                    out = out * scale.view(1, -1, *([1] * (out.dim() - 2)))
                else:
                    bn_name = None
        A = out.reshape(self.z_dim, -1).T.contiguous()
        return LatentLayer(name, A, normalize_rows=bn_name is None)

    @property
    def activation_depths(self) -> tuple[int, int]:
        """Depth N = the output of the N-th module call from the first latent layer on (1: that layer)."""
        return (1, max(1, len(self._trace)))

    @property
    def default_activation_depth(self) -> int:
        """The first activation module after the first latent layer (else the layer itself)."""
        return self._default_depth

    def activation_name(self, depth: int) -> str:
        name, occurrence = self._trace[depth - 1]
        return f"the output of {name}" + (f" (its call {occurrence + 1})" if occurrence else "")

    def early_activation(self, z: torch.Tensor, depth: int, *, classes=None) -> torch.Tensor:
        self.require(EARLY_ACTIVATION, "an early activation")
        lo, hi = self.activation_depths
        if not lo <= depth <= hi:
            raise AtlasError(f"activation depth {depth}: adapter '{self.name}' offers depths {lo}..{hi}")
        target, occurrence = self._trace[depth - 1]
        module = dict(self.net.named_modules())[target]
        seen = [0]
        got: list[torch.Tensor] = []

        def hook(mod, inputs, output):
            if seen[0] == occurrence:
                got.append(output)
                raise _StopForward
            seen[0] += 1

        h = module.register_forward_hook(hook)
        token = _ACTIVE_EDITS.set(())
        try:
            self.net(z)
        except _StopForward:
            pass
        finally:
            _ACTIVE_EDITS.reset(token)
            h.remove()
        if not got:
            raise AtlasError(f"adapter '{self.name}': the forward pass did not reach {target} (depth {depth})")
        return got[0]

    def synthesis(self, ws, *, noise="const", edit: EditArg = None, noise_generator=None, cond=None):
        edits, _ = self.checked_edits(edit, ws.shape[0])
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
        raise AtlasError(f"{path}: the adapter raised {describe_exception(exc)}") from None
    fn = getattr(mod, "load_generator", None)
    if not callable(fn):
        raise AtlasError(f"{path}: an adapter must define load_generator() returning (module, latent_dim)")
    try:
        res = fn()
    except Exception as exc:  # noqa: BLE001
        raise AtlasError(f"{path}: load_generator() raised {describe_exception(exc)}") from None
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
        raise AtlasError(f"{path}: the module failed on a latent of size {dim}: {describe_exception(exc)}") from None
    weights_hash = state_dict_sha256(module.state_dict())
    gen.identity = f"{file_sha256(path)[:32]}{weights_hash[:32]}"
    gen.source = str(path)
    return gen.eval()
