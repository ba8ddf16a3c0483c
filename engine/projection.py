"""Projecting a photo into a generator: find the code that reproduces it, optionally tune the weights.

Latent fit (``project``)
------------------------
The photo is centre-cropped to a square and resized to the model's resolution (``load_image``).
Then Adam fits a code so that ``G(code)`` matches it under ``distance`` (LPIPS; offline the
labelled pixel fallback) plus ``pixel_weight`` x pixel MSE, with the schedule of the StyleGAN2
projector (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN", Sec. 5 /
Appendix D): learning rate ``lr`` ramped up over the first ``lr_rampup`` of the steps and down
with a cosine over the last ``lr_rampdown``; Gaussian noise of ``noise_factor`` x the code
spread added to the code, decaying quadratically to 0 over the first ``noise_ramp`` of the steps
(in w / w+; in z the restarts explore instead, and the noise measurably hurt, so it is off there).

* w / w+ (StyleGAN2): the fit starts at the average w (``truncation_center``); the code spread
  ``sigma_w`` is the RMS distance of ``stats_samples`` mapped z from it. The per-layer noise maps
  are optimised too, regularised towards white noise at every scale (the squared
  autocorrelation at one pixel offset, down to 8 x 8, weight ``noise_reg``) and renormalised to
  zero mean / unit variance after every step; they are kept with the code.
* z (DCGAN-type models): ``candidates`` random z are scored and the best ``starts`` are optimised
  jointly (independent restarts in one batch); a prior term (weight ``prior_weight``) is the
  negative log density of ``|z|`` under N(0, I) per dimension,
  ``(|z|^2 / 2 - (d - 1) log |z|) / d``, which keeps z on the Gaussian shell ``|z| ~ sqrt(d)``
  where the generator was trained; the best start wins (judged without noise at the end).

Pivotal tuning (``tune``)
-------------------------
Roich et al. 2021 ("Pivotal Tuning for Latent-based Editing of Real Images"): with the fitted
code fixed (the pivot), the generator's weights are tuned so that ``G(pivot)`` reproduces the
photo, loss ``distance_weight`` x LPIPS + ``l2_weight`` x MSE, Adam lr 3e-4, 350 steps, stopping
early once LPIPS < 0.06, and optional locality regularisation (off by default, as in the
authors' code). We tune the weights of the model's editable layers (every convolution: almost
all of the synthesis parameters) and keep them as one delta per layer: a tuned model is "the
original plus parameter shifts with t = 1", which ``engine.render`` applies per sample, so a
tuned image renders in the same batch as ordinary seeds and parameter directions act on top of
it. Each delta is parametrised relative to its layer's weight RMS, so the reference learning
rate (set for StyleGAN2's unit-variance stored weights) means the same on any model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.distances import DISTANCES, Distance, PixelDistance, backbone, load_distance
from engine.errors import AtlasError, BadValueError, describe_exception
from engine.jobs import Pacer, Progress, relabel, wait_for
from engine.latents import Latent, model_ref

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")


# ---- the target image ----------------------------------------------------------------------
def load_image(image: str | Path | np.ndarray, resolution: int, channels: int = 3) -> tuple[torch.Tensor, dict]:
    """A photo as the generator's target: ``[1, channels, resolution, resolution]`` in [-1, 1].

    ``image`` is a file path (any size and aspect: the largest centred square is cut out and
    resized with Lanczos filtering) or a ``[H, W, 3]`` / ``[H, W]`` uint8 array. Returns the
    tensor and a description (``path``, ``sha256``, original ``size`` (W, H), ``crop`` box
    (left, top, right, bottom)). Unreadable files raise ``AtlasError`` naming the file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    info: dict[str, Any] = {}
    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            raise AtlasError(f"image array of dtype {arr.dtype}: expected uint8")
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
            raise AtlasError(f"image array of shape {arr.shape}: expected H x W, H x W x 3 or H x W x 4")
        img = Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)
        info["path"] = None
    else:
        path = Path(image).expanduser()
        if not path.exists():
            raise AtlasError(f"{path}: no such image file")
        if path.is_dir():
            raise AtlasError(f"{path}: is a folder; give an image file ({', '.join(IMAGE_SUFFIXES)})")
        try:
            with Image.open(path) as im:
                im.load()  # decode now: truncated files fail here, not later
                img = ImageOps.exif_transpose(im)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise AtlasError(
                f"{path}: not a readable image, damaged or of an unsupported type ({describe_exception(exc)})"
            ) from None
        from engine.hashing import file_sha256

        info["path"] = str(path.resolve())
        info["sha256"] = file_sha256(path)
    W, H = img.size
    if W < 1 or H < 1:
        raise AtlasError(f"{info.get('path') or 'image'}: empty image")
    side = min(W, H)
    left, top = (W - side) // 2, (H - side) // 2
    box = (left, top, left + side, top + side)
    img = img.convert("L" if channels == 1 else "RGB").crop(box)
    img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    a = np.asarray(img, dtype=np.float32)
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    x = torch.from_numpy(a / 127.5 - 1.0).unsqueeze(0)
    info.update(size=[W, H], crop=list(box), resolution=resolution)
    return x, info


