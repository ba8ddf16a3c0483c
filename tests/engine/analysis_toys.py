"""A synthetic generator whose answers are known, for the analysis tests.

``QuadrantGenerator``: z has F = 4 components; the image is ``a * sum_f z_f mask_f + bias`` where
``mask_f`` is quadrant f of a 16 x 16 image (f = 0 top-left, 1 top-right, 2 bottom-left,
3 bottom-right), the same on the three colour channels. It is one transposed convolution
("render", kernel 16) applied to ``[z, 1]``: input channel f < F carries ``a * mask_f``, input
channel F (the constant 1) carries the bias image. So:

* latent direction e_f moves only quadrant f, i.e. only factor f (``exact_factors`` reads
  z_f back as the mean of quadrant f divided by a);
* shifting the bias channel's weight by ``sum_f h_f a mask_f`` is *exactly* the latent shift h;
* scaling channel f's weight by (1 + t) multiplies z_f, which no latent shift can imitate.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from engine.analysis.factors import FactorModel
from engine.directions import Direction, DirectionSet, model_ref
from engine.models.base import Generator, LayerInfo, apply_conv_edit, as_edit_list, conv_transpose_fn

N_FACTORS = 4
SIZE = 16
AMP = 0.3


def quadrant_masks(size: int = SIZE) -> torch.Tensor:
    """``[4, size, size]`` 0/1 masks of the four quadrants."""
    m = torch.zeros(4, size, size)
    h = size // 2
    m[0, :h, :h] = m[1, :h, h:] = m[2, h:, :h] = m[3, h:, h:] = 1
    return m


class QuadrantGenerator(Generator):
    def __init__(self) -> None:
        super().__init__()
        self.z_dim, self.resolution, self.img_channels = N_FACTORS, SIZE, 3
        self.name, self.identity, self.source = "quadrants", "quadrants-identity", "quadrants"
        weight = torch.zeros(N_FACTORS + 1, 3, SIZE, SIZE)
        weight[:N_FACTORS] = AMP * quadrant_masks()[:, None]
        weight[N_FACTORS] = 0.1 * torch.linspace(-1, 1, SIZE)[None, None, :]  # a gradient as the bias image
        self.weight = torch.nn.Parameter(weight)
        self.default_edit_layer = "render"

    def editable_layers(self) -> list[LayerInfo]:
        return [LayerInfo("render", "conv_transpose", tuple(self.weight.shape), SIZE)]

    def layer_weight(self, name: str) -> torch.Tensor:
        self.layer_info(name)
        return self.weight

    def synthesis(self, ws, *, noise="const", edit=None, noise_generator=None, cond=None):
        x = torch.cat([ws, torch.ones(ws.shape[0], 1, device=ws.device, dtype=ws.dtype)], 1)[:, :, None, None]
        out = F.conv_transpose2d(x, self.weight)
        edits = as_edit_list(edit)
        return apply_conv_edit(x, out, edits, conv_transpose_fn(1, 0)) if edits else out


def exact_factors() -> FactorModel:
    """Reads z back: factor f = mean of quadrant f (bias removed) / AMP."""
    masks = quadrant_masks()
    bias = QuadrantGenerator().weight.detach()[N_FACTORS].mean(0)  # [H, W]

    def predict(images: torch.Tensor) -> torch.Tensor:
        x = images.mean(1) - bias.to(images.device)  # [B, H, W]
        return torch.einsum("bhw,fhw->bf", x, masks.to(images.device)) / masks.sum((1, 2)) / AMP

    return FactorModel(tuple(f"quadrant{f}" for f in range(N_FACTORS)), predict, label="exact quadrant reader")


def latent_set(gen, vectors, range_=(-3.0, 3.0)) -> DirectionSet:
    v = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
    return DirectionSet.latent("test-latent", model_ref(gen), v, range_=range_)


def param_set(gen, deltas, range_=(-1.0, 1.0)) -> DirectionSet:
    dirs = [
        Direction("param", layer="render", delta=torch.as_tensor(d, dtype=torch.float32), range=range_) for d in deltas
    ]
    return DirectionSet(method="test-param", model=model_ref(gen), directions=dirs)


def latent_shift_delta(gen: QuadrantGenerator, h) -> torch.Tensor:
    """The weight shift of the bias channel that equals the latent shift ``h`` (at t = 1)."""
    h = torch.as_tensor(h, dtype=torch.float32)
    delta = torch.zeros_like(gen.weight.detach())
    delta[N_FACTORS] = torch.einsum("f,fchw->chw", h, gen.weight.detach()[:N_FACTORS])
    return delta


def scale_factor_delta(gen: QuadrantGenerator, f: int) -> torch.Tensor:
    """The weight shift that multiplies z_f by (1 + t): not a latent shift."""
    delta = torch.zeros_like(gen.weight.detach())
    delta[f] = gen.weight.detach()[f]
    return delta


class ProceduralRenderer(Generator):
    """The procedural face renderer as a generator: factors = Phi(z) (uniform, as in the data set).

    Latent coordinate f drives exactly factor f of ``engine.data.procedural``, so with the real
    factor regressor the direction e_f must score as a pure control of factor f.
    """

    def __init__(self, resolution: int = 32) -> None:
        super().__init__()
        from engine.data.procedural import N_FACTORS as F

        self.z_dim, self.resolution, self.img_channels = F, resolution, 3
        self.name, self.identity, self.source = "procedural-renderer", "procedural-renderer", "procedural-renderer"

    def synthesis(self, ws, *, noise="const", edit=None, noise_generator=None, cond=None):
        from engine.data.procedural import render

        u = 0.5 * (1 + torch.erf(ws.detach().float().cpu() / 2**0.5))
        return torch.from_numpy(render(u.numpy(), self.resolution)).to(ws.device)
