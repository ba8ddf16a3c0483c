"""StyleGAN3 generator (Karras et al. 2021, "Alias-Free Generative Adversarial Networks"), our own implementation.

Both published configurations are the same network with different hyperparameters:
StyleGAN3-T (3x3 convolutions, separable low-pass filters) and StyleGAN3-R (1x1 convolutions and
radially symmetric down-sampling filters, for rotation equivariance).

Mapping network: as StyleGAN2's (``engine.models.stylegan2.MappingNetwork``; 2 layers by default),
broadcast to ``num_ws = num_layers + 2`` ws, then truncation towards ``w_avg``.

Synthesis network, on a continuous signal sampled at a known rate (the image plus a margin):

* **input** (reads ws[0]): ``C_0`` Fourier features ``sin(2 pi (x . f_c + phi_c))`` on a grid
  of ``size`` samples at ``sampling_rate``, each damped to zero above the band limit. An affine
  layer turns w into a rotation and a translation of the features (``t = A w + b``,
  ``t /= ||t[:2]||``); the user's 3x3 input transform (``Condition.transform``, NVIDIA's
  ``G.synthesis.input.transform`` buffer: the *inverse* of the image-space transform) is applied
  after them. Then a learned ``C_0 x C_0`` mixing matrix.
* **layers** ``L{i}_{size}_{channels}`` (layer i reads ws[i + 1]): a modulated convolution
  (``k x k`` with padding ``k - 1``; the weight and the styles are pre-normalised to unit RMS,
  demodulated, and the input scaled by ``magnitude_ema ** -0.5``, the tracked input RMS), then the
  *filtered leaky ReLU*: bias, zero-insertion up-sampling by ``up_factor``, padding / cropping,
  the up-sampling FIR (gain ``up**2``), leaky ReLU (slope 0.2, gain sqrt 2) clamped to
  ``conv_clamp``, the down-sampling FIR (separable, or 2-D radial in R), decimation by
  ``down_factor``. Plain torch convolutions, so it runs the same on every device.
* **toRGB** (the last layer): a modulated 1x1 conv without demodulation, styles scaled by
  ``1 / sqrt(C_in)``, a linear "activation" with the same clamp; the image is its output times
  ``output_scale`` (0.25).

One deliberate difference from the reference: NVIDIA normalises the styles by their RMS over the
*whole batch*; we normalise each sample's styles by its own RMS. The factor cancels exactly in
demodulation (up to its 1e-8 epsilon), so outputs differ by ~1e-6, but here a sample's image does
not depend on the other samples of its batch (grids, previews and shared-prefix batches render
every row exactly as it renders alone, and gradients do not mix samples).

Layer names and edits
---------------------
Editable layers are the mapping network's ``mapping.fc{i}`` (kind ``"linear"``, as in StyleGAN2:
an edit there changes every ws and acts on z codes), ``synthesis.L{i}_{size}_{C}`` (kind
``"modconv"``, weight ``[C_out, C_in, k, k]``) and the last one (kind ``"torgb"``). A ``ParamEdit``
of a synthesis layer shifts the stored weight per sample before the pre-normalisation,
modulation and demodulation, as in StyleGAN2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from engine.errors import AtlasError
from engine.models.base import (
    INPUT_TRANSFORM,
    MAPPING,
    NOISE_MODES,
    SHARED_PREFIX,
    STYLE_AFFINES,
    Condition,
    EditArg,
    Generator,
    LayerInfo,
    edits_for,
    per_sample_shift,
)
from engine.models.stylegan2 import (
    EqualLinear,
    MappingNetwork,
    broadcast_truncate,
    mapping_layer_infos,
    mapping_layer_reads,
    mix_styles,
)

SQRT2 = math.sqrt(2.0)
MAX_SIZE = 8192  # largest grid (px, margin included) a layer may declare
MAX_FACTOR = 16  # largest up / down factor
MAX_TAPS = 256


# ---- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerSpec:
    """Everything that decides one synthesis layer's computation (sizes are ``(width, height)``).

    Rates ``s`` are samples per image unit, cutoffs ``f_c`` and transition half-widths ``f_h`` are
    in the same units; ``padding`` is ``[x0, x1, y0, y1]`` relative to the up-sampled signal
    (negative values crop). ``use_fp16`` records what the reference ran in float16 on CUDA; we
    always compute in float32.
    """

    name: str
    is_torgb: bool
    is_critically_sampled: bool
    in_channels: int
    out_channels: int
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    in_sampling_rate: float
    out_sampling_rate: float
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int
    up_factor: int
    down_factor: int
    up_taps: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]
    conv_clamp: float | None = 256.0
    use_fp16: bool = False
    magnitude_ema_beta: float = 0.999

    @property
    def tmp_sampling_rate(self) -> float:
        return self.in_sampling_rate * self.up_factor

    def output_size(self) -> tuple[int, int]:
        """The ``(width, height)`` the computation produces from ``in_size`` (to check ``out_size``)."""
        px0, px1, py0, py1 = self.padding
        k = self.conv_kernel

        def n(size: int, p0: int, p1: int) -> int:
            m = (size + k - 1) * self.up_factor + p0 + p1
            return (m - (self.up_taps - 1) - (self.down_taps - 1) + self.down_factor - 1) // self.down_factor

        return n(self.in_size[0], px0, px1), n(self.in_size[1], py0, py1)

    def check(self) -> None:
        """Raise ``AtlasError`` unless the numbers describe a layer we can run."""

        def bad(what: str) -> AtlasError:
            return AtlasError(f"StyleGAN3 layer {self.name}: {what}")

        if self.in_channels < 1 or self.out_channels < 1:
            raise bad(f"channels {self.in_channels} -> {self.out_channels}")
        for s in (*self.in_size, *self.out_size):
            if not 1 <= s <= MAX_SIZE:
                raise bad(f"size {s} outside 1..{MAX_SIZE}")
        if not 1 <= self.conv_kernel <= 15:
            raise bad(f"kernel size {self.conv_kernel}")
        if not (1 <= self.up_factor <= MAX_FACTOR and 1 <= self.down_factor <= MAX_FACTOR):
            raise bad(f"up / down factors {self.up_factor} / {self.down_factor}")
        if not (1 <= self.up_taps <= MAX_TAPS and 1 <= self.down_taps <= MAX_TAPS):
            raise bad(f"filter taps {self.up_taps} / {self.down_taps}")
        if any(abs(p) > 4 * MAX_SIZE for p in self.padding):
            raise bad(f"padding {list(self.padding)}")
        if self.output_size() != tuple(self.out_size):
            raise bad(
                f"sizes do not add up: {list(self.in_size)} with padding {list(self.padding)} gives "
                f"{list(self.output_size())}, the layer declares {list(self.out_size)}"
            )


@dataclass(frozen=True)
class StyleGAN3Config:
    """Shapes and hyperparameters of a StyleGAN3 generator; ``layers`` lists L0 .. toRGB."""

    resolution: int
    layers: tuple[LayerSpec, ...]
    input_channels: int
    input_size: tuple[int, int]
    input_sampling_rate: float
    input_bandwidth: float
    z_dim: int = 512
    w_dim: int = 512
    img_channels: int = 3
    mapping_layers: int = 2
    mapping_lr_mul: float = 0.01
    w_avg_beta: float = 0.998
    output_scale: float = 0.25
    margin_size: int = 10
    num_critical: int = 2
    extra: dict = field(default_factory=dict, compare=False)  # informational (e.g. the reference kwargs)

    def __post_init__(self) -> None:
        if not self.layers:
            raise AtlasError("a StyleGAN3 synthesis network needs layers")
        if self.mapping_layers < 1:
            raise AtlasError("a StyleGAN3 mapping network needs at least one layer")
        for spec in self.layers:
            spec.check()
        if not self.layers[-1].is_torgb or any(s.is_torgb for s in self.layers[:-1]):
            raise AtlasError("a StyleGAN3 synthesis network ends with exactly one toRGB layer")
        prev_c, prev_size = self.input_channels, tuple(self.input_size)
        for spec in self.layers:
            if spec.in_channels != prev_c or tuple(spec.in_size) != prev_size:
                raise AtlasError(
                    f"StyleGAN3 layer {spec.name} takes {spec.in_channels} channels of {list(spec.in_size)}, "
                    f"the layer before gives {prev_c} of {list(prev_size)}"
                )
            prev_c, prev_size = spec.out_channels, tuple(spec.out_size)
        if prev_c != self.img_channels or prev_size != (self.resolution, self.resolution):
            raise AtlasError(
                f"StyleGAN3 toRGB gives {prev_c} channels of {list(prev_size)}, not a "
                f"{self.resolution}px image with {self.img_channels} channels"
            )
        if not 1 <= self.input_size[0] <= MAX_SIZE or not 1 <= self.input_size[1] <= MAX_SIZE:
            raise AtlasError(f"StyleGAN3 input size {list(self.input_size)} is out of range")

    @property
    def num_ws(self) -> int:
        return len(self.layers) + 1

    @property
    def variant(self) -> str:
        """``"T"`` (3x3 convs, separable filters), ``"R"`` (1x1 convs, radial filters) or ``"custom"``."""
        kernels = {s.conv_kernel for s in self.layers[:-1]}
        radial = any(s.down_radial for s in self.layers)
        if kernels == {3} and not radial:
            return "T"
        if kernels == {1} and radial:
            return "R"
        return "custom"

    @classmethod
    def standard(
        cls,
        resolution: int,
        *,
        z_dim: int = 512,
        w_dim: int = 512,
        img_channels: int = 3,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_layers: int = 14,
        num_critical: int = 2,
        first_cutoff: float = 2.0,
        first_stopband: float = 2**2.1,
        last_stopband_rel: float = 2**0.3,
        margin_size: int = 10,
        output_scale: float = 0.25,
        num_fp16_res: int = 4,
        conv_kernel: int = 3,
        filter_size: int = 6,
        lrelu_upsampling: int = 2,
        use_radial_filters: bool = False,
        conv_clamp: float | None = 256.0,
        magnitude_ema_beta: float = 0.999,
        mapping_layers: int = 2,
    ) -> StyleGAN3Config:
        """The layer plan NVIDIA's ``SynthesisNetwork`` derives from its hyperparameters.

        Cutoffs and minimum stopbands grow geometrically from the first layer to the last
        ``num_critical`` (critically sampled) layers; each layer samples at the smallest power of
        two above twice its stopband (at most the image resolution), with ``margin_size`` extra
        pixels each side except in the last two layers. StyleGAN3-T: the defaults; StyleGAN3-R:
        ``conv_kernel=1, use_radial_filters=True`` (and twice the channels).
        """
        last_cutoff = resolution / 2
        last_stopband = last_cutoff * last_stopband_rel
        exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
        cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
        stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
        rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, resolution))))
        half_widths = np.maximum(stopbands, rates / 2) - cutoffs
        sizes = rates + margin_size * 2
        sizes[-2:] = resolution
        channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
        channels[-1] = img_channels
        layers = []
        for i in range(num_layers + 1):
            prev = max(i - 1, 0)
            torgb = i == num_layers
            critical = i >= num_layers - num_critical
            k = 1 if torgb else conv_kernel
            s_in, s_out = int(rates[prev]), int(rates[i])
            s_tmp = max(s_in, s_out) * (1 if torgb else lrelu_upsampling)
            up, down = s_tmp // s_in, s_tmp // s_out
            up_taps = filter_size * up if up > 1 and not torgb else 1
            down_taps = filter_size * down if down > 1 and not torgb else 1
            size_in, size_out = int(sizes[prev]), int(sizes[i])
            # pad so that the output samples sit symmetrically on the continuous signal (paper, App. C.3)
            total = (size_out - 1) * down + 1 - (size_in + k - 1) * up + up_taps + down_taps - 2
            lo = (total + up) // 2
            pad = (lo, total - lo, lo, total - lo)
            layers.append(
                LayerSpec(
                    name=f"L{i}_{size_out}_{int(channels[i])}",
                    is_torgb=torgb,
                    is_critically_sampled=critical,
                    in_channels=int(channels[prev]),
                    out_channels=int(channels[i]),
                    in_size=(size_in, size_in),
                    out_size=(size_out, size_out),
                    in_sampling_rate=float(s_in),
                    out_sampling_rate=float(s_out),
                    in_cutoff=float(cutoffs[prev]),
                    out_cutoff=float(cutoffs[i]),
                    in_half_width=float(half_widths[prev]),
                    out_half_width=float(half_widths[i]),
                    conv_kernel=k,
                    up_factor=up,
                    down_factor=down,
                    up_taps=up_taps,
                    down_taps=down_taps,
                    down_radial=use_radial_filters and not critical,
                    padding=pad,
                    conv_clamp=conv_clamp,
                    use_fp16=bool(rates[i] * 2**num_fp16_res > resolution),
                    magnitude_ema_beta=magnitude_ema_beta,
                )
            )
        return cls(
            resolution=resolution,
            layers=tuple(layers),
            input_channels=int(channels[0]),
            input_size=(int(sizes[0]), int(sizes[0])),
            input_sampling_rate=float(rates[0]),
            input_bandwidth=float(cutoffs[0]),
            z_dim=z_dim,
            w_dim=w_dim,
            img_channels=img_channels,
            mapping_layers=mapping_layers,
            output_scale=output_scale,
            margin_size=margin_size,
            num_critical=num_critical,
        )


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False):
    """The reference's low-pass FIR: ``None`` for one tap, a Kaiser-windowed sinc ``[numtaps]``
    (separable), or a Kaiser-windowed jinc ``[numtaps, numtaps]`` (``radial``), normalised to sum 1.

    ``cutoff`` and ``width`` (the full transition band) are in the units of the rate ``fs``.
    """
    import scipy.signal
    import scipy.special

    if numtaps == 1:
        return None
    if not radial:
        return torch.as_tensor(
            scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs), dtype=torch.float32
        )
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    f = f * np.outer(window, window)
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


# ---- the filtered leaky ReLU ----------------------------------------------------------------


def _fir(x: torch.Tensor, f: torch.Tensor | None, gain: float, step: int) -> torch.Tensor:
    """Convolve every channel of ``x [N, C, H, W]`` with ``f`` (valid part) and keep every ``step``-th sample.

    ``f``: ``None`` (one tap), ``[k]`` (applied along x then y) or ``[k, k]``. ``gain`` is the
    total gain. A true convolution (the filter is flipped), as the reference computes it; run as
    depthwise (grouped) convolutions, which the CPU backends handle far faster than a batch of
    one-channel images.
    """
    if f is None:
        x = x * gain if gain != 1 else x
        return x[:, :, ::step, ::step] if step > 1 else x
    C = x.shape[1]
    f = f.to(x.dtype).flip(list(range(f.dim())))
    if f.dim() == 1:
        g = f * math.sqrt(gain)
        k = g.shape[0]
        x = F.conv2d(x, g.reshape(1, 1, 1, k).expand(C, 1, 1, k).contiguous(), stride=(1, step), groups=C)
        return F.conv2d(x, g.reshape(1, 1, k, 1).expand(C, 1, k, 1).contiguous(), stride=(step, 1), groups=C)
    k = f.shape[0]
    return F.conv2d(x, (f * gain).reshape(1, 1, k, k).expand(C, 1, k, k).contiguous(), stride=step, groups=C)


def _upfir(x: torch.Tensor, f: torch.Tensor | None, up: int, padding, gain: float) -> torch.Tensor:
    """Zero-insertion up-sampling by ``up``, pad / crop by ``padding = [x0, x1, y0, y1]``, then the
    separable FIR ``f [k]`` with total gain ``gain``: ``[N, C, H, W] -> [N, C, H', W']``,
    ``W' = W up + x0 + x1 - k + 1``.

    Run as one transposed (stride ``up``) depthwise convolution per axis, then the crop / pad
    that places its output where the zero-inserted, padded signal's valid convolution would be:
    nothing is computed on (or stored for) the inserted zeros.
    """
    C = x.shape[1]
    g = (torch.ones(1, device=x.device) if f is None else f).to(x.dtype) * math.sqrt(gain)
    k = g.shape[0]
    px0, px1, py0, py1 = padding
    out_w = x.shape[3] * up + px0 + px1 - k + 1
    out_h = x.shape[2] * up + py0 + py1 - k + 1
    x = F.conv_transpose2d(x, g.reshape(1, 1, 1, k).expand(C, 1, 1, k).contiguous(), stride=(1, up), groups=C)
    s = k - 1 - px0  # output sample i is sample i + s of the full transposed convolution
    x = F.pad(x, [-s, out_w + s - x.shape[3], 0, 0])
    x = F.conv_transpose2d(x, g.reshape(1, 1, k, 1).expand(C, 1, k, 1).contiguous(), stride=(up, 1), groups=C)
    s = k - 1 - py0
    return F.pad(x, [0, 0, -s, out_h + s - x.shape[2]])


def filtered_lrelu(
    x: torch.Tensor,
    up_filter: torch.Tensor | None,
    down_filter: torch.Tensor | None,
    bias: torch.Tensor,
    *,
    up: int,
    down: int,
    padding: tuple[int, int, int, int],
    gain: float,
    slope: float,
    clamp: float | None,
) -> torch.Tensor:
    """``x [N, C, H, W]`` -> bias, up-sample, FIR, leaky ReLU x gain, clamp, FIR, down-sample.

    Up-sampling inserts ``up - 1`` zeros after every sample; ``padding = [x0, x1, y0, y1]`` pads
    (or, negative, crops) the up-sampled signal; the up-sampling FIR has gain ``up**2``. Output
    ``[N, C, H', W']`` with ``W' = (W up + x0 + x1 - (k_up - 1) - (k_down - 1) + down - 1) // down``.
    The activation gain is folded into the up-sampling filter (``lrelu(g a) = g lrelu(a)``, g > 0),
    and without autograd the activation and clamp work in place: the up-sampled signal is the
    largest tensor of the network.
    """
    x = x + bias.to(x.dtype).reshape(1, -1, 1, 1)
    fold = gain if slope != 1 else 1.0
    if up > 1:
        x = _upfir(x, up_filter, up, padding, float(up * up) * fold)
    else:
        x = _fir(F.pad(x, list(padding)), up_filter, fold, 1)
    in_place = not torch.is_grad_enabled()
    if slope != 1:
        x = F.leaky_relu_(x, slope) if in_place else F.leaky_relu(x, slope)
    elif gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp_(-clamp, clamp) if in_place else x.clamp(-clamp, clamp)
    return _fir(x, down_filter, 1.0, down)


def modulated_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool,
    input_gain: torch.Tensor,
    padding: int,
    shift: torch.Tensor | None = None,
    fused: bool = True,
) -> torch.Tensor:
    """StyleGAN3's modulated convolution: ``x [B, I, H, W]``, ``weight [O, I, k, k]``, ``styles [B, I]``.

    With ``demodulate`` the weight is first scaled to unit RMS per output filter and each
    sample's styles to unit RMS, then modulated and demodulated; ``input_gain`` (a scalar) scales
    the result. ``shift [B, O, I, k, k]``: sample b uses ``weight + shift[b]``. ``fused`` builds
    per-sample weights (one grouped conv); otherwise the activations are scaled around one shared
    convolution (the same function, faster on the CPU). Returns ``[B, O, H + 2p - k + 1, ...]``.
    """
    B, Cin, H, W = x.shape
    Cout, _, kh, kw = weight.shape
    if demodulate:
        styles = styles * styles.square().mean(dim=1, keepdim=True).rsqrt()
    if fused or shift is not None:
        w = weight.unsqueeze(0) if shift is None else weight.unsqueeze(0) + shift  # [B|1, O, I, k, k]
        if demodulate:
            w = w * w.square().mean(dim=[2, 3, 4], keepdim=True).rsqrt()
        w = w * styles.reshape(B, 1, Cin, 1, 1)
        if demodulate:
            w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
        w = w * input_gain
        x = F.conv2d(x.reshape(1, B * Cin, H, W), w.reshape(B * Cout, Cin, kh, kw), padding=padding, groups=B)
        return x.reshape(B, Cout, x.shape[2], x.shape[3])
    w = weight
    if demodulate:
        w = w * w.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
    x = F.conv2d(x * (styles * input_gain).reshape(B, Cin, 1, 1), w, padding=padding)
    if demodulate:
        # sum_{i,k} (w[o,i,k] s[b,i])^2 = (s^2 @ (sum_k w^2)^T)[b, o]
        d = (styles.square() @ w.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()
        x = x * d.reshape(B, Cout, 1, 1)
    return x


# ---- modules ----------------------------------------------------------------------------------


class SynthesisInput(nn.Module):
    """Fourier features of ``w``: ``[B, w_dim] -> [B, C, size_h, size_w]`` (see the module docstring)."""

    def __init__(self, w_dim: int, channels: int, size: tuple[int, int], sampling_rate: float, bandwidth: float):
        super().__init__()
        self.channels = channels
        self.size = tuple(size)
        self.sampling_rate = float(sampling_rate)
        self.bandwidth = float(bandwidth)
        # frequencies uniform in the disc of radius `bandwidth`, random phases (the reference's init)
        freqs = torch.randn(channels, 2)
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        self.weight = nn.Parameter(torch.randn(channels, channels))
        self.affine = EqualLinear(w_dim, 4)
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3))  # the stored inverse transform (identity normally)
        self.register_buffer("freqs", freqs)  # [C, 2] cycles per image unit, (x, y)
        self.register_buffer("phases", torch.rand(channels) - 0.5)  # [C] cycles

    def forward(self, w: torch.Tensor, transform: torch.Tensor | None = None) -> torch.Tensor:
        B = w.shape[0]
        user = (self.transform if transform is None else transform).to(w.dtype)
        t = self.affine(w)  # [B, 4] = (r_c, r_s, t_x, t_y)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        c, s, tx, ty = t.unbind(dim=1)
        one, zero = torch.ones_like(c), torch.zeros_like(c)
        # inverse rotation, then inverse translation, wrt. the image; then the user's transform
        m_r = torch.stack([c, -s, zero, s, c, zero, zero, zero, one], dim=1).reshape(B, 3, 3)
        m_t = torch.stack([one, zero, -tx, zero, one, -ty, zero, zero, one], dim=1).reshape(B, 3, 3)
        m = m_r @ m_t @ user
        freqs = self.freqs.unsqueeze(0)  # [1, C, 2]
        phases = self.phases.unsqueeze(0) + (freqs @ m[:, :2, 2:]).squeeze(2)  # [B, C]
        freqs = freqs @ m[:, :2, :2]  # [B, C, 2]
        # damp frequencies a user transform pushed out of band
        amp = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        Wd, Hd = self.size
        xs = (torch.arange(Wd, device=w.device, dtype=w.dtype) + 0.5 - Wd / 2) / self.sampling_rate
        ys = (torch.arange(Hd, device=w.device, dtype=w.dtype) + 0.5 - Hd / 2) / self.sampling_rate
        x = (
            xs.reshape(1, 1, Wd, 1) * freqs[:, None, None, :, 0]
            + ys.reshape(1, Hd, 1, 1) * freqs[:, None, None, :, 1]
            + phases[:, None, None, :]
        )  # [B, H, W, C]
        x = torch.sin(x * (2 * math.pi)) * amp[:, None, None, :]
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)  # [B, C, H, W]


class SynthesisLayer(nn.Module):
    """Modulated conv + filtered leaky ReLU (or the final toRGB); reads one w."""

    def __init__(self, spec: LayerSpec, w_dim: int, *, design_filters: bool = True) -> None:
        super().__init__()
        self.spec = spec
        k = spec.conv_kernel
        self.affine = EqualLinear(w_dim, spec.in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(spec.out_channels, spec.in_channels, k, k))
        self.bias = nn.Parameter(torch.zeros(spec.out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))
        fs = spec.tmp_sampling_rate
        if design_filters:
            up = design_lowpass_filter(spec.up_taps, spec.in_cutoff, spec.in_half_width * 2, fs)
            down = design_lowpass_filter(spec.down_taps, spec.out_cutoff, spec.out_half_width * 2, fs, spec.down_radial)
        else:  # placeholders of the right shape, for a loader that brings the stored filters
            up = torch.empty(spec.up_taps) if spec.up_taps > 1 else None
            down_shape = (spec.down_taps,) * (2 if spec.down_radial else 1)
            down = torch.empty(down_shape) if spec.down_taps > 1 else None
        self.register_buffer("up_filter", up)
        self.register_buffer("down_filter", down)

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, *, shift: torch.Tensor | None = None, fused: bool = True
    ) -> torch.Tensor:
        spec = self.spec
        styles = self.affine(w)  # [B, I]
        if spec.is_torgb:
            styles = styles * (1 / math.sqrt(spec.in_channels * spec.conv_kernel**2))
        x = modulated_conv(
            x,
            self.weight,
            styles,
            demodulate=not spec.is_torgb,
            input_gain=self.magnitude_ema.rsqrt(),
            padding=spec.conv_kernel - 1,
            shift=shift,
            fused=fused,
        )
        if (
            torch.is_grad_enabled()
            and spec.up_factor > 1
            and fwAD.unpack_dual(x).tangent is None
            and not torch._C._are_functorch_transforms_active()
        ):
            # Backward recomputes the activation from this layer's (low-rate) input instead of
            # keeping the up-sampled intermediates: ~6x less memory for training and projection,
            # for one more forward of the activation. (Forward-mode passes run it as it is, and so
            # do torch.func transforms, whose vjp does not support checkpointing's saved-tensor hooks.)
            return checkpoint(self.activation, x, use_reentrant=False)
        return self.activation(x)

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        """Bias and the filtered leaky ReLU of the modulated conv's output."""
        spec = self.spec
        return filtered_lrelu(
            x,
            self.up_filter,
            self.down_filter,
            self.bias,
            up=spec.up_factor,
            down=spec.down_factor,
            padding=spec.padding,
            gain=1.0 if spec.is_torgb else SQRT2,
            slope=1.0 if spec.is_torgb else 0.2,
            clamp=spec.conv_clamp,
        )


