"""Progressive GAN generator (Karras et al., ICLR 2018), as the PyTorch ports run it.

The network GANSpace loads (``netdissect/proggan.py``) and the one GANLatentDiscovery loads
(``models/ProgGAN/model.py``) are the same computation; only their state-dict layouts differ
(``engine.checkpoints.proggan`` reads both). With ``widths = [c4, c8, ..., cR]``:

==========  ======================================================================  ==========
layer       computation                                                             output
==========  ======================================================================  ==========
layer1      pixelnorm(z) -> conv 4x4, padding 3, on the 1x1 input -> +b -> lrelu    c4 x 4 x 4
layer2      pixelnorm -> conv 3x3 -> +b -> lrelu                                    c4 x 4 x 4
layer2j+1   pixelnorm -> nearest upsample x2 -> conv 3x3 -> +b -> lrelu             c_r x r x r
layer2j+2   pixelnorm -> conv 3x3 -> +b -> lrelu                                    c_r x r x r
output      pixelnorm -> conv 1x1 -> +b (no activation, images unclamped)          3 x R x R
==========  ======================================================================  ==========

``pixelnorm(x) = x / sqrt(mean_c(x^2) + 1e-8)``, lrelu slope 0.2. The checkpoints store
equalised-learning-rate weights ``W`` with a runtime scale ``s`` (``conv(x, W) * s + b``); here
each layer's ``weight`` is ``s * W``, folded once when loading, so a layer is a plain
convolution: parameter edits shift the folded weight (``apply_conv_edit``), and a shift given as
a fraction of ``||weight||`` means the same thing whatever ``s`` was.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import AtlasError
from engine.models.base import (
    EARLY_ACTIVATION,
    FIRST_LATENT_LAYER,
    SHARED_PREFIX,
    Condition,
    EditArg,
    Generator,
    LatentLayer,
    LayerInfo,
    apply_conv_edit,
    edits_for,
)

LRELU_SLOPE = 0.2
PIXELNORM_EPS = 1e-8


def pixel_norm(x: torch.Tensor) -> torch.Tensor:
    """``x / sqrt(mean over channels of x^2 + 1e-8)`` for ``x [B, C, H, W]``."""
    return x / torch.sqrt(torch.mean(x**2, dim=1, keepdim=True) + PIXELNORM_EPS)


@dataclass(frozen=True)
class ProGANConfig:
    """``z_dim``; ``widths`` = channels at 4, 8, ..., R px (netdissect's ``sizes[1:]``)."""

    z_dim: int
    widths: tuple[int, ...]
    img_channels: int = 3

    @property
    def resolution(self) -> int:
        return 4 * 2 ** (len(self.widths) - 1)

    @property
    def num_blocks(self) -> int:
        return 2 * len(self.widths)

    def block(self, k: int) -> tuple[int, int, int, bool]:
        """``(c_in, c_out, kernel, upsample)`` of ``layer{k}``, k = 1..num_blocks."""
        if k == 1:
            return self.z_dim, self.widths[0], 4, False
        j = (k - 1) // 2  # resolution index: 4 * 2**j
        if k % 2 == 1:
            return self.widths[j - 1], self.widths[j], 3, True
        return self.widths[j], self.widths[j], 3, False

    @staticmethod
    def block_resolution(k: int) -> int:
        return 4 * 2 ** ((k - 1) // 2)


class _Conv(nn.Module):
    """A convolution with the runtime scale folded into ``weight`` and a separate bias."""

    def __init__(self, c_in: int, c_out: int, kernel: int, *, padding: int, upsample: bool, act: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.padding = padding
        self.upsample = upsample
        self.act = act

    def _conv_op(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, weight, padding=self.padding)

    def forward(self, x: torch.Tensor, edits=(), source: torch.Tensor | None = None) -> torch.Tensor:
        x = pixel_norm(x)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        y = self._conv_op(x, self.weight)
        if edits:
            y = apply_conv_edit(x, y, list(edits), self._conv_op, source)
        y = y + self.bias.view(1, -1, 1, 1)
        return F.leaky_relu(y, LRELU_SLOPE) if self.act else y


class ProGANGenerator(Generator):
    """``z [B, z_dim] -> images [B, img_channels, R, R]`` (raw output, nominally [-1, 1]).

    Layers are named as netdissect names them (``layer1`` ... ``layer{2n}``, then ``output``);
    GANSpace's ProGAN layer names therefore mean the same here.
    """

    family = "proggan"
    capabilities = frozenset({FIRST_LATENT_LAYER, EARLY_ACTIVATION, SHARED_PREFIX})

    def __init__(self, config: ProGANConfig, *, name: str = "proggan") -> None:
        super().__init__()
        self.config = config
        self.name = name
        self.z_dim = config.z_dim
        self.img_channels = config.img_channels
        self.resolution = config.resolution
        self.format = ""
        self.wscale_source = ""
        self.layer_names: list[str] = []
        for k in range(1, config.num_blocks + 1):
            c_in, c_out, kernel, up = config.block(k)
            self.add_module(f"layer{k}", _Conv(c_in, c_out, kernel, padding=3 if k == 1 else 1, upsample=up, act=True))
            self.layer_names.append(f"layer{k}")
        self.output = _Conv(config.widths[-1], config.img_channels, 1, padding=0, upsample=False, act=False)
        self.layer_names.append("output")
        self.default_edit_layer = self.layer_names[len(self.layer_names) // 2]

    def _conv(self, name: str) -> _Conv:
        return getattr(self, name)

    # ---- layers for parameter-space methods ---------------------------------------------
    def editable_layers(self) -> list[LayerInfo]:
        out = []
        for k, name in enumerate(self.layer_names, start=1):
            res = self.resolution if name == "output" else self.config.block_resolution(k)
            out.append(LayerInfo(name, "conv", tuple(self._conv(name).weight.shape), res))
        return out

    def layer_weight(self, name: str) -> torch.Tensor:
        self.layer_info(name)
        return self._conv(name).weight

    # ---- capabilities -------------------------------------------------------------------
    def first_latent_layer(self) -> LatentLayer:
        """``layer1`` as the matrix ``[c4 * 4 * 4, z_dim]`` of its pre-activation in pixelnorm(z).

        The 4x4 kernel with padding 3 on a 1x1 input reads the kernel flipped:
        ``out[o, i, j] = sum_c weight[o, c, 3 - i, 3 - j] * z_c`` (SeFa's ``flip(2, 3)`` for PGGAN).
        Rows are normalised by default, as SeFa's code does for PGGAN. z is pixel-normalised
        before the layer, as in the reference; SeFa treats the layer as linear in z regardless.
        """
        W = self.layer1.weight.detach().double()  # [c4, z_dim, 4, 4]
        A = W.flip(2, 3).permute(0, 2, 3, 1).reshape(-1, self.z_dim)
        return LatentLayer("layer1", A, normalize_rows=True)

    @property
    def activation_depths(self) -> tuple[int, int]:
        """Depth N = the output of ``layer{N}`` (after its leaky ReLU), as GANSpace names ProGAN layers."""
        return (1, self.config.num_blocks)

    @property
    def default_activation_depth(self) -> int:
        return 2  # layer2: the 4x4 features, the earliest activation past the z-linear layer1

    def activation_name(self, depth: int) -> str:
        return f"the output of layer{depth}"

    def early_activation(self, z: torch.Tensor, depth: int, *, classes=None) -> torch.Tensor:
        lo, hi = self.activation_depths
        if not lo <= depth <= hi:
            raise AtlasError(f"activation depth {depth}: model '{self.name}' has layers 1..{hi}")
        x = self._input(z)
        for name in self.layer_names[:depth]:
            x = self._conv(name)(x)
        return x

    # ---- synthesis ----------------------------------------------------------------------
    def _input(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() not in (2, 4) or z[0].numel() != self.z_dim:
            raise AtlasError(f"model '{self.name}' takes latents [B, {self.z_dim}], got {list(z.shape)}")
        return z.reshape(z.shape[0], self.z_dim, 1, 1)

    def synthesis(
        self,
        ws: torch.Tensor,
        *,
        noise: str = "const",
        edit: EditArg = None,
        noise_generator: torch.Generator | None = None,
        cond: Condition | None = None,
    ) -> torch.Tensor:
        """``z [B, z_dim]`` (or ``[B, z_dim, 1, 1]``) -> images; the model has no noise inputs."""
        x = self._input(ws)
        edits, source = self.checked_edits(edit, x.shape[0])  # rows expand to the batch at the first edited layer
        for name in self.layer_names:
            mine = edits_for(edits, name) if edits else []
            x = self._conv(name)(x, mine, source if mine else None)
            if mine:
                source = None
        return x

    def describe(self) -> dict:
        d = super().describe()
        d["format"] = self.format
        d["wscale"] = self.wscale_source
        d["channels"] = {f"{4 * 2**j}px": w for j, w in enumerate(self.config.widths)}
        d["editable_layers"] = d.pop("editable_layers")
        d["default_edit_layer"] = d.pop("default_edit_layer")
        return d