# ---- distances -----------------------------------------------------------------------------
def distance_fallback(distance: str | None) -> str:
    """Why a fit with ``distance`` would use the pixel distance instead ("" when it would not).

    Cheap (it looks for the LPIPS backbone file, loads nothing): interfaces say it before a fit
    starts. The reason names the missing file and folder (``engine.distances``).
    """
    if distance is None or distance == "pixel" or not isinstance(distance, str):
        return ""
    net = distance.split("-", 1)[1] if distance.startswith("lpips-") else "alex"
    try:
        b = backbone(net)
    except AtlasError as exc:
        return f"{exc}: the fit will use pixel MSE (not perceptual)"
    if b.present:
        return ""
    return (
        f"{distance} needs the LPIPS backbone file {b.filename} in {b.folder}, which is missing: the fit "
        f"will use pixel MSE (not perceptual). `python main.py weights download --net {b.net}` fetches it."
    )


def resolve_distance(distance: str | Distance | None = "lpips-vgg", device: torch.device | str = "cpu") -> Distance:
    """The distance to fit with (an ``engine.distances.Distance``; ``title`` names it in reports).

    Strings are ``lpips-alex``, ``lpips-vgg``, ``lpips-squeeze`` (LPIPS) or ``pixel``. Without an
    LPIPS backbone file on disk the labelled pixel distance is used instead: its ``reason`` names
    the missing file and its title says "LPIPS unavailable". A ``Distance`` is used as given.
    """
    if isinstance(distance, Distance):
        return distance
    if distance is None:
        distance = "pixel"
    if distance not in DISTANCES:
        raise AtlasError(f"unknown distance '{distance}'; choose one of {', '.join(DISTANCES)}")
    try:
        d = load_distance(distance, device=device, size=256)
    except AtlasError as exc:  # the backbone file is missing: say so, and fit with pixels
        d = PixelDistance(256, reason=str(exc)).to(device)
    d.requires_grad_(False)
    return d


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of ``[B, C, H, W]`` images in [-1, 1] (clamped; peak = the full range) -> ``[B]``."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).square().flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def _for_distance(x: torch.Tensor, dist=None) -> torch.Tensor:
    # the StyleGAN2 projector compares at most 256 px (area down-sampling), as its VGG was trained on;
    # LPIPS backbones need at least 64 px (their pooling stack), so small images are upsampled for them
    if x.shape[-1] > 256:
        return F.interpolate(x, size=(256, 256), mode="area")
    if dist.perceptual and x.shape[-1] < 64:
        return F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
    return x


# ---- optimiser, schedule and regularisers ---------------------------------------------------
class Adam:
    """Adam (Kingma & Ba) on a list of tensors, with the learning rate given at each step.

    Our own few lines instead of ``torch.optim.Adam``, whose construction imports torch's
    compiler stack (seconds on a small CPU, for every projection started in a fresh process).
    """

    def __init__(self, tensors: list[torch.Tensor], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.tensors = tensors
        self.b1, self.b2 = betas
        self.eps = eps
        self.m = [torch.zeros_like(t) for t in tensors]
        self.v = [torch.zeros_like(t) for t in tensors]
        self.t = 0

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], lr: float) -> None:
        self.t += 1
        c1 = 1 - self.b1**self.t
        c2 = 1 - self.b2**self.t
        for x, g, m, v in zip(self.tensors, grads, self.m, self.v):
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            x.addcdiv_(m, (v / c2).sqrt_().add_(self.eps), value=-lr / c1)


