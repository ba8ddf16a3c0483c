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
from engine.errors import AtlasError, BadValueError, CheckpointError
from engine.jobs import Progress
from engine.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator, mix_styles
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
            if number(v, True) < 1 or res < 4:
                fail("positive channel counts at resolutions of at least 4")
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
        raise CheckpointError(f"{path}: damaged training checkpoint ({exc})") from None
    st.rng.set_state(ck["rng"])
    st.data_rng.bit_generator.state = json.loads(ck["data_rng"])
    st.cur_nimg, st.step, st.seconds = int(ck["cur_nimg"]), int(ck["step"]), float(ck["seconds"])
    st.pl_mean = ck["pl_mean"].to(device)
    return st


# ---- one iteration -------------------------------------------------------------------------


def _ws(G: StyleGAN2Generator, st: TrainState, batch: int, device: torch.device) -> torch.Tensor:
    """Mapped latents ``[B, num_ws, w_dim]`` with style mixing (one crossover layer per batch)."""
    z = torch.randn(batch, G.z_dim, generator=st.rng).to(device)
    ws = G.mapping(z)
    if st.cfg.style_mixing > 0 and float(torch.rand([], generator=st.rng)) < st.cfg.style_mixing:
        cut = int(torch.randint(1, G.num_ws, [], generator=st.rng))
        z2 = torch.randn(batch, G.z_dim, generator=st.rng).to(device)
        ws = mix_styles(ws, G.mapping(z2), cut)
    return ws


def _generate(
    G: StyleGAN2Generator, st: TrainState, batch: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    ws = _ws(G, st, batch, device)
    return G.synthesis(ws, noise="random", noise_generator=st.rng), ws


def train_step(st: TrainState, reals: torch.Tensor) -> dict[str, float]:
    """One G step and one D step (plus lazy regularisers when due) on ``reals [B, 3, R, R]``."""
    cfg, G, D = st.cfg, st.G, st.D
    device = reals.device
    B = reals.shape[0]
    stats: dict[str, float] = {}

    # G main: non-saturating loss
    D.requires_grad_(False)
    G.requires_grad_(True)
    fake, _ = _generate(G, st, B, device)
    loss_G = F.softplus(-D(fake)).mean()
    st.opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    st.opt_G.step()
    stats["loss_G"] = float(loss_G.detach())

    # G reg: path length (lazy)
    if cfg.pl_weight > 0 and st.step % cfg.pl_interval == 0:
        pb = max(1, B // cfg.pl_batch_shrink)
        fake, ws = _generate(G, st, pb, device)
        noise = torch.randn(fake.shape, generator=st.rng).to(device) / math.sqrt(fake.shape[2] * fake.shape[3])
        (grad,) = torch.autograd.grad((fake * noise).sum(), ws, create_graph=True)
        lengths = grad.square().sum(2).mean(1).sqrt()
        st.pl_mean = st.pl_mean.lerp(lengths.mean().detach(), cfg.pl_decay)
        loss_pl = (lengths - st.pl_mean).square().mean() * cfg.pl_weight * cfg.pl_interval
        st.opt_G.zero_grad(set_to_none=True)
        loss_pl.backward()
        st.opt_G.step()
        stats["pl"] = float(lengths.mean().detach())

    # D main
    G.requires_grad_(False)
    D.requires_grad_(True)
    with torch.no_grad():
        fake, _ = _generate(G, st, B, device)
    logits_fake = D(fake)
    logits_real = D(reals)
    loss_D = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
    st.opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    st.opt_D.step()
    stats["loss_D"] = float(loss_D.detach())
    stats["D_real"] = float(logits_real.detach().mean())
    stats["D_fake"] = float(logits_fake.detach().mean())

    # D reg: R1 on reals (lazy)
    if cfg.gamma > 0 and st.step % cfg.r1_interval == 0:
        x = reals.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
        r1 = grad.square().sum(dim=[1, 2, 3])
        loss_r1 = r1.mean() * (cfg.gamma / 2) * cfg.r1_interval
        st.opt_D.zero_grad(set_to_none=True)
        loss_r1.backward()
        st.opt_D.step()
        stats["r1"] = float(r1.detach().mean())

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
    was saved: networks, optimisers, EMA, random streams). Closing the job at a yield saves a
    checkpoint first, so a cancelled run can be resumed. Returns a ``TrainResult``.
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

    def checkpoint() -> None:
        nonlocal saved_at
        st.seconds = seg_seconds0 + (time.perf_counter() - seg_start)
        atomic_save(state_payload(st), ckpt_path)
        saved_at = st.cur_nimg

    try:
        while st.cur_nimg < total:
            t0 = time.perf_counter()
            reals, _ = next(stream)
            data_seconds += time.perf_counter() - t0
            stats = train_step(st, reals.to(device))
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
            checkpoint()
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
