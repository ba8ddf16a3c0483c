"""Training our StyleGAN2 on the procedural face set, as a cancellable job.

The recipe is StyleGAN2's (Karras et al. 2020; the stylegan2-ada-pytorch training loop):

* non-saturating logistic loss: ``L_G = softplus(-D(G(z)))``, ``L_D = softplus(D(G(z))) + softplus(-D(x))``;
* lazy R1 on reals every ``r1_interval`` (16) D steps, weighted by the interval, with
  ``gamma = 0.5`` by default. ADA's "auto" rule (``0.0002 R^2 / batch``: 0.0064 at 32 px, batch
  32; ``r1_gamma = None`` selects it) did not transfer to these narrow networks: with it (and with
  0.05) D won outright and G collapsed onto one stripe pattern by 40 kimg, while 0.5 and 2 both
  gave faces by 300 kimg (README, "The procedural face model");
  the lazy optimiser's lr and betas are rescaled by ``interval / (interval + 1)``;
* optional path-length regularisation every 4 G steps (``pl_weight``, 2 in the paper; off by
  default here because it doubles the G cost on a CPU, as in ADA's low-resolution config);
* style mixing with probability 0.9 (one crossover layer per batch);
* Adam(lr 0.0025, betas (0, 0.99), eps 1e-8) for both networks, equalized learning rate in the
  layers, mapping lr multiplier 0.01 (inside the generator);
* an exponential moving average of G with a half-life of ``ema_kimg`` (10 kimg at batch 32),
  ramped up over the first 5 % of training images; the EMA is what we ship.

The job writes into a run folder: ``checkpoint.pt`` (everything needed to resume, atomically
replaced every ``checkpoint_seconds``), ``samples/fakesNNNNNN.png`` (a fixed-latent grid of the
EMA generator), ``reals.png`` and ``log.jsonl`` (one line of statistics per tick).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.checkpoints.atlas import save_stylegan2
from engine.data.procedural import random_batches
from engine.errors import AtlasError, BadValueError, CheckpointError, describe_exception
from engine.jobs import PASS_SECONDS, Pacer, Progress
from engine.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator, mix_styles, random_noise
from engine.training.checkpoint import atomic_save, safe_load
from engine.training.discriminator import Discriminator, DiscriminatorConfig

CHECKPOINT_FORMAT = "gan-atlas-stylegan2-training"
CHECKPOINT_VERSION = 1


def _default_channels(resolution: int) -> dict[int, int]:
    # narrow enough for a shared 1-2 thread CPU: 16 channels at the top, doubling per octave up to 128
    out, r = {}, 4
    while r <= resolution:
        out[r] = min(128, max(16, 16 * resolution // r))
        r *= 2
    return out


# settings that must be at least 1 (counts) or positive (rates, amounts); every number must be finite
_AT_LEAST_ONE = {
    "z_dim",
    "w_dim",
    "mapping_layers",
    "batch_size",
    "r1_interval",
    "pl_interval",
    "pl_batch_shrink",
    "mbstd_group",
    "sample_grid",
}
_POSITIVE = {"kimg", "lr", "sample_every_kimg"}
# ceilings of the sizes (memory) and counts; a larger value is refused before anything is built
_AT_MOST = {
    "z_dim": 4096,
    "w_dim": 4096,
    "mapping_layers": 64,
    "batch_size": 4096,
    "r1_interval": 10**6,
    "pl_interval": 10**6,
    "pl_batch_shrink": 4096,
    "mbstd_group": 4096,
    "sample_grid": 32,  # an N x N grid rendered at every sample point
    "kimg": 10**7,
    "sample_every_kimg": 10**7,
    "seed": 2**63 - 1,
}
MAX_CHANNELS = 4096
_NON_NEGATIVE = {"r1_gamma", "pl_weight", "pl_decay", "style_mixing", "ema_kimg", "ema_rampup", "seed"}


def _checked_setting(name: str, value):
    """``value`` of training setting ``name`` (from JSON or a checkpoint), type- and range-checked."""

    def fail(expected: str):
        raise BadValueError(f"training setting {name}={value!r}: expected {expected}")

    def number(v, integer: bool) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
            fail("a whole number" if integer else "a number")
        if not math.isfinite(v):
            fail("a finite number")
        return v

    if name in ("g_channels", "d_channels"):
        if not isinstance(value, dict):
            fail("an object of resolution: channels")
        out = {}
        for k, v in value.items():
            try:
                res = int(k)
            except (TypeError, ValueError):
                fail("an object of resolution: channels")
            if not 1 <= number(v, True) <= MAX_CHANNELS or not 4 <= res <= 4096:
                fail(f"channel counts of 1 to {MAX_CHANNELS} at resolutions of 4 to 4096")
            out[res] = int(v)
        return out
    if name == "betas":
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            fail("two numbers [beta1, beta2]")
        b = tuple(float(number(v, False)) for v in value)
        if not all(0 <= v < 1 for v in b):
            fail("two numbers in [0, 1)")
        return b
    if value is None and name in ("r1_gamma", "ema_kimg", "ema_rampup"):
        return None
    integer = name in _AT_LEAST_ONE or name in ("resolution", "seed")
    v = number(value, integer)
    if name in _AT_LEAST_ONE and v < 1:
        fail("a whole number of at least 1")
    if name in _POSITIVE and v <= 0:
        fail("a positive number")
    if name in _NON_NEGATIVE and v < 0:
        fail("a number of at least 0")
    if name in _AT_MOST and v > _AT_MOST[name]:
        fail(f"at most {_AT_MOST[name]:,}")
    return v


@dataclass(frozen=True)
class TrainConfig:
    """All training settings; defaults are the paper's where they transfer, sized for a CPU."""

    resolution: int = 32
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 8
    g_channels: dict[int, int] = field(default_factory=dict)  # empty: _default_channels
    d_channels: dict[int, int] = field(default_factory=dict)
    batch_size: int = 32
    kimg: float = 2000.0
    lr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float | None = 0.5  # None: ADA's auto rule 0.0002 * resolution^2 / batch_size
    r1_interval: int = 16
    pl_weight: float = 0.0
    pl_interval: int = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    style_mixing: float = 0.9
    ema_kimg: float | None = None  # None: batch_size * 10 / 32
    ema_rampup: float | None = 0.05
    mbstd_group: int = 4
    sample_every_kimg: float = 4.0
    sample_grid: int = 8  # an N x N grid of fixed latents
    seed: int = 0

    @staticmethod
    def make(**overrides) -> TrainConfig:
        """A config with ``overrides``; unknown names are an error listing the valid ones."""
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise BadValueError(f"unknown training setting {', '.join(bad)}; valid: {', '.join(sorted(names))}")
        cfg = TrainConfig(**{k: _checked_setting(k, v) for k, v in overrides.items()})
        if cfg.resolution not in (16, 32, 64, 128):
            raise BadValueError(f"--res {cfg.resolution}: choose 16, 32, 64 or 128")
        if cfg.batch_size % min(cfg.mbstd_group, cfg.batch_size):
            raise AtlasError(
                f"batch size {cfg.batch_size} must be a multiple of the minibatch-std group {cfg.mbstd_group}"
            )
        return cfg

    @property
    def gamma(self) -> float:
        return self.r1_gamma if self.r1_gamma is not None else 0.0002 * self.resolution**2 / self.batch_size

    @property
    def ema_nimg(self) -> float:
        return 1000.0 * (self.ema_kimg if self.ema_kimg is not None else self.batch_size * 10 / 32)

    def generator_config(self) -> StyleGAN2Config:
        ch = self.g_channels or _default_channels(self.resolution)
        return StyleGAN2Config(
            resolution=self.resolution,
            channels=dict(ch),
            z_dim=self.z_dim,
            w_dim=self.w_dim,
            mapping_layers=self.mapping_layers,
        )

    def discriminator_config(self) -> DiscriminatorConfig:
        ch = self.d_channels or _default_channels(self.resolution)
        return DiscriminatorConfig(self.resolution, dict(ch), mbstd_group=self.mbstd_group)

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("g_channels", "d_channels"):
            d[key] = {str(k): v for k, v in d[key].items()}
        d["betas"] = list(self.betas)
        return d

    @staticmethod
    def from_dict(d: dict) -> TrainConfig:
        return TrainConfig.make(**d)