# ---- schedule and regularisers -------------------------------------------------------------
def learning_rate(step: int, steps: int, lr: float, rampup: float, rampdown: float) -> float:
    """The StyleGAN2 projector's schedule: linear ramp-up, cosine ramp-down."""
    t = step / max(1, steps)
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp *= min(1.0, t / rampup) if rampup > 0 else 1.0
    return lr * ramp


def code_noise_scale(step: int, steps: int, spread: float, factor: float, ramp: float) -> float:
    """Std of the noise added to the code: ``spread * factor * max(0, 1 - t / ramp)^2``."""
    t = step / max(1, steps)
    return spread * factor * max(0.0, 1.0 - t / ramp) ** 2 if ramp > 0 else 0.0


def noise_regularization(maps: list[torch.Tensor]) -> torch.Tensor:
    """Sum over maps ``[1, 1, R, R]`` and scales (down to 8 px) of squared one-pixel autocorrelations."""
    reg = maps[0].new_zeros(()) if maps else torch.zeros(())
    for v in maps:
        while True:
            reg = reg + (v * torch.roll(v, shifts=1, dims=3)).mean().square()
            reg = reg + (v * torch.roll(v, shifts=1, dims=2)).mean().square()
            if v.shape[2] <= 8:
                break
            v = F.avg_pool2d(v, 2)
    return reg


def shell_prior(z: torch.Tensor) -> torch.Tensor:
    """``[B]`` negative log density of ``|z|`` under N(0, I_d), per dimension (minimum at sqrt(d - 1))."""
    d = z.shape[1]
    r2 = z.square().sum(1).clamp_min(1e-8)
    return (0.5 * r2 - 0.5 * (d - 1) * torch.log(r2)) / d


# ---- the latent fit ------------------------------------------------------------------------
MAX_STEPS = 1_000_000


