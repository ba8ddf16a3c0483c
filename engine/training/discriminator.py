"""The StyleGAN2 residual discriminator (Karras et al. 2020, config E/F), our own module.

``fromRGB`` (1x1 conv) at the top resolution, then one residual block per resolution R .. 8:
``conv0`` 3x3 (C_r -> C_r), ``conv1`` 3x3 down-sampling (C_r -> C_{r/2}) and a 1x1 down-sampling
shortcut without bias; the block output is ``(shortcut + conv1) * sqrt(1/2)``. The 4x4 epilogue
appends the minibatch standard deviation (groups of ``mbstd_group`` samples, ``mbstd_channels``
feature groups), then a 3x3 conv, a fully connected layer and the linear score.

Every weight uses the equalized learning rate (stored N(0, 1), scaled by 1/sqrt(fan_in) in the
forward pass); activations are leaky ReLU 0.2 times sqrt 2. Down-sampling low-passes with the
[1, 3, 3, 1] FIR first, as in the paper, so D sees no aliasing the generator could exploit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)
SQRT_HALF = math.sqrt(0.5)


def _fir(taps=(1.0, 3.0, 3.0, 1.0)) -> torch.Tensor:
    f = torch.tensor(taps)
    f = torch.outer(f, f)
    return f / f.sum()


def _filter(x: torch.Tensor, f: torch.Tensor, pad: int) -> torch.Tensor:
    """Depthwise FIR ``f [k, k]`` over ``x [N, C, H, W]`` with ``pad`` zeros on every side."""
    C = x.shape[1]
    return F.conv2d(F.pad(x, [pad] * 4), f.to(x.dtype)[None, None].expand(C, 1, -1, -1), groups=C)


class EqConv2d(nn.Module):
    """Equalized-lr conv; ``down`` = FIR low-pass then stride 2 (3x3: ``[H] -> [H/2]``)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int,
        *,
        bias: bool = True,
        activation: bool = True,
        down: bool = False,
        gain: float = 1.0,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(cin * k * k)
        self.activation = activation
        self.down = down
        self.gain = gain
        self.k = k
        self.register_buffer("resample_filter", _fir(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        if self.down and self.k == 1:
            x = _filter(x, self.resample_filter, 1)[:, :, ::2, ::2]
            x = F.conv2d(x, w)
        elif self.down:
            # pad 2 then the 4-tap filter keeps H + 1 samples; a valid stride-2 3x3 conv gives H / 2
            x = F.conv2d(_filter(x, self.resample_filter, 2), w, stride=2)
        else:
            x = F.conv2d(x, w, padding=self.k // 2)
        if self.bias is not None:
            x = x + self.bias.reshape(1, -1, 1, 1)
        if self.activation:
            x = F.leaky_relu(x, 0.2) * SQRT2
        return x * self.gain if self.gain != 1.0 else x


class EqLinear(nn.Module):
    def __init__(self, cin: int, cout: int, *, activation: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.weight_gain = 1.0 / math.sqrt(cin)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias)
        return F.leaky_relu(x, 0.2) * SQRT2 if self.activation else x


class DBlock(nn.Module):
    """Residual block: ``[B, C_r, r, r] -> [B, C_{r/2}, r/2, r/2]``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv0 = EqConv2d(cin, cin, 3)
        self.conv1 = EqConv2d(cin, cout, 3, down=True, gain=SQRT_HALF)
        self.skip = EqConv2d(cin, cout, 1, bias=False, activation=False, down=True, gain=SQRT_HALF)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.conv1(self.conv0(x))


def minibatch_stddev(x: torch.Tensor, group: int, channels: int) -> torch.Tensor:
    """Append the minibatch std feature maps: ``[B, C, H, W] -> [B, C + channels, H, W]``.

    Samples are split into groups of ``min(group, B)`` (B must be divisible by it); within a
    group, the std over samples is averaged over each of ``channels`` feature groups and pixels.
    """
    B, C, H, W = x.shape
    G = min(group, B)
    if B % G:
        raise ValueError(f"minibatch-std group {G} does not divide the batch {B}")
    y = x.reshape(G, -1, channels, C // channels, H, W)  # [G, M, F, c, H, W], sample b = g * M + m
    y = (y - y.mean(dim=0)).square().mean(dim=0)
    y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # [M, F]
    y = y.reshape(-1, channels, 1, 1).repeat(G, 1, H, W)  # [B, F, H, W]
    return torch.cat([x, y], dim=1)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """``channels[r]``: width at resolution r (4 .. resolution)."""

    resolution: int
    channels: dict[int, int] = field(default_factory=dict)
    img_channels: int = 3
    mbstd_group: int = 4
    mbstd_channels: int = 1


class Discriminator(nn.Module):
    """``images [B, 3, R, R] -> logits [B, 1]`` (real > 0 > fake for a trained D)."""

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = {int(k): int(v) for k, v in cfg.channels.items()}
        R = cfg.resolution
        self.from_rgb = EqConv2d(cfg.img_channels, ch[R], 1)
        self.blocks = nn.ModuleList(DBlock(ch[r], ch[r // 2]) for r in _down_resolutions(R))
        c4 = ch[4]
        self.conv = EqConv2d(c4 + cfg.mbstd_channels, c4, 3)
        self.fc = EqLinear(c4 * 16, c4)
        self.out = EqLinear(c4, 1, activation=False)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.from_rgb(img)
        for block in self.blocks:
            x = block(x)
        x = minibatch_stddev(x, self.cfg.mbstd_group, self.cfg.mbstd_channels)
        x = self.conv(x)
        return self.out(self.fc(x.flatten(1)))


def _down_resolutions(R: int) -> list[int]:
    out, r = [], R
    while r > 4:
        out.append(r)
        r //= 2
    return out