@dataclass
class TrainState:
    """Everything a run carries between iterations (and in its checkpoint)."""

    cfg: TrainConfig
    G: StyleGAN2Generator
    D: Discriminator
    G_ema: StyleGAN2Generator
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    rng: torch.Generator
    data_rng: np.random.Generator
    cur_nimg: int = 0
    step: int = 0  # D steps taken (also G steps)
    pl_mean: torch.Tensor = field(default_factory=lambda: torch.zeros([]))
    seconds: float = 0.0  # wall time spent training, over all sessions


def _lazy(lr: float, betas: tuple[float, float], interval: int) -> tuple[float, tuple[float, float]]:
    if interval <= 0:
        return lr, betas
    ratio = interval / (interval + 1)
    return lr * ratio, (betas[0] ** ratio, betas[1] ** ratio)


def build_state(cfg: TrainConfig, device: torch.device) -> TrainState:
    """Fresh networks, optimisers and random streams for ``cfg`` (seeded by ``cfg.seed``)."""
    torch.manual_seed(cfg.seed)
    G = StyleGAN2Generator(cfg.generator_config(), name="procedural-stylegan2").to(device).train()
    D = Discriminator(cfg.discriminator_config()).to(device).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    g_lr, g_betas = _lazy(cfg.lr, cfg.betas, cfg.pl_interval if cfg.pl_weight > 0 else 0)
    d_lr, d_betas = _lazy(cfg.lr, cfg.betas, cfg.r1_interval if cfg.gamma > 0 else 0)
    opt_G = torch.optim.Adam(G.parameters(), lr=g_lr, betas=g_betas, eps=1e-8)
    opt_D = torch.optim.Adam(D.parameters(), lr=d_lr, betas=d_betas, eps=1e-8)
    rng = torch.Generator(device="cpu").manual_seed(cfg.seed + 1)
    return TrainState(
        cfg, G, D, G_ema, opt_G, opt_D, rng, np.random.default_rng(cfg.seed + 2), pl_mean=torch.zeros([], device=device)
    )


