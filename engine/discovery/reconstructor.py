"""The reconstructor R and its trainer, shared by every reconstructor-based method.

Voynov & Babenko (2020): R sees the pair ``(G(z), G_shifted(z))`` concatenated on channels and
predicts which of the K shifts was applied (logits) and how far (a scalar). The loss is
``CE(logits, k) + lambda * |eps_hat - eps|`` with ``eps ~ U[-6, 6]``, ``|eps| >= 0.5``; R and the
shift family's parameters (if any) are trained with Adam at 1e-4. The latent method
(``latent_recon``) trains a direction matrix this way; the parameter-space methods train
coefficients over a weight basis; the RCA evaluator trains R alone on fixed directions.

Using it::

    family = LatentShifts(init, "ortho")                 # any engine.discovery.shifts.ShiftFamily
    cfg = TrainConfig(steps=2000, lam=0.25)
    result = yield from train_reconstructor(gen, family, cfg, device=dev, state=resume_state)
    result.rca, result.family, result.reconstructor

``train_reconstructor`` is a job: it yields ``Progress`` every step (metrics ``loss``, ``ce``,
``mae``, ``acc`` and, every ``rca_every`` steps, ``rca``), a resumable ``state`` every
``checkpoint_every`` steps and at the end (and a ``snapshot`` at every step, for a state on
cancel), and an optional ``partial`` result at RCA points.
Under ``torchrun`` it trains data-parallel as DistributedDataParallel does: ``batch_size`` is per
rank, each rank draws its own batches, every rank starts from rank 0's weights, gradients are
averaged after each step's backward passes, R's BatchNorm statistics follow rank 0's, and RCA is
pooled over the ranks' samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.discovery.checkpoint import cpu_snapshot
from engine.discovery.distributed import all_reduce_sum, average_gradients, broadcast_from_main, dist_info
from engine.discovery.shifts import ShiftFamily, latent_classes, sample_shift_batch, stream_generator
from engine.errors import AtlasError, describe_exception
from engine.jobs import PASS_SECONDS, Pacer, Progress
from engine.models.base import Generator

RECONSTRUCTORS = ("auto", "lenet", "resnet18")
PARTIAL_EVERY = 10  # steps between partial results (the browser follows the directions as they train)


# ---- networks -----------------------------------------------------------------------------
class Reconstructor(nn.Module):
    """``R(x0, x1) -> (logits [B, K], eps_hat [B])`` for image pairs ``[B, C, H, W]``.

    The pair is concatenated on channels (2C inputs); images wider than ``max_input`` are
    area-downscaled first (Cherepkov et al. feed 256 px to their ResNet-18).
    """

    def __init__(self, K: int, max_input: int = 256) -> None:
        super().__init__()
        self.K = K
        self.max_input = max_input

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([x0, x1], dim=1)
        side = max(x.shape[-2:])
        if side > self.max_input:
            x = F.interpolate(x, scale_factor=self.max_input / side, mode="area")
        f = self.features(x)
        return self.logits(f), self.shift(f).squeeze(1)


def _head(width_in: int, width_hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(width_in, width_hidden), nn.BatchNorm1d(width_hidden), nn.ReLU(), nn.Linear(width_hidden, out)
    )


class LeNetReconstructor(Reconstructor):
    """LeNet-5 geometry (6-16-120 channels, 84 hidden units, times ``width``) with two heads.

    As in Voynov & Babenko's LeNet: unpadded 5x5 convolutions, 2x2 max-pooling after the first
    two, BatchNorm and ReLU after each, the third conv's map averaged over space. At 32 px (the
    paper's MNIST) the third conv sees the whole 5x5 map and outputs 1x1, so the features keep
    *where* the pair differs; padded convolutions (7x7 or 8x8 maps averaged) throw that away and
    cost 4x more. Images smaller than ``MIN_SIDE`` are resized up to it (bilinear). The body runs
    in channels-last layout: on the CPU the backward pass of its thin first convolution (the
    gradient the direction matrix needs) is about twice as fast (``bench/bench_reconstructor.py``).
    """

    MIN_SIDE = 32

    def __init__(self, K: int, channels: int = 3, width: int = 1, max_input: int = 256) -> None:
        super().__init__(K, max_input)
        c1, c2, c3, h = 6 * width, 16 * width, 120 * width, 84 * width

        def block(cin, cout, pool):
            layers = [nn.Conv2d(cin, cout, 5), nn.BatchNorm2d(cout), nn.ReLU()]
            return layers + ([nn.MaxPool2d(2)] if pool else [])

        self.body = nn.Sequential(*block(2 * channels, c1, True), *block(c1, c2, True), *block(c2, c3, False))
        self.body.to(memory_format=torch.channels_last)
        self.logits = _head(c3, h, K)
        self.shift = _head(c3, h, 1)

    def features(self, x):
        if min(x.shape[-2:]) < self.MIN_SIDE:
            x = F.interpolate(x, size=(self.MIN_SIDE, self.MIN_SIDE), mode="bilinear", align_corners=False)
        return self.body(x.contiguous(memory_format=torch.channels_last)).mean(dim=(-2, -1))


class ResNetReconstructor(Reconstructor):
    """torchvision ResNet-18 (random init) taking 2C channels, with the two heads on its 512 features."""

    def __init__(self, K: int, channels: int = 3, max_input: int = 256) -> None:
        super().__init__(K, max_input)
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        net.conv1 = nn.Conv2d(2 * channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.fc = nn.Identity()
        self.body = net
        self.logits = nn.Linear(512, K)
        self.shift = nn.Linear(512, 1)

    def features(self, x):
        return self.body(x)


def build_reconstructor(
    kind: str, K: int, *, channels: int, resolution: int, width: int = 1, max_input: int = 256
) -> Reconstructor:
    """``kind``: ``lenet``, ``resnet18`` or ``auto`` (LeNet up to 64 px, as the paper does for
    MNIST / AnimeFaces, ResNet-18 above)."""
    if kind not in RECONSTRUCTORS:
        raise AtlasError(f"unknown reconstructor '{kind}'; choose one of {', '.join(RECONSTRUCTORS)}")
    if kind == "auto":
        kind = "lenet" if resolution <= 64 else "resnet18"
    if kind == "lenet":
        return LeNetReconstructor(K, channels, width, max_input)
    return ResNetReconstructor(K, channels, max_input)


# ---- training -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """Trainer settings; defaults are Voynov & Babenko's where they transfer.

    ``steps``: gradient steps (paper: 1e5; CPU-sized default). ``batch_size`` per rank (the
    reference code's 32). ``lam``: weight of the shift regression (0.25). ``eps_max`` /
    ``eps_min``: the shift distribution. ``lr`` / ``lr_family``: Adam rates of R and of the
    family. ``rca_every`` / ``rca_samples``: how often and on how many fresh pairs RCA is
    measured. ``checkpoint_every``: steps between resumable states. ``seed``: initialisation and
    all random streams. ``pass_seconds``: what each paced piece of a step or an RCA measurement
    aims to take (``engine.jobs.Pacer``); ``None`` renders whole batches (no yield within them).
    """

    steps: int = 2000
    batch_size: int = 32
    lam: float = 0.25
    eps_max: float = 6.0
    eps_min: float = 0.5
    lr: float = 1e-4
    lr_family: float = 1e-4
    reconstructor: str = "auto"
    width: int = 1
    max_input: int = 256
    rca_every: int = 500
    rca_samples: int = 1024
    rca_batch: int = 64
    checkpoint_every: int = 200
    seed: int = 0
    pass_seconds: float | None = PASS_SECONDS  # None: a whole batch per pass, no yield within a step

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "rca_every", "rca_samples", "rca_batch", "checkpoint_every", "width"):
            if getattr(self, name) < (0 if name == "steps" else 1):
                raise AtlasError(f"trainer setting {name}={getattr(self, name)} must be positive")
        if not 0 <= self.eps_min < self.eps_max:
            raise AtlasError(
                f"shift range needs 0 <= eps_min < eps_max, got eps_min={self.eps_min}, eps_max={self.eps_max}"
            )
        if self.reconstructor not in RECONSTRUCTORS:
            raise AtlasError(f"unknown reconstructor '{self.reconstructor}'; choose one of {', '.join(RECONSTRUCTORS)}")
        if self.pass_seconds is not None and not self.pass_seconds > 0:
            raise AtlasError(f"trainer setting pass_seconds={self.pass_seconds} must be positive (or None)")

    @classmethod
    def of(cls, params: Any) -> TrainConfig:
        """The settings a method's ``Params`` gives: every field named as one of ours (``steps``,
        ``batch_size``, ``lam``, ``lr``, ``rca_every``, ...), and ``lr_family = lr`` (one Adam rate for
        R and the directions, as the reference code)."""
        ours = {f.name for f in dataclasses.fields(cls)}
        values = {f.name: getattr(params, f.name) for f in dataclasses.fields(params) if f.name in ours}
        values.setdefault("lr_family", values.get("lr", cls.lr_family))
        return cls(**values)


@dataclass
class ReconResult:
    """What training returns: the trained family and R, the final RCA and the curves."""

    family: ShiftFamily
    reconstructor: Reconstructor
    step: int
    rca: float
    rca_per_direction: torch.Tensor  # [K] accuracy of each direction on fresh samples
    history: dict[str, list] = field(default_factory=dict)


@torch.no_grad()
def evaluate_rca(
    gen: Generator, family: ShiftFamily, R: Reconstructor, cfg: TrainConfig, *, device: torch.device
) -> tuple[float, torch.Tensor]:
    """Reconstructor classification accuracy on ``cfg.rca_samples`` fresh pairs (per rank).

    Returns (RCA in [0, 1], per-direction accuracy ``[K]``). The pairs come from the "rca"
    stream, disjoint from training batches and the same at every evaluation of a run.
    ``evaluate_rca_job`` is the same as a job.
    """
    job = evaluate_rca_job(gen, family, R, cfg, device=torch.device(device))
    while True:
        try:
            next(job)
        except StopIteration as stop:
            return stop.value


def evaluate_rca_job(
    gen: Generator,
    family: ShiftFamily,
    R: Reconstructor,
    cfg: TrainConfig,
    *,
    device: torch.device,
    pacer: Pacer | None = None,
) -> Iterator[int]:
    """Job: ``evaluate_rca``, yielding the number of pairs done after every paced piece.

    Batch i of ``cfg.rca_batch`` pairs is drawn from the "rca" stream as a whole and rendered in
    pieces sized by ``pacer`` (R is in eval mode: a pair's prediction does not depend on the
    others), so the pairs and the result are those of the unpaced evaluation.
    """
    info = dist_info()
    pacer = pacer or Pacer(cfg.rca_batch, seconds=cfg.pass_seconds, device=device)
    K = family.K
    correct = torch.zeros(K, dtype=torch.float64, device=device)
    count = torch.zeros(K, dtype=torch.float64, device=device)
    was_training = R.training
    R.eval()
    done = 0
    try:
        n_batches = -(-cfg.rca_samples // cfg.rca_batch)
        for i in range(n_batches):
            g = stream_generator("rca", cfg.seed, info.rank, i)
            n = min(cfg.rca_batch, cfg.rca_samples - i * cfg.rca_batch)
            z, k, eps = (t.to(device) for t in sample_shift_batch(g, n, gen.z_dim, K, cfg.eps_max, cfg.eps_min))
            classes = latent_classes(gen, z)
            for sl in pacer.slices(n):
                with torch.no_grad():
                    logits, _ = R(*family.pair(_rows(gen, classes, sl), z[sl], k[sl], eps[sl]))
                hit = (logits.argmax(dim=1) == k[sl]).double()
                correct.index_add_(0, k[sl], hit)
                count.index_add_(0, k[sl], torch.ones_like(hit))
                done += sl.stop - sl.start
                yield done
    finally:
        R.train(was_training)
    correct, count = all_reduce_sum(correct), all_reduce_sum(count)
    rca = float(correct.sum() / count.sum().clamp_min(1))
    return rca, (correct / count.clamp_min(1)).float().cpu()


def _rows(gen: Generator, classes: torch.Tensor | None, sl: slice) -> Generator:
    """``gen`` for rows ``sl`` of a batch whose rows have ``classes`` (class-conditional models:
    a view bound to exactly those rows' classes, so a piece of a batch keeps each row's class)."""
    return gen if classes is None else gen.conditioned(classes=classes[sl].cpu())


def _paced_step(
    gen: Generator,
    family: ShiftFamily,
    R: Reconstructor,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    cfg: TrainConfig,
    pacer: Pacer,
    before_r: Callable[[], None],
) -> Iterator[None]:
    """Job: the gradients of one step's loss on ``batch = (z, k, eps)``, in paced pieces.

    The generator side (the expensive part) runs in pieces of ``pacer`` size, yielding between
    them: first the pieces' forward passes (their graphs kept), then R's forward and backward on
    the whole batch at once (its BatchNorm sees the whole batch, as in one big step), then the
    pieces' backward passes with their slices of the gradient R sends back to the images. The
    gradients are those of the one-batch step (to rounding: sums in another order). Returns
    ``(logits, ce, mae, loss)``; the optimiser steps are the caller's. ``before_r()`` runs just
    before R's forward, which updates R's BatchNorm statistics.
    """
    z, k, eps = batch
    B = z.shape[0]
    classes = latent_classes(gen, z)
    pieces: list[tuple[slice, torch.Tensor | None, torch.Tensor | None, float]] = []
    start = 0
    while start < B:
        sl = slice(start, start + pacer.take(B - start))
        t0 = pacer.clock()
        x0, x1 = family.pair(_rows(gen, classes, sl), z[sl], k[sl], eps[sl])
        pieces.append((sl, x0, x1, pacer.elapsed(t0)))
        start = sl.stop
        yield
    X0 = torch.cat([p[1].detach() for p in pieces]).requires_grad_(any(p[1].requires_grad for p in pieces))
    X1 = torch.cat([p[2].detach() for p in pieces]).requires_grad_(any(p[2].requires_grad for p in pieces))
    before_r()
    logits, eps_hat = R(X0, X1)
    ce = F.cross_entropy(logits, k)
    mae = (eps_hat - eps).abs().mean()
    loss = ce + cfg.lam * mae
    loss.backward()
    for i, (sl, x0, x1, forward_s) in enumerate(pieces):
        t0 = pacer.clock()
        outs = [(x, X.grad[sl]) for x, X in ((x0, X0), (x1, X1)) if x.requires_grad]
        if outs:
            torch.autograd.backward([o for o, _ in outs], [g for _, g in outs])
        pacer.record(sl.stop - sl.start, forward_s + pacer.elapsed(t0))
        pieces[i] = (sl, None, None, 0.0)  # the piece's graph is freed
        if outs:
            yield
    return logits, ce, mae, loss


def train_reconstructor(
    gen: Generator,
    family: ShiftFamily,
    cfg: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    state: dict | None = None,
    partial: Callable[[ShiftFamily, float | None], Any] | None = None,
    stage: str = "train",
) -> Iterator[Progress]:
    """Job: train R (and the family's parameters, if it has any) on ``family``'s shifts of ``gen``.

    ``state`` continues a run from a state this job yielded earlier (same family type and
    config). ``partial(family, rca)`` builds the partial result shown while training: before the
    first step, every ``PARTIAL_EVERY`` steps and at every RCA measurement (``rca`` is the latest
    one, ``None`` before the first).

    Besides the record of every step, the job yields within steps and RCA measurements after
    every paced piece of images (``engine.jobs.Pacer``, about every ``PASS_SECONDS``), so a
    cancel never waits for a whole batch of a slow generator. Those records carry no metrics;
    their ``snapshot`` is the state as of the last whole step. The pieces' size is kept in the
    state (``micro_batch``), so a resumed run groups its images as the uninterrupted run did.
    Returns a ``ReconResult``.
    """
    device = torch.device(device)
    # gradients flow through G to the family's parameters, never into G's own: train on a copy
    # sharing its weights, so the generator other threads render from keeps its flags and grads
    gen = gen.detached()
    info = dist_info()
    K = family.K
    if K < 2:
        raise AtlasError(f"a reconstructor needs at least 2 directions to tell apart, got K={K}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        R = build_reconstructor(
            cfg.reconstructor,
            K,
            channels=gen.img_channels,
            resolution=gen.resolution,
            width=cfg.width,
            max_input=cfg.max_input,
        )
    R.to(device).train()
    family.to(device).train()
    opt_R = torch.optim.Adam(R.parameters(), lr=cfg.lr)
    fam_params = [p for p in family.parameters() if p.requires_grad]
    opt_F = torch.optim.Adam(fam_params, lr=cfg.lr_family) if fam_params else None

    step = 0
    history: dict[str, list] = {"step": [], "loss": [], "acc": [], "rca": []}
    pacer = Pacer(cfg.batch_size, seconds=cfg.pass_seconds, device=device)
    rca_pacer = Pacer(cfg.rca_batch, seconds=cfg.pass_seconds, device=device)
    rca_pending = False  # the step is done, its RCA measurement is not
    if state is not None:
        try:
            family.load_state_dict(state["family"])
            R.load_state_dict(state["reconstructor"])
            opt_R.load_state_dict(state["opt_reconstructor"])
            if opt_F is not None:
                opt_F.load_state_dict(state["opt_family"])
            step = int(state["step"])
            history = {k: list(v) for k, v in state["history"].items()}
            if cfg.pass_seconds is not None:
                pacer.size = max(1, min(cfg.batch_size, int(state.get("micro_batch", pacer.size))))
            rca_pending = bool(state.get("rca_pending", False))
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise AtlasError(
                f"the saved state does not fit this run ({describe_exception(exc)}); start it again without resuming"
            ) from None
    if info.active:  # every rank starts from rank 0's weights (as DistributedDataParallel does)
        broadcast_from_main([*family.state_dict().values(), *R.state_dict().values()])

    step_plan = pacer.size  # the piece size the current step started with
    before_step: dict[str, torch.Tensor] | None = None  # R's buffers before a step's forward updated them

    def keep_buffers() -> None:
        nonlocal before_step
        before_step = {name: b.detach().clone() for name, b in R.named_buffers()}
        if info.active:  # R's BatchNorm statistics follow rank 0's (DistributedDataParallel's default)
            broadcast_from_main(list(R.buffers()))

    def snapshot(*, pending: bool = False) -> dict:
        """The state as of the last whole step (R's statistics from before a step in progress)."""
        r_state = R.state_dict()
        if before_step is not None:
            r_state = {**r_state, **before_step}
        out = cpu_snapshot(
            {
                "step": step,
                "family": family.state_dict(),
                "reconstructor": r_state,
                "opt_reconstructor": opt_R.state_dict(),
                "opt_family": opt_F.state_dict() if opt_F is not None else None,
                "history": history,
                "micro_batch": step_plan,
            }
        )
        if pending:
            out["rca_pending"] = True
        return out

    def pending_snapshot() -> dict:
        return snapshot(pending=True)

    def measure_rca() -> Iterator[Progress]:
        job = evaluate_rca_job(gen, family, R, cfg, device=device, pacer=rca_pacer)
        while True:
            try:
                done = next(job)
            except StopIteration as stop:
                return stop.value
            yield Progress(
                step,
                cfg.steps,
                stage=stage,
                message=f"RCA: {done}/{cfg.rca_samples} pairs",
                snapshot=pending_snapshot if info.is_main else None,
            )

    window: list[tuple[float, float, float, float]] = []
    last_rca: float | None = history["rca"][-1][1] if history["rca"] else None
    rca_dirs = None
    if partial is not None and step < cfg.steps:
        # the directions exist before the first step: show them at once, RCA comes later
        yield Progress(step, cfg.steps, stage=stage, partial=partial(family, last_rca))
    if rca_pending:  # resumed during the measurement after step `step`: take it now
        last_rca, rca_dirs = yield from measure_rca()
        history["rca"].append([step, last_rca])
        yield Progress(
            step,
            cfg.steps,
            stage=stage,
            metrics={"rca": last_rca},
            partial=partial(family, last_rca) if partial is not None else None,
            state=snapshot() if info.is_main else None,
            snapshot=snapshot if info.is_main else None,
        )
    while step < cfg.steps:
        g = stream_generator("train", cfg.seed, info.rank, step)
        batch = tuple(
            t.to(device) for t in sample_shift_batch(g, cfg.batch_size, gen.z_dim, K, cfg.eps_max, cfg.eps_min)
        )
        opt_R.zero_grad(set_to_none=True)
        if opt_F is not None:
            opt_F.zero_grad(set_to_none=True)
        step_plan, before_step = pacer.size, None
        inner = _paced_step(gen, family, R, batch, cfg, pacer, keep_buffers)
        while True:
            try:
                next(inner)
            except StopIteration as stop:
                logits, ce, mae, loss = stop.value
                break
            yield Progress(
                step,
                cfg.steps,
                stage=stage,
                message=f"step {step + 1}",
                snapshot=snapshot if info.is_main else None,
            )
        if info.active:
            average_gradients([*R.parameters(), *fam_params])
        opt_R.step()
        if opt_F is not None:
            opt_F.step()
        step += 1
        step_plan, before_step = pacer.size, None
        vals = (
            float(loss.detach()),
            float(ce.detach()),
            float(mae.detach()),
            float((logits.detach().argmax(dim=1) == batch[1]).float().mean()),
        )
        window.append(vals)
        if step % 10 == 0 or step == cfg.steps:
            history["step"].append(step)
            history["loss"].append(sum(w[0] for w in window) / len(window))
            history["acc"].append(sum(w[3] for w in window) / len(window))
            window = []
        metrics = dict(zip(("loss", "ce", "mae", "acc"), vals, strict=True))
        measure = step % cfg.rca_every == 0 or step == cfg.steps
        if measure:
            last_rca, rca_dirs = yield from measure_rca()
            history["rca"].append([step, last_rca])
        part = None
        if partial is not None and (measure or step % PARTIAL_EVERY == 0):
            part = partial(family, last_rca)
        if last_rca is not None:
            metrics["rca"] = last_rca
        want_state = info.is_main and (step % cfg.checkpoint_every == 0 or step == cfg.steps)
        yield Progress(
            step,
            cfg.steps,
            stage=stage,
            metrics=metrics,
            partial=part,
            state=snapshot() if want_state else None,
            snapshot=snapshot if info.is_main else None,
        )
    if rca_dirs is None:  # resumed a finished run, or zero steps: measure now
        last_rca, rca_dirs = yield from measure_rca()
    family.eval()
    R.eval()
    return ReconResult(family, R, step, float(last_rca), rca_dirs, history)