def _bounded(name: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or not lo <= value <= hi:
        raise BadValueError(f"{name} {value}: must be a whole number from {lo} to {hi:,}")


@dataclass(frozen=True)
class ProjectParams:
    """Settings of ``project``. Defaults follow the StyleGAN2 projector, with fewer steps (its 1000
    steps gain little past a few hundred on small models; raise ``steps`` for large ones)."""

    space: str = "auto"  # "auto": w for style models, z otherwise; or z / w / w+
    steps: int = 500
    lr: float = 0.1
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    noise_factor: float | None = None  # code noise / code spread; None: 0.05 in w / w+ (reference), 0 in z
    noise_ramp: float = 0.75
    noise_reg: float = 1e5  # StyleGAN2 noise-map regularisation
    optimize_noise: bool = True  # StyleGAN2: fit the noise maps too
    pixel_weight: float = 1.0  # weight of the pixel MSE next to the distance
    prior_weight: float = 1.0  # z only: Gaussian-shell prior (0.1 let a photo's z drift to |z| = 1.16 sqrt(d))
    candidates: int = 256  # z only: random z scored before the fit
    starts: int = 4  # z only: best candidates fitted jointly
    stats_samples: int = 10000  # w: mapped z for the code spread
    preview_every: int = 10
    seed: int = 0

    def check(self, gen) -> str:
        """Validate against ``gen``; returns the space to fit in."""
        space = self.space
        if space == "auto":
            space = "w" if "w" in gen.spaces else "z"
        gen.check_space(space)
        _bounded("steps", self.steps, 1, MAX_STEPS)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise AtlasError(f"learning rate {self.lr}: must be positive")
        if space == "z" and (self.starts < 1 or self.candidates < self.starts):
            raise AtlasError(f"starts {self.starts} / candidates {self.candidates}: need 1 <= starts <= candidates")
        _bounded("candidates", self.candidates, 1, 100_000)
        _bounded("starts", self.starts, 1, 256)  # fitted together: every step renders them all
        _bounded("stats_samples", self.stats_samples, 1, 10**8)
        _bounded("preview_every", self.preview_every, 1, MAX_STEPS)
        return space


def code_statistics(
    gen, space: str, samples: int, seed: int, device, record: Progress | None = None
) -> Iterator[Progress]:
    """Job: the fit's starting code ``[*code_shape]`` in w / w+ and the code spread (RMS distance of
    mapped z); yields ``record`` after every paced piece of mapped latents."""
    g = torch.Generator().manual_seed(seed)
    center = gen.truncation_center
    # E|w - avg|^2 from the sums of w and |w|^2, in float64: no mapped sample is kept
    w_sum = torch.zeros(gen.w_dim, dtype=torch.float64, device=device)
    sq_sum = 0.0
    pacer = Pacer(1000, first=100, device=device)
    with torch.no_grad():
        for start in range(0, samples, 1000):  # drawn in thousands as ever: the same latents whatever the pieces
            z = torch.randn(min(1000, samples - start), gen.z_dim, generator=g)
            for sl in pacer.slices(z.shape[0]):
                w = gen.mapping(z[sl].to(device))[:, 0].double()
                w_sum += w.sum(0)
                sq_sum += float(w.square().sum())
                yield record if record is not None else Progress(0, 0)
        mean = w_sum / samples
        avg = center.detach().double().to(device) if center is not None else mean
        spread = math.sqrt(max(0.0, sq_sum / samples - 2 * float(avg @ mean) + float(avg @ avg)))
        avg = avg.float()
    code = avg if space == "w" else avg.unsqueeze(0).repeat(gen.num_ws, 1)
    return code, spread


def project(
    gen,
    image: str | Path | np.ndarray,
    params: ProjectParams = ProjectParams(),
    *,
    distance: str | Distance | None = "lpips-vgg",
) -> Iterator[Progress]:
    """Job: fit a code of ``gen`` to ``image``; returns a ``Latent`` (code ``[1, ...]``, not saved).

    Every step yields ``Progress(step, steps, "project", metrics={"loss", "distance", "lr"})``;
    every ``preview_every`` steps and at the end ``partial`` is the current reconstruction, uint8
    ``[H, W, 3]``. Closing the job stops it; the generator is never modified.
    """
    space = params.check(gen)
    gen = single_class(gen)
    dev = gen.device
    target, info = load_image(image, gen.resolution, gen.img_channels)
    target = target.to(dev)
    t0 = time.perf_counter()
    steps = params.steps
    preparing = Progress(0, steps, stage="project", message="preparing")
    yield preparing
    dist = yield from wait_for(resolve_distance, distance, dev, record=preparing)  # builds (and reads) a network
    target_d = _for_distance(target, dist)
    g = torch.Generator().manual_seed(params.seed)

    def loss_of(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = dist(_for_distance(images, dist), target_d.expand(images.shape[0], -1, -1, -1)).reshape(-1)
        mse = (images - target).square().flatten(1).mean(1)
        return d + params.pixel_weight * mse, d

    # In z the code noise costs 3-6 dB PSNR on digiface (300 steps, 3 seeds): the restarts already explore.
    noise_factor = params.noise_factor if params.noise_factor is not None else (0.0 if space == "z" else 0.05)
    noise_maps: dict[str, torch.Tensor] = {}
    pacer = Pacer(64, device=dev)
    if space == "z":
        code, spread = yield from _best_candidates(gen, params, g, loss_of, dev, pacer, preparing)
    else:
        code, spread = yield from code_statistics(gen, space, params.stats_samples, params.seed, dev, preparing)
        code = code.unsqueeze(0)
        if params.optimize_noise:
            noise_maps = {k: v.detach().clone().float().reshape(1, 1, *v.shape) for k, v in gen.noise_maps().items()}
    code = code.detach().clone().requires_grad_(True)
    for v in noise_maps.values():
        v.requires_grad_(True)
    variables = [code, *noise_maps.values()]
    opt = Adam(variables, betas=(0.9, 0.999))

    loss_b = d_b = None
    for step in range(steps):
        lr = learning_rate(step, steps, params.lr, params.lr_rampup, params.lr_rampdown)
        sigma = code_noise_scale(step, steps, spread, noise_factor, params.noise_ramp)
        noisy = code + torch.randn(code.shape, generator=g).to(dev) * sigma
        images = gen.decode(noisy, space, noise=_noise_arg(noise_maps, noisy.shape[0]))
        loss_b, d_b = loss_of(images)
        loss = loss_b.sum()
        if space == "z":
            loss = loss + params.prior_weight * shell_prior(code).sum()
        if noise_maps:
            loss = loss + params.noise_reg * noise_regularization(list(noise_maps.values()))
        opt.step(list(torch.autograd.grad(loss, variables)), lr)
        if noise_maps:
            with torch.no_grad():
                for v in noise_maps.values():
                    v -= v.mean()
                    v *= v.square().mean().rsqrt()
        best = int(loss_b.argmin())
        show = (step + 1) % max(1, params.preview_every) == 0 or step == 0
        yield Progress(
            step + 1,
            steps,
            stage="project",
            metrics={"loss": float(loss_b[best].detach()), "distance": float(d_b[best].detach()), "lr": lr},
            partial=_uint8(images[best]) if show else None,
        )

    # the best start, judged without the code noise
    with torch.no_grad():
        final = gen.decode(code, space, noise=_noise_arg(noise_maps, code.shape[0]))
        loss_b, _ = loss_of(final)
        best = int(loss_b.argmin())
    lat = Latent(
        code=code.detach()[best : best + 1].cpu(),
        space=space,
        model=model_ref(gen),
        image=info,
        params={**asdict(params), "space": space, "distance": dist.title},
        noise={k: v.detach()[:, 0].cpu() for k, v in noise_maps.items()},
        classes=gen.classes_bound,
    )
    lat.metrics = reconstruction_metrics(gen, lat, target, dist)
    lat.metrics["seconds"] = round(time.perf_counter() - t0, 3)
    yield Progress(
        steps,
        steps,
        stage="project",
        metrics={"distance": lat.metrics["distance"], "psnr": lat.metrics["psnr"]},
        partial=render_latent(gen, lat)[0],
        message="done",
    )
    return lat


def single_class(gen):
    """A class-conditional generator as a view on one class (its view's first); others unchanged.

    A photo is fitted on one class: every restart and every scored candidate uses it.
    """
    if not gen.num_classes:
        return gen
    cls = gen.condition(1).classes
    return gen.conditioned(classes=cls.cpu())


def _best_candidates(
    gen, params: ProjectParams, g: torch.Generator, loss_of, dev, pacer: Pacer, record: Progress
) -> Iterator[Progress]:
    """Job: z: the ``starts`` best of ``candidates`` random z (by loss and prior), and the z spread
    sqrt(d); scored in paced pieces (at most 64), yielding ``record`` after each."""
    z_all = torch.randn(params.candidates, gen.z_dim, generator=g)
    scores = []
    with torch.no_grad():
        for sl in pacer.slices(params.candidates):
            z = z_all[sl].to(dev)
            loss, _ = loss_of(gen.decode(z, "z"))
            scores.append(loss + params.prior_weight * shell_prior(z))
            yield record
    order = torch.cat(scores).argsort()[: params.starts]
    return z_all[order.cpu()].to(dev), math.sqrt(gen.z_dim)


def _noise_arg(maps: dict[str, torch.Tensor], batch: int):
    return {k: v.expand(batch, -1, -1, -1) for k, v in maps.items()} if maps else "const"


def _uint8(image: torch.Tensor) -> np.ndarray:
    from engine.render import to_uint8

    return to_uint8(image.unsqueeze(0))[0]


def render_latent(gen, lat: Latent, *, raw: bool = False):
    """The latent's images as rendered everywhere else (its tuned weights and noise maps applied):
    uint8 ``[N, H, W, 3]``, or the raw ``[N, C, H, W]`` tensor with ``raw``."""
    from engine.render import render_batch, to_uint8

    with torch.no_grad():
        x = render_batch(gen, lat.code.to(gen.device), None, space=lat.space, bases=lat.bases())
    return x if raw else to_uint8(x)


def reconstruction_metrics(gen, lat: Latent, target: torch.Tensor, dist: Distance, prefix: str = "") -> dict:
    """``distance`` (under ``dist``), ``distance_name``, ``psnr`` (dB) and ``mse`` of the rendered latent."""
    x = render_latent(gen, lat, raw=True)[:1]
    target = target.to(x.device)
    with torch.no_grad():
        d = float(dist(_for_distance(x, dist), _for_distance(target, dist)).reshape(-1)[0])
        p = float(psnr(x, target)[0])
        mse = float((x.clamp(-1, 1) - target).square().mean())
    out = {f"{prefix}distance": d, f"{prefix}distance_name": dist.title, f"{prefix}psnr": p, f"{prefix}mse": mse}
    if dist.reason:
        out[f"{prefix}distance_note"] = dist.reason
    return out


# ---- pivotal tuning ------------------------------------------------------------------------
@dataclass(frozen=True)
class TuneParams:
    """Settings of ``tune`` (pivotal tuning); defaults are the PTI paper's."""

    steps: int = 350
    lr: float = 3e-4  # on deltas in units of each layer's weight RMS
    distance_weight: float = 1.0
    l2_weight: float = 1.0
    stop_distance: float = 0.06  # stop once LPIPS is below this (only when the distance is LPIPS)
    locality_weight: float = 0.0  # PTI's locality regularisation (off in the authors' defaults)
    locality_alpha: float = 30.0  # how far from the pivot the regularising codes lie (code units)
    layers: tuple[str, ...] | None = None  # default: every editable layer outside the mapping network
    preview_every: int = 10
    seed: int = 0

    def check(self, gen) -> list[str]:
        _bounded("tuning steps", self.steps, 1, MAX_STEPS)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise AtlasError(f"tuning learning rate {self.lr}: must be positive")
        _bounded("preview_every", self.preview_every, 1, MAX_STEPS)
        # the code is held fixed past the mapping network (w / w+), so its layers cannot act on it
        names = [i.name for i in gen.editable_layers() if not i.mapping]
        if not names:
            raise AtlasError(f"model '{gen.name}' has no editable layers to tune")
        layers = list(self.layers) if self.layers else names
        for layer in layers:
            if gen.layer_info(layer).mapping:
                raise AtlasError(
                    f"layer {layer} is in the mapping network: pivotal tuning holds the code fixed in w / w+, "
                    "so tune synthesis layers"
                )
        return layers


def tune(
    gen,
    lat: Latent,
    image: str | Path | np.ndarray | torch.Tensor,
    params: TuneParams = TuneParams(),
    *,
    distance: str | Distance | None = "lpips-alex",
) -> Iterator[Progress]:
    """Job: pivotal tuning of ``gen``'s weights on ``image`` with ``lat``'s code fixed.

    Returns a copy of ``lat`` whose ``tuning`` holds one weight delta per tuned layer and whose
    metrics gain ``tuned_distance`` / ``tuned_psnr``. ``gen`` itself is never modified.
    """
    from engine.directions import Direction
    from engine.render import Base, render_batch

    layers = params.check(gen)
    lat.check_fits(gen)
    dev = gen.device
    if isinstance(image, torch.Tensor):
        target = image.to(dev)
    else:
        target, _ = load_image(image, gen.resolution, gen.img_channels)
        target = target.to(dev)
    yield Progress(0, params.steps, stage="tune", message="preparing")
    dist = yield from wait_for(resolve_distance, distance, dev, record=Progress(0, params.steps, stage="tune"))
    target_d = _for_distance(target, dist)
    code = lat.code[:1].to(dev)
    noise = {k: v[:1] for k, v in lat.noise.items()} or None
    scales = {name: float(gen.layer_weight(name).detach().float().square().mean().sqrt()) or 1.0 for name in layers}
    units = {name: torch.zeros_like(gen.layer_weight(name), dtype=torch.float32, requires_grad=True) for name in layers}
    start = {name: lat.tuning.get(name) for name in layers}
    opt = Adam(list(units.values()))
    g = torch.Generator().manual_seed(params.seed)
    t0 = time.perf_counter()

    def deltas() -> dict[str, torch.Tensor]:
        out = {}
        for name, u in units.items():
            d = u * scales[name]
            if start[name] is not None:
                d = d + start[name].to(dev)
            out[name] = d
        return out

    def base(ds: dict[str, torch.Tensor]) -> Base:
        return Base(tuple((Direction("param", layer=n, delta=d), 1.0) for n, d in ds.items()), noise)

    steps = params.steps
    yield Progress(0, steps, stage="tune")
    for step in range(steps):
        ds = deltas()
        x = render_batch(gen, code, None, space=lat.space, bases=[base(ds)])
        d = dist(_for_distance(x, dist), target_d).reshape(-1)[0]
        mse = (x - target).square().mean()
        loss = params.distance_weight * d + params.l2_weight * mse
        if params.locality_weight > 0:
            loss = loss + params.locality_weight * _locality(gen, lat, code, ds, base, dist, params, g)
        opt.step(list(torch.autograd.grad(loss, list(units.values()))), params.lr)
        show = (step + 1) % max(1, params.preview_every) == 0 or step == 0
        yield Progress(
            step + 1,
            steps,
            stage="tune",
            metrics={"loss": float(loss.detach()), "distance": float(d.detach())},
            partial=_uint8(x[0]) if show else None,
        )
        if dist.perceptual and float(d.detach()) < params.stop_distance:
            break
    tuned = replace(
        lat,
        tuning={n: v.detach().cpu() for n, v in deltas().items()},
        metrics=dict(lat.metrics),
        params={**lat.params, "tuning": {**asdict(params), "distance": dist.title}},
        path=None,
        warnings=list(lat.warnings),
    )
    tuned.metrics.update(reconstruction_metrics(gen, tuned, target, dist, prefix="tuned_"))
    tuned.metrics["tuned_steps"] = step + 1
    tuned.metrics["tuned_seconds"] = round(time.perf_counter() - t0, 3)
    yield Progress(
        steps,
        steps,
        stage="tune",
        metrics={"distance": tuned.metrics["tuned_distance"], "psnr": tuned.metrics["tuned_psnr"]},
        partial=render_latent(gen, tuned)[0],
        message="done",
    )
    return tuned


def _locality(gen, lat: Latent, code, ds, base, dist, params: TuneParams, g: torch.Generator) -> torch.Tensor:
    """PTI's locality term: tuned and original images agree at a code ``alpha`` away from the pivot."""
    from engine.render import render_batch

    z = torch.randn(1, gen.z_dim, generator=g).to(code.device)
    with torch.no_grad():
        other = gen.encode(z, lat.space) if lat.space != "z" else z
    step = other - code
    near = code + params.locality_alpha * step / step.norm().clamp_min(1e-8)
    with torch.no_grad():
        ref = render_batch(gen, near, None, space=lat.space)
    x = render_batch(gen, near, None, space=lat.space, bases=[base(ds)])
    d = dist(_for_distance(x, dist), _for_distance(ref, dist)).reshape(-1)[0]
    return params.l2_weight * (x - ref).square().mean() + params.distance_weight * d


def project_image(
    gen,
    image: str | Path | np.ndarray,
    params: ProjectParams = ProjectParams(),
    *,
    tune_params: TuneParams | None = None,
    distance: str | Distance | None = "lpips-vgg",
    tune_distance: str | Distance | None = "lpips-alex",
) -> Iterator[Progress]:
    """Job: ``project`` then, if ``tune_params`` is given, ``tune``; returns the ``Latent``.

    Progress steps run over both stages (``stage`` says which one).
    """
    tune_steps = tune_params.steps if tune_params is not None else 0
    total = params.steps + tune_steps
    target, _ = load_image(image, gen.resolution, gen.img_channels)
    lat = yield from relabel(project(gen, image, params, distance=distance), lambda rec: replace(rec, total=total))
    if tune_params is None:
        return lat
    return (
        yield from relabel(
            tune(gen, lat, target, tune_params, distance=tune_distance),
            lambda rec: replace(rec, step=params.steps + rec.step, total=total),
        )
    )