# ---- checkpoints ---------------------------------------------------------------------------


def state_payload(st: TrainState) -> dict:
    """A plain dict (tensors, numbers, strings) that ``torch.load(weights_only=True)`` reads back."""
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": st.cfg.to_dict(),
        "G": st.G.state_dict(),
        "D": st.D.state_dict(),
        "G_ema": st.G_ema.state_dict(),
        "opt_G": st.opt_G.state_dict(),
        "opt_D": st.opt_D.state_dict(),
        "rng": st.rng.get_state(),
        "data_rng": json.dumps(st.data_rng.bit_generator.state),
        "cur_nimg": st.cur_nimg,
        "step": st.step,
        "pl_mean": st.pl_mean.detach().cpu(),
        "seconds": st.seconds,
    }


def load_state(path: Path, device: torch.device, cfg: TrainConfig | None = None) -> TrainState:
    """Rebuild a ``TrainState`` from ``checkpoint.pt``; ``cfg`` (if given) must match the stored one."""
    ck = safe_load(path, "training checkpoint")
    if ck.get("format") != CHECKPOINT_FORMAT or ck.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: not a GAN Atlas StyleGAN2 training checkpoint (version {CHECKPOINT_VERSION})")
    stored = TrainConfig.from_dict(ck["config"])
    if cfg is not None:
        # the length of the run may change on resume; nothing that shapes the networks may
        diff = [k for k, v in asdict(cfg).items() if k not in ("kimg", "sample_every_kimg") and asdict(stored)[k] != v]
        if diff:
            raise AtlasError(
                f"{path}: cannot resume with different settings ({', '.join(diff)}); "
                f"the checkpoint has {', '.join(f'{k}={asdict(stored)[k]}' for k in diff)}"
            )
        stored = dataclasses.replace(stored, kimg=cfg.kimg, sample_every_kimg=cfg.sample_every_kimg)
    st = build_state(stored, device)
    try:
        st.G.load_state_dict(ck["G"])
        st.D.load_state_dict(ck["D"])
        st.G_ema.load_state_dict(ck["G_ema"])
        st.opt_G.load_state_dict(ck["opt_G"])
        st.opt_D.load_state_dict(ck["opt_D"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: damaged training checkpoint ({describe_exception(exc)})") from None
    st.rng.set_state(ck["rng"])
    st.data_rng.bit_generator.state = json.loads(ck["data_rng"])
    st.cur_nimg, st.step, st.seconds = int(ck["cur_nimg"]), int(ck["step"]), float(ck["seconds"])
    st.pl_mean = ck["pl_mean"].to(device)
    return st


# ---- one iteration -------------------------------------------------------------------------


@dataclass
class Draws:
    """The random numbers one generator pass takes from ``st.rng``, drawn for the whole batch in
    the order the unpaced pass drew them: latents, the style-mixing choice, the noise maps."""

    z: torch.Tensor  # [B, z_dim]
    z2: torch.Tensor | None  # [B, z_dim], the second latents of style mixing
    cut: int  # the crossover layer (with z2)
    noise: dict[str, torch.Tensor]  # {layer: [B, 1, R, R]}


def _draw(G: StyleGAN2Generator, st: TrainState, batch: int, device: torch.device) -> Draws:
    z = torch.randn(batch, G.z_dim, generator=st.rng).to(device)
    z2, cut = None, 0
    if st.cfg.style_mixing > 0 and float(torch.rand([], generator=st.rng)) < st.cfg.style_mixing:
        cut = int(torch.randint(1, G.num_ws, [], generator=st.rng))
        z2 = torch.randn(batch, G.z_dim, generator=st.rng).to(device)
    like = torch.empty(0, device=device)
    noise = {
        name: random_noise((batch, 1, m.shape[-1], m.shape[-1]), like, st.rng) for name, m in G.noise_maps().items()
    }
    return Draws(z, z2, cut, noise)


class _Pass:
    """One generator pass over a drawn batch, in pieces: ``images(rows)``; ``done()`` then moves
    ``w_avg`` as the unpaced pass's mapping calls did (once per latent set, with the batch's mean)."""

    def __init__(self, G: StyleGAN2Generator, d: Draws) -> None:
        self.G, self.d = G, d
        self.sums = [torch.zeros(G.w_dim, device=d.z.device) for _ in range(1 if d.z2 is None else 2)]
        self.n = 0

    def images(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``[n, 3, R, R]`` and ``ws`` of rows ``rows`` of the drawn batch."""
        G, d = self.G, self.d
        ws = G.mapping(d.z[rows], track=False)
        self.sums[0] += ws[:, 0].detach().sum(0)
        if d.z2 is not None:
            ws2 = G.mapping(d.z2[rows], track=False)
            self.sums[1] += ws2[:, 0].detach().sum(0)
            ws = mix_styles(ws, ws2, d.cut)
        self.n += rows.numel()
        return G.synthesis(ws, noise={k: v[rows] for k, v in d.noise.items()}), ws

    def done(self) -> None:
        for s in self.sums:
            self.G.track_w_avg(s / max(self.n, 1))


def _groups(B: int, cfg: TrainConfig, pacer: Pacer) -> Iterator[torch.Tensor]:
    """Paced pieces of a batch of ``B``, as row indices: whole minibatch-std groups, each laid out
    as the discriminator groups the whole batch (group m = rows m, m + M, ..., M = B / group), so
    a piece is judged exactly as within the whole batch."""
    G = min(cfg.mbstd_group, B)
    M = B // G
    for sl in pacer.slices(M):
        yield torch.tensor([g * M + m for g in range(G) for m in range(sl.start, sl.stop)])


@dataclass
class StepPacers:
    """One ``Pacer`` per phase of an iteration (their pieces cost differently), in minibatch-std groups."""

    g_main: Pacer
    g_pl: Pacer
    d_main: Pacer
    d_r1: Pacer

    @staticmethod
    def make(cfg: TrainConfig, device, seconds: float | None = PASS_SECONDS) -> StepPacers:
        M = cfg.batch_size // min(cfg.mbstd_group, cfg.batch_size)
        return StepPacers(*(Pacer(M, seconds=seconds, device=device) for _ in range(4)))


def train_step(st: TrainState, reals: torch.Tensor) -> dict[str, float]:
    """One G step and one D step (plus lazy regularisers when due) on ``reals [B, 3, R, R]``."""
    job = train_step_job(st, reals, StepPacers.make(st.cfg, reals.device, seconds=None))
    while True:
        try:
            next(job)
        except StopIteration as stop:
            return stop.value


def train_step_job(st: TrainState, reals: torch.Tensor, pacers: StepPacers) -> Iterator[str]:
    """Job: ``train_step`` in paced pieces of whole minibatch-std groups, yielding the phase's
    name after each piece; returns the step's statistics.

    Every loss is a mean over the batch, so each piece adds its share of the gradient and the
    optimiser steps once per phase: the unpaced step to rounding. Random numbers are drawn for
    the whole batch first, in the unpaced order (``Draws``). Between its first optimiser step
    and its end the iteration has changed ``st`` in part: a caller that stops it there must not
    keep ``st`` (``train`` saves the state from before the iteration instead).
    """
    cfg, G, D = st.cfg, st.G, st.D
    device = reals.device
    B = reals.shape[0]
    stats: dict[str, float] = {}

    # G main: non-saturating loss
    D.requires_grad_(False)
    G.requires_grad_(True)
    gen_pass = _Pass(G, _draw(G, st, B, device))
    st.opt_G.zero_grad(set_to_none=True)
    total = 0.0
    for rows in _groups(B, cfg, pacers.g_main):
        fake, _ = gen_pass.images(rows)
        loss = F.softplus(-D(fake)).sum() / B
        loss.backward()
        total += float(loss.detach())
        yield "G"
    gen_pass.done()
    st.opt_G.step()
    stats["loss_G"] = total

    # G reg: path length (lazy); the running mean needs every length before the loss
    if cfg.pl_weight > 0 and st.step % cfg.pl_interval == 0:
        pb = max(1, B // cfg.pl_batch_shrink)
        gen_pass = _Pass(G, _draw(G, st, pb, device))
        noise = torch.randn((pb, G.img_channels, G.resolution, G.resolution), generator=st.rng).to(device)
        noise = noise / math.sqrt(G.resolution * G.resolution)
        lengths = []  # each piece's graph is kept until its loss is known (it needs the new mean)
        for rows in _groups(pb, cfg, pacers.g_pl):
            fake, ws = gen_pass.images(rows)
            (grad,) = torch.autograd.grad((fake * noise[rows]).sum(), ws, create_graph=True)
            lengths.append(grad.square().sum(2).mean(1).sqrt())
            yield "PL"
        gen_pass.done()
        mean = torch.cat(lengths).mean()
        st.pl_mean = st.pl_mean.lerp(mean.detach(), cfg.pl_decay)
        st.opt_G.zero_grad(set_to_none=True)
        for i, length in enumerate(lengths):
            ((length - st.pl_mean).square().sum() / pb * cfg.pl_weight * cfg.pl_interval).backward()
            lengths[i] = None
            yield "PL"
        st.opt_G.step()
        stats["pl"] = float(mean.detach())

    # D main
    G.requires_grad_(False)
    D.requires_grad_(True)
    gen_pass = _Pass(G, _draw(G, st, B, device))
    st.opt_D.zero_grad(set_to_none=True)
    sums = {"loss_D": 0.0, "D_real": 0.0, "D_fake": 0.0}
    for rows in _groups(B, cfg, pacers.d_main):
        with torch.no_grad():
            fake, _ = gen_pass.images(rows)
        logits_fake = D(fake)
        logits_real = D(reals[rows])
        loss = (F.softplus(logits_fake).sum() + F.softplus(-logits_real).sum()) / B
        loss.backward()
        sums["loss_D"] += float(loss.detach())
        sums["D_real"] += float(logits_real.detach().sum()) / B
        sums["D_fake"] += float(logits_fake.detach().sum()) / B
        yield "D"
    gen_pass.done()
    st.opt_D.step()
    stats.update(sums)

    # D reg: R1 on reals (lazy)
    if cfg.gamma > 0 and st.step % cfg.r1_interval == 0:
        st.opt_D.zero_grad(set_to_none=True)
        r1_sum = 0.0
        for rows in _groups(B, cfg, pacers.d_r1):
            x = reals[rows].detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
            r1 = grad.square().sum(dim=[1, 2, 3])
            (r1.sum() / B * (cfg.gamma / 2) * cfg.r1_interval).backward()
            r1_sum += float(r1.detach().sum())
            yield "R1"
        st.opt_D.step()
        stats["r1"] = r1_sum / B

    # EMA of G (half-life ema_nimg, ramped up early in training)
    st.cur_nimg += B
    st.step += 1
    ema_nimg = cfg.ema_nimg
    if cfg.ema_rampup:
        ema_nimg = min(ema_nimg, st.cur_nimg * cfg.ema_rampup)
    beta = 0.5 ** (B / max(ema_nimg, 1e-8))
    with torch.no_grad():
        for p_ema, p in zip(st.G_ema.parameters(), G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(st.G_ema.buffers(), G.buffers()):
            b_ema.copy_(b)
    return stats


def _cloned(obj):
    """A deep copy of nested dicts / lists / tuples, every tensor detached and cloned."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _cloned(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cloned(v) for v in obj)
    return obj


# ---- the job -------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What ``train`` returns: the EMA generator (eval mode) and where the run stands."""

    G_ema: StyleGAN2Generator
    config: TrainConfig
    cur_nimg: int
    seconds: float


def fixed_latents(cfg: TrainConfig) -> torch.Tensor:
    """``[N*N, z_dim]`` the sample grid's latents (seeds 0..N*N-1, NVIDIA's recipe)."""
    n = cfg.sample_grid**2
    return torch.from_numpy(np.stack([np.random.RandomState(s).randn(cfg.z_dim) for s in range(n)]).astype(np.float32))


def image_grid(images: torch.Tensor, columns: int) -> np.ndarray:
    """``[N, 3, H, W]`` in [-1, 1] -> one ``[rows*H, columns*W, 3]`` uint8 image."""
    x = ((images.detach().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    N, C, H, W = x.shape
    rows = math.ceil(N / columns)
    canvas = torch.zeros(rows * columns, C, H, W, dtype=torch.uint8)
    canvas[:N] = x
    return canvas.reshape(rows, columns, C, H, W).permute(0, 3, 1, 4, 2).reshape(rows * H, columns * W, C).numpy()


def _save_png(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(arr).save(tmp)
    tmp.replace(path)


@torch.no_grad()
def render_samples(G_ema: StyleGAN2Generator, z: torch.Tensor, batch: int = 64) -> torch.Tensor:
    dev = G_ema.device
    return torch.cat([G_ema(z[i : i + batch].to(dev), noise="const").cpu() for i in range(0, z.shape[0], batch)])


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    device: torch.device | str = "cpu",
    resume: bool = False,
    checkpoint_seconds: float = 300.0,
    tick_seconds: float = 30.0,
) -> Iterator[Progress]:
    """Train until ``cfg.kimg`` thousand real images; yields ``Progress`` (step = images shown).

    ``run_dir`` receives the checkpoint, sample grids and log (see the module docstring). With
    ``resume`` the run continues from ``run_dir/checkpoint.pt`` (bit-for-bit the same state that
    was saved: networks, optimisers, EMA, random streams). Iterations run in paced pieces
    (``train_step_job``), yielding after each. Closing the job at a yield saves a checkpoint
    first (the state from before the iteration in progress), so a cancelled run can be resumed.
    Returns a ``TrainResult``.
    """
    device = torch.device(device)
    run_dir = Path(run_dir)
    ckpt_path = run_dir / "checkpoint.pt"
    if resume:
        if not ckpt_path.is_file():
            raise AtlasError(f"--resume: {ckpt_path} does not exist (start without --resume)")
        st = load_state(ckpt_path, device, cfg)
    else:
        if ckpt_path.exists():
            raise AtlasError(f"{ckpt_path} exists; pass --resume to continue that run or choose another run folder")
        st = build_state(cfg, device)
    cfg = st.cfg
    run_dir.mkdir(parents=True, exist_ok=True)
    total = int(cfg.kimg * 1000)
    stream = random_batches(cfg.batch_size, resolution=cfg.resolution, generator=st.data_rng)
    grid_z = fixed_latents(cfg)
    if not (run_dir / "reals.png").exists():
        reals = next(random_batches(grid_z.shape[0], resolution=cfg.resolution, seed=cfg.seed + 3))[0]
        _save_png(image_grid(reals, cfg.sample_grid), run_dir / "reals.png")
    log = open(run_dir / "log.jsonl", "a")  # noqa: SIM115 - closed in finally
    last_ckpt = last_tick = time.perf_counter()
    tick_start_nimg = st.cur_nimg
    next_sample = (st.cur_nimg // int(cfg.sample_every_kimg * 1000) + 1) * int(cfg.sample_every_kimg * 1000)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    data_seconds = 0.0
    saved_at = st.cur_nimg if resume else -1
    seg_start = time.perf_counter()
    seg_seconds0 = st.seconds

    pacers = StepPacers.make(cfg, device)
    before: dict | None = None  # the state from before the iteration in progress, while it changes st

    def checkpoint(payload: dict | None = None) -> None:
        nonlocal saved_at
        st.seconds = seg_seconds0 + (time.perf_counter() - seg_start)
        payload = payload if payload is not None else state_payload(st)
        atomic_save({**payload, "seconds": st.seconds}, ckpt_path)
        saved_at = payload["cur_nimg"]

    try:
        while st.cur_nimg < total:
            t0 = time.perf_counter()
            data_state = json.dumps(st.data_rng.bit_generator.state)
            reals, _ = next(stream)
            data_seconds += time.perf_counter() - t0
            # the iteration yields between paced pieces and changes st as it goes: stopped within it,
            # the job saves the state from before it (a copy: a few MB at the default widths)
            start = {**_cloned(state_payload(st)), "data_rng": data_state}
            step = train_step_job(st, reals.to(device), pacers)
            while True:
                try:
                    phase = next(step)
                except StopIteration as stop:
                    stats = stop.value
                    break
                before = start
                yield Progress(st.cur_nimg, total, "train", message=f"iteration {st.step + 1}: {phase}")
            before = None
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
            now = time.perf_counter()
            metrics = {"kimg": st.cur_nimg / 1000, **{k: stats[k] for k in ("loss_G", "loss_D")}}
            if now - last_tick >= tick_seconds or st.cur_nimg >= total:
                rate = (st.cur_nimg - tick_start_nimg) / max(now - last_tick, 1e-9)
                rec = {
                    "kimg": round(st.cur_nimg / 1000, 3),
                    "seconds": round(seg_seconds0 + now - seg_start, 1),
                    "img_per_s": round(rate, 2),
                    "data_share": round(data_seconds / max(now - last_tick, 1e-9), 4),
                    **{k: round(sums[k] / counts[k], 5) for k in sums},
                }
                log.write(json.dumps(rec) + "\n")
                log.flush()
                metrics["img_per_s"] = rate
                sums, counts, data_seconds = {}, {}, 0.0
                last_tick, tick_start_nimg = now, st.cur_nimg
            if st.cur_nimg >= next_sample or st.cur_nimg >= total:
                _save_png(
                    image_grid(render_samples(st.G_ema, grid_z), cfg.sample_grid),
                    run_dir / "samples" / f"fakes{st.cur_nimg // 1000:06d}.png",
                )
                next_sample += int(cfg.sample_every_kimg * 1000)
            if now - last_ckpt >= checkpoint_seconds:
                checkpoint()
                last_ckpt = time.perf_counter()
            yield Progress(st.cur_nimg, total, "train", metrics)
    finally:
        if saved_at != st.cur_nimg and st.cur_nimg > 0:
            checkpoint(before)  # the state from before an iteration stopped half-way, else the current one
        log.close()
    st.seconds = seg_seconds0 + (time.perf_counter() - seg_start)
    return TrainResult(st.G_ema, cfg, st.cur_nimg, st.seconds)


# ---- the shipped file ----------------------------------------------------------------------


def export_generator(result: TrainResult, path: str | Path, *, dtype: torch.dtype = torch.float16) -> Path:
    """Write the EMA generator of ``result`` to ``path`` in GAN Atlas's StyleGAN2 format (float16 weights)."""
    meta = {
        "training": result.config.to_dict(),
        "kimg": result.cur_nimg / 1000,
        "seconds": round(result.seconds, 1),
        "data": "procedural faces (engine.data.procedural)",
    }
    result.G_ema.w_avg_source = "tracked during training (moving average of w)"
    return save_stylegan2(result.G_ema, path, meta=meta, dtype=dtype)
