"""BigGAN-deep (Brock et al. 2019) in the layout of huggingface/pytorch-pretrained-BigGAN, our own code.

The generator of the TF-Hub BigGAN-deep modules as that package ports them (GANSpace and many
notebooks load these files):

* ``embed = W_class[:, c]`` (the package's ``embeddings`` linear applied to a one-hot class
  vector), ``cond = [z, embed]`` ``[B, 2 z_dim]``; the same ``cond`` feeds ``gen_z`` and every
  conditional batch norm;
* ``gen_z`` (linear) -> ``[B, 4, 4, 16 ch]`` read in TF's NHWC order, permuted to NCHW;
* ``layers``: GenBlocks ``(up, in, out)`` (in / out in units of ``ch``) with one self-attention
  block inserted before config layer ``attention_layer_position``. A GenBlock is four
  (conditional BN -> ReLU -> conv) steps, 1x1 -> 3x3 -> 3x3 -> 1x1 with a bottleneck of
  ``in // 4`` channels, nearest 2x up-sampling after the second ReLU; the skip keeps the first
  ``out`` channels of the input (when the width halves) and is up-sampled alike;
* a final unconditional BN, ReLU, a 3x3 conv to ``ch`` channels of which the first 3 are the
  image, tanh.

Spectral norm (eval mode, as the reference runs it): every weight is ``weight_orig / sigma`` with
``sigma = u . (W_orig v)`` from the *stored* vectors ``weight_u`` / ``weight_v`` (no power
iteration, and sigma is not the largest singular value). The division is done once at load time
with exactly the reference's operations; ``layer_weight`` returns these effective weights.

Batch-norm statistics depend on the truncation ``t`` (the model's truncation argument, psi
here): each BN stores ``n_stats`` rows of means / variances, row i for truncation
``i / (n_stats - 1)``, and the reference picks them with ``coef, start = modf(t / step)``:
``mean = means[start] * coef + means[start + 1] * (1 - coef)`` — the *lower* row gets the weight
``coef`` (the reverse of linear interpolation), and the quotient is rounded in float64 first.
``batchnorm_stats`` reproduces this to the bit.

Seeds: seed s at truncation t is ``t * truncnorm(-2, 2).rvs(size=(1, z_dim),
random_state=RandomState(s))`` (float32), the reference's ``truncated_noise_sample`` with
``seed=s, batch_size=1`` (its row 0 for any batch size). Bulk sampling for discovery and
analysis (``sample_latents``) draws ``z ~ N(0, I)``, the distribution BigGAN was trained on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import AtlasError
from engine.models.base import (
    CLASSES,
    EARLY_ACTIVATION,
    FIRST_LATENT_LAYER,
    SHARED_PREFIX,
    Condition,
    EditArg,
    Generator,
    LatentLayer,
    LayerInfo,
    ParamEdit,
    apply_conv_edit,
    edits_for,
)

TRUNCNORM_BOUND = 2.0  # the reference samples truncnorm(-2, 2)


@dataclass(frozen=True)
class BigGANConfig:
    """The fields of the package's ``config.json`` (``BigGANConfig``), checked.

    ``layers``: ``(up_sample, in, out)`` per GenBlock, widths in units of ``channel_width``.
    ``class_embed_dim`` is recorded but, as in the reference, unused (the class embedding has
    ``z_dim`` features).
    """

    output_dim: int
    z_dim: int
    class_embed_dim: int
    channel_width: int
    num_classes: int
    layers: tuple[tuple[bool, int, int], ...]
    attention_layer_position: int
    eps: float
    n_stats: int

    @property
    def resolution(self) -> int:
        return 4 * 2 ** sum(1 for up, _, _ in self.layers if up)

    @property
    def cond_dim(self) -> int:
        return 2 * self.z_dim

    def module_layout(self) -> list[tuple[str, int | None]]:
        """``(kind, config layer index)`` of ``generator.layers.{i}``: ``("block", k)`` or ``("attn", k)``."""
        out: list[tuple[str, int | None]] = []
        for k in range(len(self.layers)):
            if k == self.attention_layer_position:
                out.append(("attn", k))
            out.append(("block", k))
        return out

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every key of the reference's ``state_dict`` with its shape (plain arithmetic, nothing allocated)."""
        ch, cond, S = self.channel_width, self.cond_dim, self.n_stats
        shapes: dict[str, tuple[int, ...]] = {"embeddings.weight": (self.z_dim, self.num_classes)}

        def sn(prefix: str, shape: tuple[int, ...], bias: bool) -> None:
            shapes[f"{prefix}.weight_orig"] = shape
            shapes[f"{prefix}.weight_u"] = (shape[0],)
            shapes[f"{prefix}.weight_v"] = (math.prod(shape[1:]),)
            if bias:
                shapes[f"{prefix}.bias"] = (shape[0],)

        def bn(prefix: str, c: int) -> None:
            shapes[f"{prefix}.running_means"] = (S, c)
            shapes[f"{prefix}.running_vars"] = (S, c)
            sn(f"{prefix}.scale", (c, cond), False)
            sn(f"{prefix}.offset", (c, cond), False)

        sn("generator.gen_z", (4 * 4 * 16 * ch, cond), True)
        for i, (kind, k) in enumerate(self.module_layout()):
            p = f"generator.layers.{i}"
            _, cin, cout = self.layers[k]
            cin, cout = cin * ch, cout * ch
            if kind == "attn":
                shapes[f"{p}.gamma"] = (1,)
                sn(f"{p}.snconv1x1_theta", (cin // 8, cin, 1, 1), False)
                sn(f"{p}.snconv1x1_phi", (cin // 8, cin, 1, 1), False)
                sn(f"{p}.snconv1x1_g", (cin // 2, cin, 1, 1), False)
                sn(f"{p}.snconv1x1_o_conv", (cin, cin // 2, 1, 1), False)
                continue
            mid = cin // 4
            bn(f"{p}.bn_0", cin)
            sn(f"{p}.conv_0", (mid, cin, 1, 1), True)
            bn(f"{p}.bn_1", mid)
            sn(f"{p}.conv_1", (mid, mid, 3, 3), True)
            bn(f"{p}.bn_2", mid)
            sn(f"{p}.conv_2", (mid, mid, 3, 3), True)
            bn(f"{p}.bn_3", mid)
            sn(f"{p}.conv_3", (cout, mid, 1, 1), True)
        shapes["generator.bn.weight"] = (ch,)
        shapes["generator.bn.bias"] = (ch,)
        shapes["generator.bn.running_means"] = (S, ch)
        shapes["generator.bn.running_vars"] = (S, ch)
        sn("generator.conv_to_rgb", (ch, ch, 3, 3), True)
        return shapes

    @classmethod
    def from_json(cls, data: object, where: str) -> BigGANConfig:
        """Check the plain data of ``config.json``; any problem is an ``AtlasError`` naming ``where``."""
        if not isinstance(data, dict):
            raise AtlasError(f"{where}: expected a JSON object with the BigGAN configuration")
        missing = [k for k in cls.__dataclass_fields__ if k not in data]
        if missing:
            raise AtlasError(f"{where}: BigGAN configuration lacks {', '.join(missing)}")

        def count(key: str, lo: int, hi: int) -> int:
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise AtlasError(f"{where}: {key} must be an integer in {lo}..{hi}, got {str(v)[:40]!r}")
            return v

        z_dim = count("z_dim", 1, 4096)
        ch = count("channel_width", 1, 4096)
        raw_layers = data["layers"]
        if not isinstance(raw_layers, list) or not 1 <= len(raw_layers) <= 64:
            raise AtlasError(f"{where}: layers must be a list of 1..64 [up_sample, in, out] entries")
        layers = []
        for i, entry in enumerate(raw_layers):
            ok = isinstance(entry, (list, tuple)) and len(entry) == 3 and isinstance(entry[0], bool)
            ok = ok and all(not isinstance(x, bool) and isinstance(x, int) and 1 <= x <= 1024 for x in entry[1:])
            if not ok:
                raise AtlasError(f"{where}: layers[{i}] must be [true|false, in, out] with widths 1..1024")
            layers.append((bool(entry[0]), int(entry[1]), int(entry[2])))
        eps = data["eps"]
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
            raise AtlasError(f"{where}: eps must be a number in (0, 1), got {str(eps)[:40]!r}")
        cfg = cls(
            output_dim=count("output_dim", 4, 1 << 14),
            z_dim=z_dim,
            class_embed_dim=count("class_embed_dim", 1, 1 << 16),
            channel_width=ch,
            num_classes=count("num_classes", 1, 1 << 20),
            layers=tuple(layers),
            attention_layer_position=count("attention_layer_position", 0, 1 << 10),
            eps=float(eps),
            n_stats=count("n_stats", 2, 10_000),
        )
        cfg.check(where)
        return cfg

    def check(self, where: str) -> None:
        """Consistency of the layer list (what the reference's forward pass assumes)."""
        ch = self.channel_width
        if self.layers[0][1] != 16:
            raise AtlasError(f"{where}: layers[0] must take 16 (x channel_width) channels, the output of gen_z")
        for i, (_, cin, cout) in enumerate(self.layers):
            if i and cin != self.layers[i - 1][2]:
                raise AtlasError(
                    f"{where}: layers[{i}] takes {cin} channels but layers[{i - 1}] gives {self.layers[i - 1][2]}"
                )
            if (cin * ch) // 4 < 1 or (cout != cin and cout * 2 != cin):
                raise AtlasError(f"{where}: layers[{i}] ({cin} -> {cout}) must keep or halve its width")
        if self.layers[-1][2] != 1:
            raise AtlasError(f"{where}: the last layer must give 1 (x channel_width) channels, the final batch norm")
        if ch < 3:
            raise AtlasError(f"{where}: channel_width {ch} is too small for an RGB output")
        if self.attention_layer_position < len(self.layers):
            k = self.attention_layer_position
            c = self.layers[k][1] * ch
            side = 4 * 2 ** sum(1 for up, _, _ in self.layers[:k] if up)
            if c % 8 or side % 2:
                raise AtlasError(f"{where}: attention before layers[{k}] needs a width divisible by 8 ({c})")
        if self.output_dim != self.resolution:
            raise AtlasError(
                f"{where}: output_dim {self.output_dim} disagrees with the layers, which make {self.resolution} px"
            )


def bn_statistics_rows(truncation: float, n_stats: int) -> tuple[int, float]:
    """``(start, coef)`` as the reference computes them (float64 ``modf`` of ``t / step``)."""
    step = 1.0 / (n_stats - 1)
    coef, start = math.modf(truncation / step)
    return int(start), coef


def batchnorm_stats(
    means: torch.Tensor, variances: torch.Tensor, truncation: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The statistics the reference uses at ``truncation``: ``[C]`` mean and variance from ``[n_stats, C]`` tables.

    ``coef != 0``: ``rows[start] * coef + rows[start + 1] * (1 - coef)`` (the lower row weighted by
    coef, as the reference does); else ``rows[start]``.
    """
    start, coef = bn_statistics_rows(truncation, means.shape[0])
    if coef != 0.0:
        return (
            means[start] * coef + means[start + 1] * (1 - coef),
            variances[start] * coef + variances[start + 1] * (1 - coef),
        )
    return means[start], variances[start]


class Conv(nn.Module):
    """A convolution with its effective (spectrally normalised) weight, editable through ``ParamEdit``."""

    def __init__(self, cin: int, cout: int, k: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.padding = k // 2

    def conv(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, padding=self.padding)

    def forward(self, x: torch.Tensor, edits: list[ParamEdit]) -> torch.Tensor:
        out = F.conv2d(x, self.weight, self.bias, padding=self.padding)
        return apply_conv_edit(x, out, edits, self.conv) if edits else out


class CondBatchNorm(nn.Module):
    """``(x - mean_t) / sqrt(var_t + eps) * (1 + scale(cond)) + offset(cond)`` with truncation-dependent stats."""

    def __init__(self, c: int, cond_dim: int, n_stats: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, c))
        self.register_buffer("running_vars", torch.ones(n_stats, c))
        self.scale = nn.Parameter(torch.zeros(c, cond_dim))
        self.offset = nn.Parameter(torch.zeros(c, cond_dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        mean, var = batchnorm_stats(self.running_means, self.running_vars, truncation)
        mean = mean.unsqueeze(0).unsqueeze(-1).unsqueeze(-1)
        var = var.unsqueeze(0).unsqueeze(-1).unsqueeze(-1)
        weight = 1 + F.linear(cond, self.scale).unsqueeze(-1).unsqueeze(-1)
        bias = F.linear(cond, self.offset).unsqueeze(-1).unsqueeze(-1)
        return (x - mean) / torch.sqrt(var + self.eps) * weight + bias


class GenBlock(nn.Module):
    """BigGAN-deep residual block: 4 x (CBN, ReLU, conv) with a ``in // 4`` bottleneck; see the module docstring."""

    def __init__(self, cin: int, cout: int, up: bool, cond_dim: int, n_stats: int, eps: float) -> None:
        super().__init__()
        mid = cin // 4
        self.up, self.drop = up, cin != cout
        self.bn_0, self.conv_0 = CondBatchNorm(cin, cond_dim, n_stats, eps), Conv(cin, mid, 1)
        self.bn_1, self.conv_1 = CondBatchNorm(mid, cond_dim, n_stats, eps), Conv(mid, mid, 3)
        self.bn_2, self.conv_2 = CondBatchNorm(mid, cond_dim, n_stats, eps), Conv(mid, mid, 3)
        self.bn_3, self.conv_3 = CondBatchNorm(mid, cond_dim, n_stats, eps), Conv(mid, cout, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, t: float, edits: dict[str, list[ParamEdit]]) -> torch.Tensor:
        x0 = x
        h = self.conv_0(F.relu(self.bn_0(x, cond, t)), edits.get("conv_0", []))
        h = F.relu(self.bn_1(h, cond, t))
        if self.up:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.conv_1(h, edits.get("conv_1", []))
        h = self.conv_2(F.relu(self.bn_2(h, cond, t)), edits.get("conv_2", []))
        h = self.conv_3(F.relu(self.bn_3(h, cond, t)), edits.get("conv_3", []))
        if self.drop:
            x0 = x0[:, : x0.shape[1] // 2]
        if self.up:
            x0 = F.interpolate(x0, scale_factor=2, mode="nearest")
        return h + x0


class SelfAttention(nn.Module):
    """SAGAN self-attention: theta / phi / g 1x1 convs, 2x2 max-pooled keys and values, ``x + gamma * o(.)``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(c // 8, c, 1, 1))
        self.phi = nn.Parameter(torch.zeros(c // 8, c, 1, 1))
        self.g = nn.Parameter(torch.zeros(c // 2, c, 1, 1))
        self.o = nn.Parameter(torch.zeros(c, c // 2, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        theta = F.conv2d(x, self.theta).view(-1, C // 8, H * W)
        phi = F.max_pool2d(F.conv2d(x, self.phi), 2, 2).view(-1, C // 8, H * W // 4)
        attn = torch.softmax(torch.bmm(theta.permute(0, 2, 1), phi), dim=-1)
        g = F.max_pool2d(F.conv2d(x, self.g), 2, 2).view(-1, C // 2, H * W // 4)
        o = F.conv2d(torch.bmm(g, attn.permute(0, 2, 1)).view(-1, C // 2, H, W), self.o)
        return x + self.gamma * o


class BigGANGenerator(Generator):
    """BigGAN-deep with the generator protocol: class-conditional, z space only, truncation = psi.

    Editable layers: ``generator.gen_z`` (kind ``"linear"``, ``[4*4*16 ch, 2 z_dim]``), every
    GenBlock conv ``generator.layers.{i}.conv_{0..3}`` and ``generator.conv_to_rgb`` (kind
    ``"conv"``): parameter methods shift the effective weights (after spectral normalisation).
    """

    family = "biggan"
    capabilities = frozenset({CLASSES, FIRST_LATENT_LAYER, EARLY_ACTIVATION, SHARED_PREFIX})
    truncation_range = (0.01, 1.0)

    def __init__(self, config: BigGANConfig, *, name: str = "biggan") -> None:
        super().__init__()
        self.config = config
        self.name = name
        self.z_dim = config.z_dim
        self.num_classes = config.num_classes
        self.resolution = config.resolution
        self.img_channels = 3
        ch, cond = config.channel_width, config.cond_dim
        self.embeddings = nn.Parameter(torch.zeros(config.z_dim, config.num_classes))  # [z_dim, classes]
        self.gen_z_weight = nn.Parameter(torch.zeros(4 * 4 * 16 * ch, cond))
        self.gen_z_bias = nn.Parameter(torch.zeros(4 * 4 * 16 * ch))
        mods = []
        for kind, k in config.module_layout():
            up, cin, cout = config.layers[k]
            if kind == "attn":
                mods.append(SelfAttention(cin * ch))
            else:
                mods.append(GenBlock(cin * ch, cout * ch, up, cond, config.n_stats, config.eps))
        self.layers = nn.ModuleList(mods)
        self.bn_weight = nn.Parameter(torch.ones(ch))
        self.bn_bias = nn.Parameter(torch.zeros(ch))
        self.register_buffer("bn_means", torch.zeros(config.n_stats, ch))
        self.register_buffer("bn_vars", torch.ones(config.n_stats, ch))
        self.conv_to_rgb = Conv(ch, ch, 3)
        self.sn_sigma: dict[str, float] = {}  # the reference's eval-mode divisor of each SN module (set by the loader)
        self.class_labels: list[str] | None = None  # names for the classes (ImageNet: torchvision's), if known
        self.default_edit_layer = self._pick_default_edit_layer()

    def train(self, mode: bool = True) -> BigGANGenerator:
        # eval mode only: the reference's training mode runs power iterations and changes the weights
        return super().train(False)

    # ---- classes and latents -------------------------------------------------------------------
    def class_names(self) -> list[str]:
        """ImageNet names for 1000-class models (torchvision's metadata, read on first use), else indices."""
        if self.class_labels is None and self.num_classes == 1000:
            self.class_labels = imagenet_class_names() or []
        if self.class_labels and len(self.class_labels) == self.num_classes:
            return list(self.class_labels)
        return super().class_names()

    @property
    def has_truncation(self) -> bool:
        return True

    def seed_latents(self, seeds: Sequence[int], *, psi: float = 1.0) -> torch.Tensor:
        """``[len(seeds), z_dim]``: ``psi * truncnorm(-2, 2)`` per seed, the reference's ``truncated_noise_sample``."""
        from scipy.stats import truncnorm

        check_truncation(psi)
        rows = [
            truncnorm.rvs(
                -TRUNCNORM_BOUND,
                TRUNCNORM_BOUND,
                size=(1, self.z_dim),
                random_state=np.random.RandomState(int(s) % (2**32)),
            ).astype(np.float32)[0]
            for s in seeds
        ]
        if not rows:
            return torch.zeros(0, self.z_dim)
        return torch.from_numpy(psi * np.stack(rows))

    def embed(self, classes: torch.Tensor) -> torch.Tensor:
        """``[B, z_dim]`` the class embeddings of long ``classes [B]`` (one-hot vectors times ``embeddings^T``)."""
        return self.embeddings.t()[classes.to(self.embeddings.device, torch.long)]

    def cond_vector(self, z: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """``[B, 2 z_dim]``: ``[z, embed(class)]``, what gen_z and every conditional BN read."""
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise AtlasError(f"model '{self.name}' expects z of shape [B, {self.z_dim}], got {list(z.shape)}")
        return torch.cat([z.to(self.embeddings.dtype), self.embed(classes)], dim=1)

    # ---- layers --------------------------------------------------------------------------------
    def _pick_default_edit_layer(self) -> str:
        # the middle GenBlock's first 3x3 conv: spatial edits that are neither global colour nor texture
        blocks = [i for i, m in enumerate(self.layers) if isinstance(m, GenBlock)]
        return f"generator.layers.{blocks[len(blocks) // 2]}.conv_1"

    def _layer_table(self) -> dict[str, tuple[str, torch.Tensor, int]]:
        """name -> (kind, weight, output resolution), input to output."""
        out = {"generator.gen_z": ("linear", self.gen_z_weight, 4)}
        res = 4
        for i, m in enumerate(self.layers):
            if isinstance(m, GenBlock):
                for j in range(4):
                    if j == 1 and m.up:
                        res *= 2
                    out[f"generator.layers.{i}.conv_{j}"] = ("conv", getattr(m, f"conv_{j}").weight, res)
        out["generator.conv_to_rgb"] = ("conv", self.conv_to_rgb.weight, res)
        return out

    def editable_layers(self) -> list[LayerInfo]:
        return [LayerInfo(name, kind, tuple(w.shape), res) for name, (kind, w, res) in self._layer_table().items()]

    def uneditable_layers(self) -> list[tuple[str, str, str]]:
        """The linear maps that are not editable layers, with the reason (``info``)."""
        n_bn = sum(4 for m in self.layers if isinstance(m, GenBlock))
        return [
            (
                "embeddings",
                "linear (one-hot class)",
                "a table of class vectors, not a layer the image's features pass through: shifting column c "
                "changes class c alone (choose another class instead)",
            ),
            (
                "generator.layers.*.bn_{0..3}.scale / .offset",
                f"linear ({2 * n_bn} maps)",
                "conditional batch-norm gains and biases computed from [z, class]; parameter edits are not "
                "threaded through the batch norms",
            ),
        ]

    def layer_weight(self, name: str) -> torch.Tensor:
        table = self._layer_table()
        if name not in table:
            self.layer_info(name)  # raises the listing error
        return table[name][1]

    def first_latent_layer(self) -> LatentLayer:
        """The z columns of gen_z's effective weight, ``[4*4*16 ch, z_dim]`` (SeFa normalises its rows, as its code does)."""
        return LatentLayer("generator.gen_z", self.gen_z_weight.detach()[:, : self.z_dim].double(), normalize_rows=True)

    @property
    def activation_depths(self) -> tuple[int, int]:
        """Depth 1: the output of gen_z as ``[B, 16 ch, 4, 4]`` (GANSpace's ``generator.gen_z``); d > 1: after ``layers[:d-1]``."""
        return (1, 1 + len(self.layers))

    @property
    def default_activation_depth(self) -> int:
        return 1

    def activation_name(self, depth: int) -> str:
        return "generator.gen_z" if depth <= 1 else f"generator.layers.{depth - 2}"

    def early_activation(self, z: torch.Tensor, depth: int, *, classes=None, psi: float = 1.0) -> torch.Tensor:
        """The activation at ``depth`` (see ``activation_depths``) for latents ``z`` of the given classes, at truncation ``psi``."""
        lo, hi = self.activation_depths
        if not lo <= depth <= hi:
            raise AtlasError(f"model '{self.name}' offers early activations at depths {lo}..{hi}, not {depth}")
        cond = self.condition(z.shape[0], classes=classes, truncation=psi)
        c = self.cond_vector(z.to(self.device), cond.classes)
        x = self._gen_z(c, [])
        for m in self.layers[: depth - 1]:
            x = m(x, c, psi, {}) if isinstance(m, GenBlock) else m(x)
        return x

    # ---- synthesis -----------------------------------------------------------------------------
    def _gen_z(self, cond: torch.Tensor, edits: list[ParamEdit]) -> torch.Tensor:
        x = F.linear(cond, self.gen_z_weight, self.gen_z_bias)
        if edits:
            x = apply_conv_edit(cond, x, edits, F.linear)
        ch16 = 16 * self.config.channel_width
        return x.view(-1, 4, 4, ch16).permute(0, 3, 1, 2).contiguous()  # TF's NHWC order

    def synthesis(
        self,
        ws: torch.Tensor,
        *,
        noise: str = "const",
        edit: EditArg = None,
        noise_generator: torch.Generator | None = None,
        cond: Condition | None = None,
    ) -> torch.Tensor:
        """``z [B, z_dim] -> images [B, 3, R, R]`` in [-1, 1] for ``cond.classes`` at truncation ``cond.truncation``.

        ``noise`` is ignored (BigGAN has no noise inputs). ``edit``: shifts of the editable layers'
        effective weights; with ``ParamEdit.source`` (shared prefix) rows expand to the batch
        before the first block that holds an edited layer.
        """
        if cond is None or cond.classes is None:
            cond = self.condition(ws.shape[0], truncation=None if cond is None else cond.truncation)
        t = 1.0 if cond.truncation is None else cond.truncation
        check_truncation(t)
        c = self.cond_vector(ws.to(self.device), cond.classes)
        edits, source = self.checked_edits(edit, ws.shape[0])
        edited = {e.layer for e in edits}

        def expand_if(prefix: str) -> None:
            nonlocal source, c, x
            if source is not None and any(name == prefix or name.startswith(prefix + ".") for name in edited):
                c = c[source]
                x = x[source] if x is not None else None
                source = None

        x = None
        expand_if("generator.gen_z")
        x = self._gen_z(c, edits_for(edits, "generator.gen_z") if edits else [])
        for i, m in enumerate(self.layers):
            name = f"generator.layers.{i}"
            if isinstance(m, GenBlock):
                expand_if(name)
                mine = {f"conv_{j}": edits_for(edits, f"{name}.conv_{j}") for j in range(4)} if edits else {}
                x = m(x, c, t, mine)
            else:
                x = m(x)
        expand_if("generator.conv_to_rgb")
        mean, var = batchnorm_stats(self.bn_means, self.bn_vars, t)
        x = F.batch_norm(x, mean, var, self.bn_weight, self.bn_bias, training=False, momentum=0.0, eps=self.config.eps)
        x = self.conv_to_rgb(F.relu(x), edits_for(edits, "generator.conv_to_rgb") if edits else [])
        return torch.tanh(x[:, :3])

    def describe(self) -> dict:
        c = self.config
        d = super().describe()
        d["format"] = "pytorch-pretrained-biggan"
        d["channel_width"] = c.channel_width
        d["blocks"] = ", ".join(
            f"{'attention' if kind == 'attn' else ('up ' if c.layers[k][0] else '') + f'{c.layers[k][1]}->{c.layers[k][2]}'}"
            for kind, k in c.module_layout()
        )
        d["batchnorm_statistics"] = f"{c.n_stats} truncation levels (step {1 / (c.n_stats - 1):.4g}), eps {c.eps:g}"
        d["truncation"] = "psi in (0, 1]: batch-norm statistics and the seeds' truncated noise follow it"
        d["editable_layers"] = d.pop("editable_layers")
        d["default_edit_layer"] = d.pop("default_edit_layer")
        return d


def check_truncation(t: float) -> None:
    if not (isinstance(t, (int, float)) and 0 < t <= 1):
        raise AtlasError(f"truncation {t}: BigGAN's truncation must lie in (0, 1]")


def imagenet_class_names() -> list[str] | None:
    """The 1000 ImageNet class names from torchvision's weights metadata (offline), or ``None``."""
    try:
        from torchvision.models import ResNet50_Weights
    except Exception:  # noqa: BLE001 - torchvision missing or broken: indices it is
        return None
    names = ResNet50_Weights.IMAGENET1K_V1.meta.get("categories")
    return list(names) if isinstance(names, list) and len(names) == 1000 else None


__all__ = ["BigGANConfig", "BigGANGenerator", "batchnorm_stats", "bn_statistics_rows", "imagenet_class_names"]
