"""Reconstructor classification accuracy (RCA) of any direction set.

RCA (Voynov & Babenko) measures how distinguishable K directions are: a fresh reconstructor R
is trained to tell which direction (and how far) moved an image, with the directions held
fixed, and its accuracy on fresh samples is reported. Chance is 1/K. The same protocol gives
the paper's baselines (random and coordinate directions) and scores any saved set, latent or
parameter-space (``engine.discovery.shifts.family_from_set`` probes each direction over its
suggested range).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from engine.directions import DirectionSet
from engine.discovery.reconstructor import TrainConfig, evaluate_rca, train_reconstructor
from engine.discovery.shifts import family_from_set
from engine.jobs import Progress

__all__ = ["RcaReport", "evaluate_rca", "rca_of_set"]


@dataclass
class RcaReport:
    rca: float
    per_direction: torch.Tensor  # [K]
    K: int
    steps: int

    @property
    def chance(self) -> float:
        return 1.0 / self.K


def rca_of_set(
    gen,
    dset: DirectionSet,
    cfg: TrainConfig = TrainConfig(),
    *,
    device="cpu",
    psi: float = 1.0,
    state: dict | None = None,
) -> Iterator[Progress]:
    """Job: train a fresh R on the fixed directions of ``dset`` and return an ``RcaReport``."""
    family = family_from_set(gen, dset, eps_max=cfg.eps_max, psi=psi)
    result = yield from train_reconstructor(gen, family, cfg, device=device, state=state, stage="rca")
    return RcaReport(result.rca, result.rca_per_direction, family.K, result.step)