class _Synthesis(nn.Module):
    def __init__(self, cfg: StyleGAN3Config, *, design_filters: bool = True) -> None:
        super().__init__()
        self.input = SynthesisInput(
            cfg.w_dim, cfg.input_channels, cfg.input_size, cfg.input_sampling_rate, cfg.input_bandwidth
        )
        self.layer_names = [s.name for s in cfg.layers]
        for spec in cfg.layers:
            self.add_module(spec.name, SynthesisLayer(spec, cfg.w_dim, design_filters=design_filters))


# ---- the generator ---------------------------------------------------------------------------


class StyleGAN3Generator(Generator):
    """StyleGAN3 (T or R) with the generator protocol of ``engine.models.base``.

    ``StyleGAN3Generator(config)`` builds a freshly initialised network with the reference's
    filters (``design_lowpass_filter``); loaders pass ``design_filters=False`` and replace every
    tensor with a checkpoint's.
    The input transform: ``Condition.transform`` (``gen.condition(..., transform=)``,
    ``decode(transform=)`` or a ``conditioned(transform=)`` view), else the stored buffer
    (identity in NVIDIA's snapshots). ``noise`` is accepted and ignored: StyleGAN3 has no noise
    inputs (NVIDIA's code takes ``noise_mode`` and ignores it too).
    """

    family = "stylegan3"
    capabilities = frozenset({MAPPING, STYLE_AFFINES, INPUT_TRANSFORM, SHARED_PREFIX})

    def __init__(self, config: StyleGAN3Config, *, name: str = "stylegan3", design_filters: bool = True) -> None:
        super().__init__()
        self.config = config
        self.name = name
        self.z_dim = config.z_dim
        self.w_dim = config.w_dim
        self.num_ws = config.num_ws
        self.resolution = config.resolution
        self.img_channels = config.img_channels
        self.mapping_net = MappingNetwork(
            config.z_dim, config.w_dim, config.mapping_layers, config.w_dim, config.mapping_lr_mul
        )
        self.synthesis_net = _Synthesis(config, design_filters=design_filters)
        self.register_buffer("w_avg", torch.zeros(config.w_dim))
        self.w_avg_source = "tracked during training"
        self.fused_modconv: bool | None = None
        self.format = "gan-atlas"
        self._layers = {
            f"synthesis.{spec.name}": (getattr(self.synthesis_net, spec.name), i + 1)
            for i, spec in enumerate(config.layers)
        }
        self._mapping_fcs = dict(zip(self.mapping_net.layer_names(), self.mapping_net.fcs))
        self.default_edit_layer = self._pick_default_edit_layer()

    def _pick_default_edit_layer(self) -> str:
        # an early layer, a third of the way through the non-critical ones: its edits change
        # shape and layout rather than colour (toRGB) or fine texture (the critically sampled end)
        n = max(len(self.config.layers) - 1 - self.config.num_critical, 1)
        return f"synthesis.{self.config.layers[n // 3].name}"

    # ---- layers ----------------------------------------------------------------------------
    def layer_module(self, name: str) -> nn.Module:
        if name in self._mapping_fcs:
            return self._mapping_fcs[name]
        if name not in self._layers:
            self.layer_info(name)  # raises the listing error
        return self._layers[name][0]

    def editable_layers(self) -> list[LayerInfo]:
        """The mapping network's fully connected layers (``"linear"``, ``[out, in]``, ``mapping=True``),
        then every modulated conv (``"modconv"``, ``[C_out, C_in, k, k]``) and the toRGB
        (``"torgb"``) in ws order.

        ``resolution`` is a synthesis layer's output grid (the image plus its margin).
        """
        return mapping_layer_infos(self.mapping_net) + [
            LayerInfo(name, "torgb" if m.spec.is_torgb else "modconv", tuple(m.weight.shape), m.spec.out_size[0])
            for name, (m, _) in self._layers.items()
        ]

    def layer_weight(self, name: str) -> torch.Tensor:
        """The stored weight (a mapping layer's before its gain ``lr_mul / sqrt(in)``); edits shift it."""
        return self.layer_module(name).weight

    def uneditable_layers(self) -> list[tuple[str, str, str]]:
        return [
            (
                "synthesis.input",
                "Fourier features",
                "fixed sinusoids mixed by one C x C matrix, unmodulated; its affine makes the rotation / "
                "translation (edit those with --rotate / --translate)",
            )
        ]

    def style_affines(self) -> list[tuple[str, int, torch.Tensor]]:
        """``(layer name, ws index, A [C_in, w_dim])`` of every modulated layer (L0 .. toRGB), in ws order.

        The input layer's affine (ws[0]) is left out: it produces a rotation angle and a
        translation (normalised, so not even affine in its effect), not modulation styles, and
        SeFa factorises the styles. toRGB further scales its style by ``1/sqrt(C_in)`` (not folded in).
        """
        return [(name, idx, m.affine.effective_weight()) for name, (m, idx) in self._layers.items()]

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
        edit: EditArg = None,
    ) -> torch.Tensor:
        """``z [B, z_dim] -> ws [B, num_ws, w_dim]``; truncation ``w_avg.lerp(w, psi)`` on ws[:, :cutoff] (all if None).

        ``edit``: parameter edits of ``mapping.fc*`` (``MappingNetwork.forward``); truncation
        still pulls towards the unedited model's ``w_avg``.
        """
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise AtlasError(f"model '{self.name}' expects z of shape [B, {self.z_dim}], got {list(z.shape)}")
        edits, source = self.checked_edits(edit, z.shape[0], mapping=True)
        w = self.mapping_net(z, None, edits, source)
        beta = self.config.w_avg_beta if self.training else None
        return broadcast_truncate(w, self.w_avg, self.num_ws, psi=psi, cutoff=cutoff, track_beta=beta)

    def mix(
        self, z: torch.Tensor, z2: torch.Tensor, index: int, *, psi: float = 1.0, cutoff: int | None = None
    ) -> torch.Tensor:
        """Style mixing: ``ws [B, num_ws, w_dim]`` taking layers ``[:index]`` from z and the rest from z2."""
        return mix_styles(self.mapping(z, psi=psi, cutoff=cutoff), self.mapping(z2, psi=psi, cutoff=cutoff), index)

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

        ``cond.transform`` (``[3, 3]``, the inverse image transform) replaces the stored input
        transform for this call. ``edit``: parameter edits of named layers (shared-prefix form
        accepted). ``noise``: accepted for the protocol; StyleGAN3 has no noise inputs.
        """
        if ws.dim() != 3 or tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise AtlasError(
                f"model '{self.name}' expects ws of shape [B, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}"
            )
        if not isinstance(noise, str):
            if dict(noise):
                raise AtlasError(f"model '{self.name}' has no noise inputs ({', '.join(sorted(noise))})")
            noise = "const"
        if noise not in NOISE_MODES:
            raise AtlasError(f"unknown noise mode '{noise}'; choose one of {', '.join(NOISE_MODES)}")
        transform = cond.transform if cond is not None else None
        if transform is None and self.bound_transform is not None:
            transform = self.bound_transform
        if transform is not None:
            transform = torch.as_tensor(transform, dtype=torch.float32, device=ws.device).reshape(3, 3)
        ws = ws.to(self.w_avg.dtype)
        edits, source = self.checked_edits(edit, ws.shape[0], mapping=False)
        edited = {e.layer for e in edits}
        fused = self.fused_modconv if self.fused_modconv is not None else (not self.training and ws.is_cuda)

        x = self.synthesis_net.input(ws[:, 0], transform)
        for name, (layer, idx) in self._layers.items():
            if source is not None and name in edited:
                # shared-prefix form: the layers so far ran once per distinct code
                ws, x, source = ws[source], x[source], None
            mine = edits_for(edits, name) if edits else []
            shift = per_sample_shift(mine, ws.shape[0], layer.weight.shape, layer.weight) if mine else None
            x = layer(x, ws[:, idx], shift=shift, fused=fused)
        return x * self.config.output_scale

    # ---- description -----------------------------------------------------------------------
    def describe(self) -> dict:
        c = self.config
        d = super().describe()
        d["format"] = self.format
        d["variant"] = {"T": "StyleGAN3-T (translation equivariant)", "R": "StyleGAN3-R (rotation equivariant)"}.get(
            c.variant, "custom StyleGAN3"
        )
        d["input"] = {
            "channels": c.input_channels,
            "size": "x".join(map(str, c.input_size)),
            "sampling_rate": c.input_sampling_rate,
            "bandwidth": round(c.input_bandwidth, 4),
        }
        stored = self.synthesis_net.input.transform
        d["stored_input_transform"] = (
            "identity"
            if torch.equal(stored.cpu(), torch.eye(3))
            else [[round(v, 6) for v in r] for r in stored.tolist()]
        )
        d["input_transform"] = "main.py render/export --rotate DEG --translate X,Y (editor: preview controls)"
        d["conv_kernel"] = sorted({s.conv_kernel for s in c.layers[:-1]})
        radial = [s.name for s in c.layers if s.down_radial]
        d["radial_filters"] = f"{radial[0]} .. {radial[-1]} ({len(radial)} layers)" if radial else "none"
        d["mapping_layers"] = c.mapping_layers
        d["output_scale"] = c.output_scale
        d["conv_clamp"] = c.layers[0].conv_clamp
        fp16 = [s.name for s in c.layers if s.use_fp16]
        d["fp16_layers"] = f"{len(fp16)} of {len(c.layers)} (computed in float32 here)" if fp16 else "none"
        d["w_avg_source"] = self.w_avg_source
        d["editable_layers"] = [
            {**info, "reads": mapping_layer_reads(self.mapping_net, info["name"])}
            if info.get("mapping")
            else {**info, "ws_index": self._layers[info["name"]][1]}
            for info in d.pop("editable_layers")
        ]
        d["default_edit_layer"] = d.pop("default_edit_layer")
        return d


__all__ = [
    "LayerSpec",
    "StyleGAN3Config",
    "StyleGAN3Generator",
    "design_lowpass_filter",
    "filtered_lrelu",
    "modulated_conv",
]
