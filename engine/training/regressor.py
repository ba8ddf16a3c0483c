"""Training the factor regressor on the endless procedural stream (fresh images every step).

Inputs are lightly degraded (pixel noise, blur, a small colour jitter) so the regressor also
reads the slightly soft, noisy faces a trained generator draws, not only perfect renders.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.data.procedural import ProceduralFaces, random_batches
from engine.data.regressor import HELD_OUT_SEED, FactorRegressor, RegressorConfig, factor_scores, predict_factors
from engine.errors import BadValueError
from engine.jobs import Pacer, Progress


@dataclass(frozen=True)
class RegressorParams:
    steps: int = 4000
    batch_size: int = 128
    lr: float = 2e-3  # AdamW peak, one-cycle schedule
    weight_decay: float = 1e-4
    resolution: int = 32
    widths: tuple[int, ...] = (16, 32, 64, 128)
    seed: int = 0
    noise_max: float = 0.08  # max std of added pixel noise (images in [-1, 1])
    blur_prob: float = 0.3
    eval_every: int = 1000
    eval_n: int = 2048

    def __post_init__(self) -> None:
        """Every count within its bounds (the held-out images are kept: ``eval_n`` is bounded by memory)."""
        bounds = {"steps": 10**9, "batch_size": 4096, "eval_every": 10**9, "eval_n": 100_000}
        for name, most in bounds.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= most:
                raise BadValueError(f"regressor setting {name}={v!r}: expected a whole number from 1 to {most:,}")
        if self.resolution not in (16, 32, 64, 128):
            raise BadValueError(f"regressor setting resolution={self.resolution!r}: choose 16, 32, 64 or 128")


def degrade(images: torch.Tensor, rng: torch.Generator, noise_max: float, blur_prob: float) -> torch.Tensor:
    """Random pixel noise, 3x3 blur and per-image brightness/contrast jitter (images ``[B, 3, H, W]``)."""
    B = images.shape[0]
    blur = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, 1)
    mix = (torch.rand(B, 1, 1, 1, generator=rng) < blur_prob).float() * torch.rand(B, 1, 1, 1, generator=rng)
    x = images + mix * (blur - images)
    gain = 1 + 0.06 * (torch.rand(B, 1, 1, 1, generator=rng) * 2 - 1)
    bias = 0.04 * (torch.rand(B, 1, 1, 1, generator=rng) * 2 - 1)
    x = x * gain + bias
    sigma = noise_max * torch.rand(B, 1, 1, 1, generator=rng)
    return x + sigma * torch.randn(x.shape, generator=rng)


def train_regressor(
    params: RegressorParams = RegressorParams(), *, device: torch.device | str = "cpu", state=None
) -> Iterator[Progress]:
    """Train a ``FactorRegressor``; yields progress (loss, held-out mean R^2), returns ``(model, metrics)``.

    ``metrics`` = ``{"per_factor": {name: {"r2", "mae"}}, "mean_r2", "steps", "held_out_n"}``
    measured on ``params.eval_n`` held-out images at the end.
    """
    device = torch.device(device)
    torch.manual_seed(params.seed)
    model = FactorRegressor(RegressorConfig(params.resolution, tuple(params.widths))).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=params.lr, total_steps=params.steps, pct_start=0.1)
    stream = random_batches(
        params.batch_size, resolution=params.resolution, generator=np.random.default_rng(params.seed)
    )
    rng = torch.Generator().manual_seed(params.seed)
    # the held-out set (engine.data.regressor.held_out_set), drawn in paced pieces
    faces, parts = ProceduralFaces(params.eval_n, seed=HELD_OUT_SEED, resolution=params.resolution), []
    for sl in Pacer(1024).slices(params.eval_n):
        parts.append(faces.batch(np.arange(sl.start, sl.stop)))
        yield Progress(0, params.steps, "train", message="drawing the held-out set")
    held = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    mean_r2 = float("nan")
    for step in range(params.steps):
        model.train()
        images, factors = next(stream)
        x = degrade(images, rng, params.noise_max, params.blur_prob).to(device)
        loss = F.mse_loss(model(x), factors.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % params.eval_every == 0 or step + 1 == params.steps:
            scores = yield from _evaluate(
                model, held, Progress(step + 1, params.steps, "train", message="held-out R^2")
            )
            mean_r2 = float(np.mean([s["r2"] for s in scores.values()]))
        yield Progress(step + 1, params.steps, "train", {"loss": float(loss.detach()), "held_out_r2": mean_r2})
    model.eval()
    scores = yield from _evaluate(model, held, Progress(params.steps, params.steps, "train", message="held-out R^2"))
    metrics = {
        "per_factor": scores,
        "mean_r2": float(np.mean([s["r2"] for s in scores.values()])),
        "steps": params.steps,
        "held_out_n": params.eval_n,
    }
    return model, metrics


def _evaluate(model: FactorRegressor, held: tuple[torch.Tensor, torch.Tensor], record: Progress) -> Iterator[Progress]:
    """Job: ``engine.data.regressor.evaluate`` on ``held``, predicting in paced pieces (yielding ``record``)."""
    images, factors = held
    preds = []
    for sl in Pacer(256).slices(images.shape[0]):
        preds.append(predict_factors(images[sl], model))
        yield record
    return factor_scores(torch.cat(preds).cpu().numpy(), factors.cpu().numpy())
