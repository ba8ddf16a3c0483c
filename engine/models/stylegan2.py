"""StyleGAN2 generator (Karras et al. 2020), our own implementation.

Mapping network: z -> 2nd-moment normalisation -> ``mapping_layers`` equalized-lr fully connected
layers (lr multiplier 0.01, leaky ReLU 0.2 times sqrt 2) -> w. Class-conditional models
(``c_dim > 0``, NVIDIA's conditional StyleGAN2-ADA) embed the one-hot label with a linear
equalized-lr layer (lr multiplier 1), normalise z and the embedding separately and feed their
concatenation to the first layer; one ``w_avg`` serves every class. Synthesis network: a learned 4x4
constant, then one block per resolution 4, 8, ..., R. Every 3x3 convolution is *modulated* (its
input channels scaled by a per-sample style ``A(w)``) and *demodulated* (each output filter
rescaled to unit norm), followed by per-pixel noise times a learned strength, a bias and a leaky
ReLU with gain sqrt 2 (optionally clamped to ``conv_clamp``). Up-sampling convolutions are
stride-2 transposed convolutions followed by the FIR low-pass filter [1, 3, 3, 1] (outer product,
normalised, times 4). toRGB layers are modulated 1x1 convolutions without demodulation.

Architectures (``StyleGAN2Config.architecture``):

* ``skip`` (default; rosinality's only one): every block has a toRGB and the image is the sum of
  the up-sampled images of all blocks;
* ``orig``: only the last block has a toRGB;
* ``resnet``: blocks after the first add a 1x1 up-sampling shortcut (gain sqrt 0.5) to their
  second conv, which also runs with gain sqrt 0.5 (and clamp ``conv_clamp * sqrt 0.5``); only
  the last block has a toRGB.

Layer names and w indices
-------------------------
Layers are named after the block resolution ``r`` (``synthesis.b{r}.*``, as in NVIDIA's code):

=========================  ============  ============================================
layer                      reads ws[i]   weight
=========================  ============  ============================================
``synthesis.b4.conv1``     0             ``[C4, C4, 3, 3]``
``synthesis.b4.torgb``     1             ``[img_channels, C4, 1, 1]`` (skip, or R = 4)
``synthesis.b{r}.conv0``   2k - 1        ``[C_r, C_{r/2}, 3, 3]`` up-sampling, k = log2(r) - 2
``synthesis.b{r}.conv1``   2k            ``[C_r, C_r, 3, 3]``
``synthesis.b{r}.torgb``   2k + 1        ``[img_channels, C_r, 1, 1]``
=========================  ============  ============================================

so ``num_ws = 2 log2(R) - 2`` and each toRGB shares its w with the next block's first conv.
The 3x3 convolutions are the editable layers of kind ``"modconv"`` (toRGB layers are editable too,
kind ``"torgb"``). A parameter edit adds each sample's ``W + t * delta`` to the weight *before*
modulation and demodulation, inside the same grouped convolution, so one forward pass serves a
batch of different (direction, t) pairs and stays differentiable in ``delta`` and ``t``.

The mapping network's fully connected layers are editable too: ``mapping.fc0`` (reads the
normalised z, and the normalised class embedding of conditional models) .. ``mapping.fc{n-1}``
(writes w), kind ``"linear"``, weight ``[out, in]`` as stored (the layer applies it times
``lr_mul / sqrt(in)``). An edit there changes w, so every ws of the sample, and acts on z codes
only (``Generator.decode`` routes it to ``mapping``); by linearity the layer computes
``x (W g)^T`` once and ``t x (D g)^T`` per distinct delta. Truncation pulls towards the unedited
model's ``w_avg``: NVIDIA's ``w_avg`` is a statistic of the trained model, not recomputed for an
edited one.

Weights are stored as in both public PyTorch ports ("equalized learning rate"): parameters are
N(0, 1) at initialisation and the forward pass multiplies them by ``lr_mul / sqrt(fan_in)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import AtlasError
from engine.models.base import (
    CLASSES,
    MAPPING,
    NOISE_INPUTS,
    NOISE_MODES,
    PREFIX_STATE,
    SHARED_PREFIX,
    STYLE_AFFINES,
    Condition,
    EditArg,
    Generator,
    LayerInfo,
    ParamEdit,
    SynthesisState,
    apply_conv_edit,
    edits_for,
    per_sample_shift,
    uniform_shift,
)

ARCHITECTURES = ("skip", "orig", "resnet")
SQRT2 = math.sqrt(2.0)
SQRT_HALF = math.sqrt(0.5)

# ceilings for configurations read from files (the largest published StyleGAN2 is 1024 px, 512 wide)
MAX_RESOLUTION = 4096
MAX_WIDTH = 8192
MAX_MAPPING_LAYERS = 64
MAX_IMG_CHANNELS = 16
MAX_CLASSES = 1 << 20

# rosinality's width table at channel_multiplier 1 (the multiplier scales resolutions >= 64)
ROSINALITY_WIDTHS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


@dataclass(frozen=True)
class StyleGAN2Config:
    """Everything that decides the shapes and the forward computation of a StyleGAN2 generator.

    ``channels`` maps each block resolution 4, 8, ..., ``resolution`` to its width.
    ``fp16_resolutions`` records the blocks a checkpoint ran in float16; we compute them in float32.
    """

    resolution: int
    channels: dict[int, int]
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_hidden: int | None = None  # width of the inner mapping layers; None = w_dim
    mapping_lr_mul: float = 0.01
    architecture: str = "skip"
    conv_clamp: float | None = None
    img_channels: int = 3
    use_noise: bool = True
    w_avg_beta: float = 0.995
    fp16_resolutions: tuple[int, ...] = ()
    c_dim: int = 0  # number of classes of a conditional model (one-hot labels); 0: unconditional
    embed_features: int | None = None  # width of the label embedding; None = w_dim

    def __post_init__(self) -> None:
        R = self.resolution
        if R < 4 or R & (R - 1):
            raise AtlasError(f"StyleGAN2 resolution {R} is not a power of two >= 4")
        want = set(self.block_resolutions)
        chans = {int(k): int(v) for k, v in self.channels.items()}
        if set(chans) != want:
            raise AtlasError(f"StyleGAN2 channels given for {sorted(chans)}, expected {sorted(want)}")
        object.__setattr__(self, "channels", dict(sorted(chans.items())))
        if self.architecture not in ARCHITECTURES:
            raise AtlasError(
                f"unknown StyleGAN2 architecture '{self.architecture}'; choose one of {', '.join(ARCHITECTURES)}"
            )
        if self.mapping_layers < 1:
            raise AtlasError("a StyleGAN2 mapping network needs at least one layer")
        if self.c_dim < 0:
            raise AtlasError(f"StyleGAN2 c_dim {self.c_dim} is negative")
        object.__setattr__(self, "fp16_resolutions", tuple(int(r) for r in self.fp16_resolutions))
        self._check_limits()

    def _check_limits(self) -> None:
        """Types and ceilings: a configuration read from a file cannot ask for an absurd network."""
        ints = {
            "resolution": (self.resolution, MAX_RESOLUTION),
            "z_dim": (self.z_dim, MAX_WIDTH),
            "w_dim": (self.w_dim, MAX_WIDTH),
            "mapping_layers": (self.mapping_layers, MAX_MAPPING_LAYERS),
            "mapping_hidden": (self.hidden, MAX_WIDTH),
            "img_channels": (self.img_channels, MAX_IMG_CHANNELS),
            "label embedding": (self.embed_dim or 1, MAX_WIDTH),
            **{f"channels[{r}]": (c, MAX_WIDTH) for r, c in self.channels.items()},
        }
        for name, (value, ceiling) in ints.items():
            if type(value) is not int or not 1 <= value <= ceiling:
                raise AtlasError(f"StyleGAN2 {name} must be an integer 1..{ceiling}, got {value!r}"[:200])
        for name, value in (("mapping_lr_mul", self.mapping_lr_mul), ("w_avg_beta", self.w_avg_beta)):
            if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
                raise AtlasError(f"StyleGAN2 {name} must be a finite number >= 0, got {value!r}"[:200])
        if self.conv_clamp is not None and (
            type(self.conv_clamp) not in (int, float) or not math.isfinite(self.conv_clamp) or self.conv_clamp <= 0
        ):
            raise AtlasError(f"StyleGAN2 conv_clamp must be a positive number or None, got {self.conv_clamp!r}"[:200])
        if type(self.c_dim) is not int or not 0 <= self.c_dim <= MAX_CLASSES:
            raise AtlasError(f"StyleGAN2 c_dim must be an integer 0..{MAX_CLASSES}, got {self.c_dim!r}"[:200])
        if type(self.use_noise) is not bool:
            raise AtlasError(f"StyleGAN2 use_noise must be true or false, got {self.use_noise!r}"[:200])

    def state_numel(self) -> int:
        """Number of values in the state dict of a ``StyleGAN2Generator`` of this configuration
        (counted without building it: loaders compare it with what a file holds)."""
        e = self.embed_dim
        dims = [self.z_dim + e] + [self.hidden] * (self.mapping_layers - 1) + [self.w_dim]
        n = sum(a * b + b for a, b in zip(dims[:-1], dims[1:])) + self.w_dim  # mapping + w_avg
        n += self.c_dim * e + e  # label embedding (conditional models)

        def conv(cin: int, c: int, r: int) -> int:  # affine, weight, bias, noise strength and map
            return self.w_dim * cin + cin + c * cin * 9 + c + (1 + r * r if self.use_noise else 0)

        for r in self.block_resolutions:
            c = self.channels[r]
            if r == 4:
                n += c * 16 + conv(c, c, r)
            else:
                cin = self.channels[r // 2]
                n += conv(cin, c, r) + conv(c, c, r)
                if self.architecture == "resnet":
                    n += c * cin
            if self.architecture == "skip" or r == self.resolution:
                n += self.w_dim * c + c + self.img_channels * c + self.img_channels
        return n

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.resolution)) + 1)]

    @property
    def num_ws(self) -> int:
        return 2 * int(math.log2(self.resolution)) - 2

    @property
    def hidden(self) -> int:
        return self.mapping_hidden or self.w_dim

    @property
    def embed_dim(self) -> int:
        """Width of the label embedding (0 for unconditional models)."""
        return (self.embed_features or self.w_dim) if self.c_dim > 0 else 0

    def to_dict(self) -> dict:
        """Plain JSON-able data (``channels`` keys become strings)."""
        d = asdict(self)
        d["channels"] = {str(k): v for k, v in self.channels.items()}
        d["fp16_resolutions"] = list(self.fp16_resolutions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> StyleGAN2Config:
        d = dict(d)
        d["channels"] = {int(k): int(v) for k, v in d["channels"].items()}
        d["fp16_resolutions"] = tuple(d.get("fp16_resolutions", ()))
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise AtlasError(f"unknown StyleGAN2 configuration fields: {', '.join(sorted(unknown))}")
        return cls(**d)

    @classmethod
    def standard(cls, resolution: int, *, channel_base: int = 32768, channel_max: int = 512, **kw) -> StyleGAN2Config:
        """NVIDIA's width rule: ``C_r = min(channel_base // r, channel_max)``."""
        res = [2**i for i in range(2, int(math.log2(resolution)) + 1)]
        return cls(resolution=resolution, channels={r: min(channel_base // r, channel_max) for r in res}, **kw)

    def rosinality_multiplier(self) -> int | None:
        """The ``channel_multiplier`` whose rosinality width table gives ``channels``, if any."""
        for m in (1, 2, 4):
            if all(
                r in ROSINALITY_WIDTHS and c == (ROSINALITY_WIDTHS[r] * (m if r >= 64 else 1))
                for r, c in self.channels.items()
            ):
                return m
        return None


# ---- building blocks ---------------------------------------------------------------------


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``x / sqrt(mean(x^2) + eps)`` over the feature axis (the paper's PixelNorm of z)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def lrelu_gain(
    x: torch.Tensor, bias: torch.Tensor | None, gain: float = 1.0, clamp: float | None = None
) -> torch.Tensor:
    """``clamp(leaky_relu(x + bias, 0.2) * sqrt(2) * gain)`` with bias over channel axis 1.

    Without autograd ``x`` is overwritten (callers pass a fresh tensor): rendering large
    batches on the CPU is memory-bound, and each temporary costs a pass over the activations.
    """
    b = bias.reshape((1, -1) + (1,) * (x.dim() - 2)) if bias is not None else None
    if not torch.is_grad_enabled():
        if b is not None:
            x.add_(b)
        F.leaky_relu_(x, 0.2).mul_(SQRT2 * gain)
        return x.clamp_(-clamp, clamp) if clamp is not None else x
    if b is not None:
        x = x + b
    x = F.leaky_relu(x, 0.2) * (SQRT2 * gain)
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def fir_filter(taps=(1.0, 3.0, 3.0, 1.0)) -> torch.Tensor:
    """The separable low-pass ``outer(taps, taps)``, normalised to sum 1: ``[k, k]``."""
    f = torch.tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def blur(x: torch.Tensor, f: torch.Tensor, pad: tuple[int, int], gain: float = 1.0) -> torch.Tensor:
    """Filter every channel of ``x [N, C, H, W]`` with the symmetric FIR ``f [k, k]``.

    The input is padded by ``pad[0]`` before and ``pad[1]`` after in both axes; the output is
    ``[N, C, H + pad[0] + pad[1] - k + 1, ...]``. A symmetric filter makes correlation and
    convolution the same, so there is no flip.
    """
    C, k = x.shape[1], f.shape[-1]
    # one depthwise convolution (groups = C): folding channels into the batch as 1-channel images
    # is the same function but 7-25x slower on the CPU, and super-linearly so in the batch size
    y = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    return F.conv2d(y, (f * gain).to(x.dtype)[None, None].expand(C, 1, k, k), groups=C)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x up-sampling by zero insertion and the FIR ``f`` (gain 4): ``[N, C, H, W] -> [N, C, 2H, 2W]``.

    Zero insertion then filtering with padding (2, 1) is a stride-2 transposed convolution with
    padding 1, which is what runs.
    """
    C, k = x.shape[1], f.shape[-1]
    w = (f * 4).to(x.dtype)[None, None].expand(C, 1, k, k)
    return F.conv_transpose2d(x, w, stride=2, padding=(k - 2) // 2, groups=C)  # depthwise, as in blur


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    up: bool = False,
    shift: torch.Tensor | None = None,
    resample_filter: torch.Tensor | None = None,
    fused: bool = True,
) -> torch.Tensor:
    """The modulated (and demodulated) convolution of StyleGAN2.

    ``x [B, I, H, W]``, ``weight [O, I, k, k]``, ``styles [B, I]`` (gains already applied),
    ``shift [B, O, I, k, k]`` or ``None``: sample b convolves with
    ``(weight + shift[b]) * styles[b]``, demodulated per output channel. ``up`` doubles the
    resolution (transposed conv, then the FIR). Returns ``[B, O, H', W']``.

    ``fused`` builds the per-sample weights and runs one grouped convolution (always used with a
    shift); otherwise the activations are scaled before and after one shared convolution, which
    is the same function and faster for training.
    """
    B, Cin, H, W = x.shape
    Cout, _, kh, kw = weight.shape
    pad = kh // 2
    if fused or shift is not None:
        w = weight.unsqueeze(0) if shift is None else weight.unsqueeze(0) + shift  # [B|1, O, I, k, k]
        w = w * styles.reshape(B, 1, Cin, 1, 1)
        if demodulate:
            w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(B, Cout, 1, 1, 1)
        x = x.reshape(1, B * Cin, H, W)
        if up:
            w = w.transpose(1, 2).reshape(B * Cin, Cout, kh, kw)
            x = F.conv_transpose2d(x, w, stride=2, groups=B)
        else:
            x = F.conv2d(x, w.reshape(B * Cout, Cin, kh, kw), padding=pad, groups=B)
        x = x.reshape(B, Cout, x.shape[2], x.shape[3])
    else:
        x = x * styles.reshape(B, Cin, 1, 1)
        if up:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        else:
            x = F.conv2d(x, weight, padding=pad)
        if demodulate:
            # sum_{i,k} (W[o,i,k] s[b,i])^2 = (s^2 @ sum_k W^2 ^T)[b, o]
            dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()
            x = x * dcoefs.reshape(B, Cout, 1, 1)
    if up:
        # transposed 3x3 stride-2 output is 2H+1; the FIR with padding (1, 1) brings it to 2H
        k = resample_filter.shape[-1]
        p = (k - 2) - (kh - 1)
        x = blur(x, resample_filter, ((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)
    return x


def modulated_conv2d_edited(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    edits: list[ParamEdit],
    *,
    source: torch.Tensor | None = None,
    demodulate: bool = True,
    up: bool = False,
    resample_filter: torch.Tensor | None = None,
) -> torch.Tensor:
    """``modulated_conv2d`` for a batch of parameter edits, by linearity in the weight.

    ``x [N, I, H, W]`` and ``styles [N, I]`` hold N distinct rows; ``source [B]`` (or ``None``:
    B = N) says which row each output sample continues; sample b uses the weight
    ``weight + sum_e edits[e].t[b] * edits[e].delta[index[b]]``. Modulation is applied to the
    input once per distinct row, ``conv(x s, weight)`` runs once per distinct row, and
    ``conv(x s, delta_u)`` once per distinct (row, delta) pair whatever the number of shifts t
    (rows with t = 0 skip it); demodulation coefficients come from the squared weights of each
    distinct (delta, t) combination. The same function as the per-sample grouped convolution,
    at the cost of about (1 + #deltas) shared convolutions. Returns ``[B, O, H', W']``.
    """
    N, Cin = styles.shape
    Cout, _, kh, kw = weight.shape
    pad = kh // 2
    rows_all = source if source is not None else torch.arange(N, device=x.device)
    B = rows_all.shape[0]

    def conv(inp: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if up:
            return F.conv_transpose2d(inp, w.transpose(0, 1), stride=2)
        return F.conv2d(inp, w, padding=pad)

    shift = uniform_shift(edits)
    if shift is not None:  # every sample has the same weight: the plain unfused modulated conv
        out = modulated_conv2d(
            x,
            weight + shift.to(weight.dtype),
            styles,
            demodulate=demodulate,
            up=up,
            resample_filter=resample_filter,
            fused=False,
        )
        return out[source] if source is not None else out
    xs = x * styles.reshape(N, Cin, 1, 1)
    out = conv(xs, weight)[rows_all]
    extra = torch.zeros_like(out)
    for e in edits:
        t = e.t.to(out.dtype)
        for u in torch.unique(e.index).tolist():
            rows = ((e.index == u) & (t != 0)).nonzero(as_tuple=True)[0]
            if rows.numel() == 0:
                continue
            inputs, which = torch.unique(rows_all[rows], return_inverse=True)
            d_out = conv(xs[inputs], e.delta[u].to(x.dtype))[which]
            extra = extra.index_add(0, rows, d_out * t[rows].reshape(-1, 1, 1, 1))
    out = out + extra
    if demodulate:
        # each row's weight is fixed by its (index, t) per edit: one sum_k W^2 per distinct combination
        key = torch.stack([torch.stack([e.index.to(out.dtype), e.t.to(out.dtype)], 1) for e in edits], 1)
        combos, group = torch.unique(key.reshape(B, -1), dim=0, return_inverse=True)
        s2 = styles.square()[rows_all]  # [B, I]
        order = group.argsort()
        pieces = []
        if len(edits) == 1:
            # sum_k (W + t D_u)^2 = sum_k W^2 + 2 t sum_k W D_u + t^2 sum_k D_u^2: [O, I] terms per delta
            e = edits[0]
            delta = e.delta.to(weight.dtype)
            w2 = weight.square().sum(dim=[2, 3])
            wd = {u: (weight * delta[u]).sum(dim=[2, 3]) for u in torch.unique(e.index).tolist()}
            d2 = {u: delta[u].square().sum(dim=[2, 3]) for u in wd}
        for g, rows in enumerate(order.split(torch.bincount(group, minlength=combos.shape[0]).tolist())):
            if len(edits) == 1:
                u, t = int(combos[g, 0]), combos[g, 1]
                wsq = w2 + (2 * t) * wd[u] + (t * t) * d2[u]
            else:
                w = weight
                for j, e in enumerate(edits):
                    w = w + combos[g, 2 * j + 1] * e.delta[int(combos[g, 2 * j])].to(weight.dtype)
                wsq = w.square().sum(dim=[2, 3])
            pieces.append(s2[rows] @ wsq.t())
        dcoefs = (torch.cat(pieces)[order.argsort()] + 1e-8).rsqrt()  # out of place: vmap-safe
        out = out * dcoefs.reshape(B, Cout, 1, 1)
    if up:
        k = resample_filter.shape[-1]
        p = (k - 2) - (kh - 1)
        out = blur(out, resample_filter, ((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)
    return out


class EqualLinear(nn.Module):
    """Fully connected layer with equalized learning rate: ``y = x (W g)^T + b lr_mul``, g = lr_mul/sqrt(in)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: str = "linear",
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.lr_mul = lr_mul
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.activation = activation

    def effective_weight(self) -> torch.Tensor:
        """``[out, in]`` the matrix actually applied (gain folded in)."""
        return self.weight * self.weight_gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)
        return F.leaky_relu(x, 0.2) * SQRT2 if self.activation == "lrelu" else x


class MappingNetwork(nn.Module):
    """``z [B, z_dim] (, labels [B, c_dim]) -> w [B, w_dim]``: normalise, then ``num_layers`` leaky-ReLU EqualLinear layers.

    With ``c_dim > 0`` the labels are embedded (``embed``: linear, lr multiplier 1, ``embed_dim``
    outputs), normalised on their own and concatenated after the normalised z.
    """

    def __init__(
        self, z_dim: int, w_dim: int, num_layers: int, hidden: int, lr_mul: float, c_dim: int = 0, embed_dim: int = 0
    ) -> None:
        super().__init__()
        dims = [z_dim + embed_dim] + [hidden] * (num_layers - 1) + [w_dim]
        self.c_dim = c_dim
        if c_dim > 0:
            self.embed = EqualLinear(c_dim, embed_dim)
        self.fcs = nn.ModuleList(
            EqualLinear(dims[i], dims[i + 1], lr_mul=lr_mul, activation="lrelu") for i in range(num_layers)
        )

    def layer_names(self) -> list[str]:
        """``mapping.fc0 .. mapping.fc{n-1}``: the editable names of the fully connected layers."""
        return [f"mapping.fc{i}" for i in range(len(self.fcs))]

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        edits: list[ParamEdit] | None = None,
        source: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``edits``: parameter edits of ``mapping.fc{i}`` (weight ``[out, in]`` as stored): the
        layer applies ``x ((W + t D) g)^T + b lr_mul`` per sample, computed by linearity as the
        unedited ``x (W g)^T`` once plus ``t x (D g)^T`` per distinct delta (``apply_conv_edit``).
        ``source [B]`` (shared-prefix form): z (and labels) hold the distinct rows; the layers
        before the first edited one run once per row, and the output has B rows.
        """
        x = normalize_2nd_moment(z.to(self.fcs[0].weight.dtype))
        if self.c_dim > 0:
            y = normalize_2nd_moment(self.embed(labels.to(x.dtype)))
            x = torch.cat([x, y], dim=1)
        for name, fc in zip(self.layer_names(), self.fcs):
            mine = edits_for(edits, name) if edits else []
            if not mine:
                x = fc(x)
                continue
            gain = fc.weight_gain
            shift = uniform_shift(mine)
            if shift is not None:  # one shift for every sample (a preview): the layer with W + t D itself
                x = x if source is None else x[source]
                out = F.linear(x, (fc.weight + shift.to(fc.weight.dtype)) * gain, fc.bias * fc.lr_mul)
            else:
                out = F.linear(x, fc.weight * gain)
                out = apply_conv_edit(x, out, mine, lambda inp, d, g=gain: F.linear(inp, d * g), source)
                out = out + fc.bias * fc.lr_mul
            source = None  # rows are samples from here on
            x = F.leaky_relu(out, 0.2) * SQRT2
        return x if source is None else x[source]


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x up-sampling) + noise + bias + leaky ReLU (+ clamp)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        *,
        up: bool = False,
        use_noise: bool = True,
        conv_clamp: float | None = None,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.conv_clamp = conv_clamp
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.use_noise = use_noise
        if use_noise:
            self.noise_strength = nn.Parameter(torch.zeros([]))
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        *,
        noise: str | torch.Tensor,
        shift: torch.Tensor | None = None,
        fused: bool = True,
        gain: float = 1.0,
        noise_generator: torch.Generator | None = None,
        edits: list[ParamEdit] | None = None,
        source: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``noise``: a mode (``const`` / ``random`` / ``none``) or this layer's maps ``[B, 1, R, R]``.

        ``edits`` (gradient-free parameter edits of this layer; ``x`` and ``w`` may then hold the
        distinct rows that ``source`` expands): see ``modulated_conv2d_edited``.
        """
        styles = self.affine(w) * self.weight_gain  # [B, I]
        if edits:
            x = modulated_conv2d_edited(
                x, self.weight, styles, edits, source=source, up=self.up, resample_filter=self.resample_filter
            )
        else:
            x = modulated_conv2d(
                x, self.weight, styles, up=self.up, shift=shift, resample_filter=self.resample_filter, fused=fused
            )
        if isinstance(noise, torch.Tensor):
            if self.use_noise:
                x = x + noise.to(x.dtype) * self.noise_strength
        elif self.use_noise and noise != "none":
            if noise == "const":
                n = self.noise_const
            else:
                n = random_noise((x.shape[0], 1, self.resolution, self.resolution), x, noise_generator)
            x = x + n * self.noise_strength  # fresh: lrelu_gain may work in place
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return lrelu_gain(x, self.bias, gain, clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv without demodulation, plus bias (+ clamp)."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int, *, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        *,
        shift: torch.Tensor | None = None,
        fused: bool = True,
        edits: list[ParamEdit] | None = None,
        source: torch.Tensor | None = None,
    ) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        if edits:
            x = modulated_conv2d_edited(x, self.weight, styles, edits, source=source, demodulate=False)
        else:
            x = modulated_conv2d(x, self.weight, styles, demodulate=False, shift=shift, fused=fused)
        x = x + self.bias.reshape(1, -1, 1, 1)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class SkipLayer(nn.Module):
    """The resnet shortcut: 1x1 conv (no bias), 2x up-sampling with the FIR, gain sqrt 0.5."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.weight_gain = 1.0 / math.sqrt(in_channels)
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight * (self.weight_gain * SQRT_HALF))
        return upsample2d(x, self.resample_filter)


class SynthesisBlock(nn.Module):
    """One resolution: [const | conv0 (up)] -> conv1 -> [torgb], with the architecture's image path."""

    def __init__(self, in_channels: int, out_channels: int, cfg: StyleGAN2Config, resolution: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.architecture = cfg.architecture
        self.is_first = in_channels == 0
        self.is_last = resolution == cfg.resolution
        if self.is_first:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                cfg.w_dim,
                resolution,
                up=True,
                use_noise=cfg.use_noise,
                conv_clamp=cfg.conv_clamp,
            )
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, cfg.w_dim, resolution, use_noise=cfg.use_noise, conv_clamp=cfg.conv_clamp
        )
        self.has_torgb = self.is_last or cfg.architecture == "skip"
        if self.has_torgb:
            self.torgb = ToRGBLayer(out_channels, cfg.img_channels, cfg.w_dim, conv_clamp=cfg.conv_clamp)
        if not self.is_first and cfg.architecture == "resnet":
            self.skip = SkipLayer(in_channels, out_channels)
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def layers(self) -> Iterator[tuple[str, nn.Module]]:
        """``(short name, layer)`` of the w-consuming layers in ws order."""
        if not self.is_first:
            yield "conv0", self.conv0
        yield "conv1", self.conv1
        if self.has_torgb:
            yield "torgb", self.torgb


class _Synthesis(nn.Module):
    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        self.resolutions = cfg.block_resolutions
        for r in self.resolutions:
            cin = cfg.channels[r // 2] if r > 4 else 0
            self.add_module(f"b{r}", SynthesisBlock(cin, cfg.channels[r], cfg, r))

    def blocks(self) -> Iterator[SynthesisBlock]:
        for r in self.resolutions:
            yield getattr(self, f"b{r}")


# ---- the generator -----------------------------------------------------------------------


class StyleGAN2Generator(Generator):
    """StyleGAN2 with the generator protocol of ``engine.models.base``.

    ``StyleGAN2Generator(config)`` builds a freshly initialised, trainable network
    (equalized-lr weights N(0, 1), biases 0, style biases 1, noise strengths 0, w_avg 0); loaders
    build it from a configuration inferred from a checkpoint and copy the weights in. ``w_avg``
    (``truncation_center``) is tracked with ``config.w_avg_beta`` while the module is in training
    mode, as in NVIDIA's training code.

    ``fused_modconv``: ``None`` (default) uses per-sample grouped convolutions only for CUDA in
    eval mode (NVIDIA's choice) and otherwise scales the activations around one shared
    convolution, which is 1.1-2x faster on the CPU for batches above 1 (``bench/bench_stylegan2.py``);
    edited layers always use the grouped form. Both are the same function (to ~2e-6).
    """

    family = "stylegan2"
    capabilities = frozenset({MAPPING, STYLE_AFFINES, NOISE_INPUTS, SHARED_PREFIX, PREFIX_STATE})

    def __init__(self, config: StyleGAN2Config, *, name: str = "stylegan2") -> None:
        super().__init__()
        self.config = config
        self.name = name
        self.z_dim = config.z_dim
        self.w_dim = config.w_dim
        self.num_ws = config.num_ws
        self.resolution = config.resolution
        self.img_channels = config.img_channels
        self.num_classes = config.c_dim
        if config.c_dim > 0:
            self.capabilities = type(self).capabilities | {CLASSES}
        self.mapping_net = MappingNetwork(
            config.z_dim,
            config.w_dim,
            config.mapping_layers,
            config.hidden,
            config.mapping_lr_mul,
            config.c_dim,
            config.embed_dim,
        )
        self.synthesis_net = _Synthesis(config)
        self.register_buffer("w_avg", torch.zeros(config.w_dim))
        self.w_avg_source = "tracked during training" if config.w_avg_beta else "none"
        self.fused_modconv: bool | None = None
        self.format = "gan-atlas"  # which checkpoint format it came from (set by loaders)
        self.default_edit_layer = self._pick_default_edit_layer()
        self._layers = self._index_layers()
        self._mapping_fcs = dict(zip(self.mapping_net.layer_names(), self.mapping_net.fcs))

    # ---- layer bookkeeping ---------------------------------------------------------------
    def _index_layers(self) -> dict[str, tuple[nn.Module, int, int]]:
        """name -> (module, ws index, output resolution), in ws order."""
        out: dict[str, tuple[nn.Module, int, int]] = {}
        for k, block in enumerate(self.synthesis_net.blocks()):
            for short, layer in block.layers():
                idx = {"conv0": 2 * k - 1, "conv1": 2 * k, "torgb": 2 * k + 1}[short]
                out[f"synthesis.b{block.resolution}.{short}"] = (layer, idx, block.resolution)
        return out

    def _pick_default_edit_layer(self) -> str:
        # The first conv at R/4 (kept within 8..32 px): edits there change shape and layout
        # without being either global colour shifts (toRGB) or pixel noise (top blocks).
        R = self.config.resolution
        if R == 4:
            return "synthesis.b4.conv1"
        r = min(max(R // 4, 8), 32)
        return f"synthesis.b{r}.conv0"

    def layer_module(self, name: str) -> nn.Module:
        if name in self._mapping_fcs:
            return self._mapping_fcs[name]
        if name not in self._layers:
            self.layer_info(name)  # raises the listing error
        return self._layers[name][0]

    def editable_layers(self) -> list[LayerInfo]:
        """The mapping network's fully connected layers (``"linear"``, ``[out, in]``, ``mapping=True``),
        then every modulated conv (``"modconv"``, ``[C_out, C_in, 3, 3]``) and toRGB (``"torgb"``,
        ``[C, C_in, 1, 1]``) in ws order."""
        return mapping_layer_infos(self.mapping_net) + [
            LayerInfo(name, "torgb" if name.endswith("torgb") else "modconv", tuple(m.weight.shape), res)
            for name, (m, _, res) in self._layers.items()
        ]

    def layer_weight(self, name: str) -> torch.Tensor:
        """The stored weight of a layer (``[C_out, C_in, k, k]``, or ``[out, in]`` for a mapping
        layer, before its equalized-lr gain ``lr_mul / sqrt(in)``); an edit shifts exactly this tensor."""
        return self.layer_module(name).weight

    def noise_maps(self) -> dict[str, torch.Tensor]:
        """``{layer name: stored noise map [R, R]}`` of the layers with a noise input, in ws order."""
        return {
            name: m.noise_const
            for name, (m, _, _) in self._layers.items()
            if isinstance(m, SynthesisLayer) and m.use_noise
        }

    def style_affines(self) -> list[tuple[str, int, torch.Tensor]]:
        """``(layer name, ws index, A [C_in, w_dim])`` for every layer that reads a w, in ws order.

        ``A`` is the affine layer's weight as applied (equalized-lr gain folded in): the layer's
        style is ``A @ w + b``. toRGB layers further multiply their style by the constant
        ``1/sqrt(C_in)``, which is not folded in. SeFa and GANSpace use these.
        """
        return [(name, idx, m.affine.effective_weight()) for name, (m, idx, _) in self._layers.items()]

    # ---- spaces ----------------------------------------------------------------------------
    @property
    def truncation_center(self) -> torch.Tensor:
        return self.w_avg

    def mapping(
        self,
        z: torch.Tensor,
        *,
        psi: float = 1.0,
        cutoff: int | None = None,
        classes: torch.Tensor | None = None,
        track: bool = True,
        edit: EditArg = None,
    ) -> torch.Tensor:
        """``z [B, z_dim] -> ws [B, num_ws, w_dim]``; truncation ``w_avg.lerp(w, psi)`` on ws[:, :cutoff] (all if None).

        Conditional models embed ``classes`` (long ``[B]``; default: the view's bound classes)
        as one-hot labels; the truncation centre is shared by all classes, as in NVIDIA's code.
        In training mode each call moves ``w_avg`` towards the batch's mean w, unless ``track``
        is off (a trainer mapping one batch in pieces calls ``track_w_avg`` once with its mean).
        ``edit``: parameter edits of ``mapping.fc*`` (see ``MappingNetwork.forward``); truncation
        still pulls towards the unedited model's ``w_avg``.
        """
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise AtlasError(f"model '{self.name}' expects z of shape [B, {self.z_dim}], got {list(z.shape)}")
        edits, source = self.checked_edits(edit, z.shape[0], mapping=True)
        labels = None
        if self.num_classes > 0:
            if classes is None:
                classes = self.condition(z.shape[0]).classes
            labels = F.one_hot(classes.to(z.device, torch.long), self.num_classes)
        w = self.mapping_net(z, labels, edits, source)
        beta = self.config.w_avg_beta if self.training and track else None
        return broadcast_truncate(w, self.w_avg, self.num_ws, psi=psi, cutoff=cutoff, track_beta=beta)

    def track_w_avg(self, w_mean: torch.Tensor) -> None:
        """In training mode, one step of the moving average: ``w_avg <- w_mean.lerp(w_avg, w_avg_beta)``."""
        if self.training and self.config.w_avg_beta:
            with torch.no_grad():
                self.w_avg.copy_(w_mean.lerp(self.w_avg, self.config.w_avg_beta))

    def mix(
        self,
        z: torch.Tensor,
        z2: torch.Tensor,
        index: int,
        *,
        psi: float = 1.0,
        cutoff: int | None = None,
        classes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Style mixing: ``ws [B, num_ws, w_dim]`` taking layers ``[:index]`` from z and the rest from z2."""
        a = self.mapping(z, psi=psi, cutoff=cutoff, classes=classes)
        return mix_styles(a, self.mapping(z2, psi=psi, cutoff=cutoff, classes=classes), index)

    # ---- synthesis -------------------------------------------------------------------------
    def synthesis(
        self,
        ws: torch.Tensor,
        *,
        noise: str = "const",
        edit: EditArg = None,
        noise_generator: torch.Generator | None = None,
        cond: Condition | None = None,
    ) -> torch.Tensor:
        """``ws [B, num_ws, w_dim] -> images [B, img_channels, R, R]`` (raw, nominally [-1, 1]).

        ``noise``: ``const`` (the stored noise maps), ``random`` (fresh N(0, 1) maps, from
        ``noise_generator`` if given), ``none``, or per-sample maps ``{layer name: [B, 1, R, R]}``
        (layers left out use their stored map; see ``noise_maps``; a projected image carries its
        own). ``edit``: parameter edits of named layers.
        """
        return self._synthesize(ws, noise, edit, noise_generator)

    def synthesis_prefix(
        self, ws: torch.Tensor, layer: str, *, noise: str = "const", cond: Condition | None = None
    ) -> SynthesisState:
        """``(x, img)`` at the start of ``layer``'s block (``PREFIX_STATE``): the blocks before it run."""
        if self.layer_info(layer).mapping:
            raise AtlasError(f"{layer} is a mapping layer: its edits change ws, so no synthesis prefix comes before it")
        self.layer_module(layer)
        if noise not in ("const", "none"):
            raise AtlasError(f"a synthesis prefix needs fixed noise (const or none), not {noise!r}")
        x, img = self._synthesize(ws, noise, None, None, stop=layer)
        return SynthesisState(layer, (x, img))

    def resume_synthesis(
        self,
        state: SynthesisState,
        ws: torch.Tensor,
        *,
        noise: str = "const",
        edit: EditArg = None,
        cond: Condition | None = None,
    ) -> torch.Tensor:
        edits = self.resume_edits(state, edit, ws.shape[0])
        return self._synthesize(ws, noise, edits, None, start=state)

    def _synthesize(
        self,
        ws: torch.Tensor,
        noise,
        edit: EditArg,
        noise_generator: torch.Generator | None,
        *,
        start: SynthesisState | None = None,
        stop: str | None = None,
    ):
        """The synthesis loop; with ``stop`` it returns ``(x, img)`` at the start of that layer's
        block, with ``start`` it begins at the block of ``start.layer`` from the state's ``(x, img)``."""
        if ws.dim() != 3 or tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise AtlasError(
                f"model '{self.name}' expects ws of shape [B, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}"
            )
        maps = None
        if not isinstance(noise, str):
            maps, noise = dict(noise), "const"
            unknown = set(maps) - set(self.noise_maps())
            if unknown:
                raise AtlasError(f"model '{self.name}' has no noise input at {', '.join(sorted(unknown))}")
        if noise not in NOISE_MODES:
            raise AtlasError(f"unknown noise mode '{noise}'; choose one of {', '.join(NOISE_MODES)}")
        ws = ws.to(self.w_avg.dtype)
        # shared-prefix form (grids): ws holds the distinct codes; rows expand to the batch at the
        # first block with an edited layer, so earlier blocks run once per code
        edits, source = self.checked_edits(edit, ws.shape[0], mapping=False)
        edited = {e.layer.split(".")[1] for e in edits}
        if self.fused_modconv is None:
            fused = not self.training and ws.device.type == "cuda"
        else:
            fused = self.fused_modconv

        # gradient-free edits take the linear path (modulated_conv2d_edited); edits whose delta or t
        # carry gradients use per-sample weights in one grouped convolution
        linear = not any(e.delta.requires_grad or e.t.requires_grad for e in edits)
        ws_rows = ws  # the rows of x; after the expansion to the batch, ws itself
        pending = None  # the source still to apply to x (between the first edited block and layer)

        def run(block: SynthesisBlock, short: str, inp: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
            nonlocal pending
            name = f"synthesis.b{block.resolution}.{short}"
            layer, idx, _ = self._layers[name]
            mine = edits_for(edits, name) if edits else []
            src = None
            if pending is not None:
                if mine and linear:
                    src = pending  # the layer convolves the distinct rows and expands them itself
                else:
                    inp = inp[pending]
                w_in = ws_rows[:, idx] if src is not None else ws[:, idx]
                pending = None
            else:
                w_in = ws[:, idx]
            if mine and linear:
                kw = {"edits": mine, "source": src}
            else:
                kw = {"shift": per_sample_shift(mine, ws.shape[0], layer.weight.shape, layer.weight) if mine else None}
            if short == "torgb":
                return layer(inp, w_in, fused=fused, **kw)
            mode = maps[name] if maps is not None and name in maps else noise
            return layer(inp, w_in, noise=mode, fused=fused, gain=gain, noise_generator=noise_generator, **kw)

        x = img = None
        first = None  # the block the loop starts at (a resumed synthesis)
        if start is not None:
            first = start.layer.split(".")[1]
            x, img = start.tensors
        for block in self.synthesis_net.blocks():
            here = f"b{block.resolution}"
            if stop is not None and stop.split(".")[1] == here:
                return x, img
            if first is not None:
                if here != first:
                    continue
                first = None
            if source is not None and here in edited:
                # rows expand to the batch here: ws and the image at once, x at the first edited layer
                ws = ws[source]
                img = img[source] if img is not None else None
                pending, source = source, None
            if block.is_first:
                x = block.const.unsqueeze(0).repeat(ws_rows.shape[0] if pending is not None else ws.shape[0], 1, 1, 1)
                x = run(block, "conv1", x)
            elif block.architecture == "resnet":
                src = pending
                y = block.skip(x)
                x = run(block, "conv0", x)
                y = y[src] if src is not None else y
                x = run(block, "conv1", x, gain=SQRT_HALF)
                x = y + x
            else:
                x = run(block, "conv0", x)
                x = run(block, "conv1", x)
            if img is not None:
                img = upsample2d(img, block.resample_filter)
            if block.has_torgb:
                y = run(block, "torgb", x)
                img = y if img is None else img + y
        return img

    # ---- description -----------------------------------------------------------------------
    def describe(self) -> dict:
        c = self.config
        d = super().describe()
        d["format"] = self.format
        d["architecture"] = c.architecture
        d["channels"] = {f"{r}px": w for r, w in c.channels.items()}
        if self.format.startswith("rosinality"):
            mult = c.rosinality_multiplier()
            if c.resolution < 64 and mult is not None:
                mult = "any (it only scales layers of 64px and above)"
            d["channel_multiplier"] = mult if mult is not None else "none (widths differ from the reference table)"
        d["mapping_layers"] = c.mapping_layers
        d["mapping_lr_mul"] = c.mapping_lr_mul
        if c.c_dim:
            d["label_embedding"] = f"{c.c_dim} one-hot labels -> {c.embed_dim} features (NVIDIA conditional mapping)"
        d["conv_clamp"] = c.conv_clamp
        d["noise_inputs"] = c.use_noise
        d["fp16_blocks"] = (
            ", ".join(f"b{r}" for r in c.fp16_resolutions) + " (computed in float32 here)"
            if c.fp16_resolutions
            else "none"
        )
        d["w_avg_source"] = self.w_avg_source
        # keep the layer list last for readers of the plain-text listing
        d["editable_layers"] = [
            {**info, "reads": mapping_layer_reads(self.mapping_net, info["name"])}
            if info.get("mapping")
            else {**info, "ws_index": self._layers[info["name"]][1]}
            for info in d.pop("editable_layers")
        ]
        d["default_edit_layer"] = d.pop("default_edit_layer")
        return d


def mapping_layer_infos(net: MappingNetwork) -> list[LayerInfo]:
    """``LayerInfo`` of each fully connected layer of a mapping network (kind ``"linear"``)."""
    return [
        LayerInfo(name, "linear", tuple(fc.weight.shape), 0, mapping=True)
        for name, fc in zip(net.layer_names(), net.fcs)
    ]


def mapping_layer_reads(net: MappingNetwork, name: str) -> str:
    """What a mapping layer reads, for ``info``."""
    i = net.layer_names().index(name)
    if i > 0:
        return f"mapping.fc{i - 1}"
    return "z + class embedding" if net.c_dim > 0 else "z"


def broadcast_truncate(
    w: torch.Tensor,
    w_avg: torch.Tensor,
    num_ws: int,
    *,
    psi: float = 1.0,
    cutoff: int | None = None,
    track_beta: float | None = None,
) -> torch.Tensor:
    """NVIDIA's mapping epilogue (StyleGAN2 and StyleGAN3): ``w [B, w_dim] -> ws [B, num_ws, w_dim]``,
    truncated towards ``w_avg`` (``w_avg.lerp(w, psi)``) on layers ``[:cutoff]`` (all if ``None``).

    ``track_beta`` (training only): ``w_avg`` first moves to ``mean(w).lerp(w_avg, beta)``, in place.
    """
    if track_beta:
        with torch.no_grad():
            w_avg.copy_(w.detach().mean(dim=0).lerp(w_avg, track_beta))
    ws = w.unsqueeze(1).repeat(1, num_ws, 1)
    if psi != 1:
        center = w_avg.to(ws.dtype)
        if cutoff is None:
            ws = center.lerp(ws, psi)
        else:
            ws = torch.cat([center.lerp(ws[:, :cutoff], psi), ws[:, cutoff:]], dim=1)
    return ws


def mix_styles(ws_a: torch.Tensor, ws_b: torch.Tensor, index: int) -> torch.Tensor:
    """``ws [B, num_ws, w_dim]`` with layers ``[:index]`` from ``ws_a`` and ``[index:]`` from ``ws_b``."""
    return torch.cat([ws_a[:, :index], ws_b[:, index:]], dim=1)


def random_noise(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """N(0, 1) noise of ``shape`` on ``like``'s device, drawn from ``generator`` where given."""
    if generator is None:
        return torch.randn(shape, device=like.device, dtype=like.dtype)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=like.dtype).to(like.device)


__all__ = [
    "ARCHITECTURES",
    "StyleGAN2Config",
    "StyleGAN2Generator",
    "broadcast_truncate",
    "mix_styles",
    "modulated_conv2d",
]
