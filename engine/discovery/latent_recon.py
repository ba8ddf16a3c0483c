"""Latent reconstructor (Voynov & Babenko, ICML 2020): directions that are easy to tell apart.

A direction matrix ``A [dim, K]`` and a reconstructor R are trained together: R sees
``(G(z), G(z + eps * A e_k))`` and must recover ``k`` (cross-entropy) and ``eps`` (MAE, weight
lambda = 0.25), ``eps ~ U[-6, 6]`` with ``|eps| >= 0.5``, Adam 1e-4 for both. The learned
columns of A are the directions (z for DCGANs, w for StyleGAN2). The paper's metric, RCA, is
R's accuracy on fresh samples; its baselines keep A fixed — random orthonormal columns or the
first K coordinate axes — and train R alone (``baseline="random" | "coordinate"``).

Paper settings: 1e5 steps, batch 128 (SN-GAN) / 32 (BigGAN), K = 64 (MNIST) / 128 (AnimeFaces),
LeNet R for small images and ResNet-18 for large ones. The default step count here (2000) is
CPU-sized: about 30 minutes at one thread on the 64 px face DCGAN; use more on a GPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import torch

from engine.directions import DirectionSet, model_ref
from engine.discovery.reconstructor import RECONSTRUCTORS, TrainConfig, train_reconstructor
from engine.discovery.registry import register_method
from engine.discovery.shifts import LatentShifts
from engine.errors import AtlasError
from engine.jobs import Progress
from engine.params import validate_params

BASELINES = ("none", "random", "coordinate")


@dataclass(frozen=True)
class Params:
    k: int = field(
        default=64,
        metadata={"help": "number of directions K (paper: 64 on MNIST, 128 on AnimeFaces)", "min": 2, "max": 4096},
    )
    parametrization: str = field(
        default="ortho",
        metadata={
            "help": "A: linear (free matrix), unit (unit-norm columns) or ortho (orthonormal columns)",
            "choices": ("linear", "unit", "ortho"),
        },
    )
    baseline: str = field(
        default="none",
        metadata={
            "help": "none trains A; random / coordinate keep A fixed (random orthonormal / first K axes) and train only R",
            "choices": BASELINES,
        },
    )
    space: str = field(
        default="auto",
        metadata={
            "help": "latent space of the directions: auto (w for style models, else z), z or w",
            "choices": ("auto", "z", "w"),
        },
    )
    truncation: float = field(
        default=1.0, metadata={"help": "truncation psi of the sampled codes (style models)", "min": 0.0, "max": 1.0}
    )
    reconstructor: str = field(
        default="auto",
        metadata={
            "help": "R: lenet, resnet18, or auto (LeNet up to 64 px, ResNet-18 above)",
            "choices": RECONSTRUCTORS,
        },
    )
    steps: int = field(
        default=2000,
        metadata={
            "help": "training steps (paper: 1e5; 2000 is about 30 min on one CPU thread at 64 px)",
            "min": 0,
            "max": 10**9,
            "key": False,
        },
    )
    batch_size: int = field(
        default=32,
        metadata={"help": "pairs per step and rank (reference code: 32; paper: 128 for SN-GAN)", "min": 2, "max": 4096},
    )
    lam: float = field(default=0.25, metadata={"help": "weight lambda of the shift regression loss", "min": 0.0})
    eps_max: float = field(default=6.0, metadata={"help": "shifts eps ~ U[-eps_max, eps_max]", "min": 0.0})
    eps_min: float = field(
        default=0.5, metadata={"help": "smallest |eps| (sign(eps) * max(|eps|, eps_min))", "min": 0.0}
    )
    lr: float = field(default=1e-4, metadata={"help": "Adam learning rate of A and R", "min": 0.0})
    rca_every: int = field(
        default=500, metadata={"help": "steps between RCA measurements", "min": 1, "max": 10**9, "key": False}
    )
    rca_samples: int = field(
        default=1024,
        metadata={"help": "fresh pairs per RCA measurement (per rank)", "min": 1, "max": 10**7, "key": False},
    )
    checkpoint_every: int = field(
        default=100, metadata={"help": "steps between resumable checkpoints", "min": 1, "max": 10**9, "key": False}
    )
    seed: int = field(default=0, metadata={"help": "seed of the initialisation and of all sampling"})

    def __post_init__(self) -> None:
        validate_params(self)
        if self.eps_min >= self.eps_max:
            raise AtlasError(f"parameter eps_min={self.eps_min} must be smaller than eps_max={self.eps_max}")

    def train_config(self) -> TrainConfig:
        return TrainConfig.of(self)


def resolve_space(gen, space: str) -> str:
    if space == "auto":
        return "w" if gen.num_ws > 0 else "z"
    gen.check_space(space)
    return space


def initial_matrix(dim: int, K: int, kind: str, seed: int) -> torch.Tensor:
    """``[dim, K]``: the first K coordinate axes, or K random orthonormal columns (QR of a Gaussian)."""
    if K > dim:
        raise AtlasError(f"k={K} directions exceed the latent dimension {dim}; use k <= {dim}")
    if kind == "random":
        g = torch.Generator().manual_seed(seed)
        Q, R = torch.linalg.qr(torch.randn(dim, K, generator=g, dtype=torch.float64))
        return (Q * torch.sign(torch.diagonal(R))).float()
    return torch.eye(dim)[:, :K].clone()


def build_family(gen, params: Params) -> LatentShifts:
    """The direction family of a run: trainable A from the coordinate axes, or a fixed baseline."""
    space = resolve_space(gen, params.space)
    dim = gen.z_dim if space == "z" else gen.w_dim
    if params.baseline == "none":
        # the reference code also starts A at the coordinate axes (for every parametrization)
        init = initial_matrix(dim, params.k, "coordinate", params.seed)
        return LatentShifts(init, params.parametrization, space=space, psi=params.truncation)
    init = initial_matrix(dim, params.k, params.baseline, params.seed)
    return LatentShifts(init, "fixed", space=space, psi=params.truncation)


def directions_of(
    gen, params: Params, family: LatentShifts, *, rca: float | None = None, per_direction: torch.Tensor | None = None
) -> DirectionSet:
    A = family.matrix().detach().float().cpu()  # [dim, K]
    scores = per_direction.tolist() if per_direction is not None else None
    dset = DirectionSet.latent(
        "latent-recon",
        model_ref(gen),
        A.T,
        space=family.space,
        scores=scores,
        range_=(-params.eps_max, params.eps_max),
        params=asdict(params),
    )
    if rca is not None:
        dset.metrics["rca"] = rca
    dset.metrics["chance"] = 1.0 / params.k
    return dset


@register_method(
    "latent-recon",
    Params,
    kind="latent",
    resumable=True,
    summary="latent directions learned with a reconstructor (Voynov & Babenko); RCA and baselines",
)
def run(gen, params: Params, *, device="cpu", state: dict | None = None) -> Iterator[Progress]:
    """Job: train A and R; returns the K directions (columns of A) with RCA in ``metrics``.

    Direction scores are per-direction reconstructor accuracies; shifts are in latent units
    (the suggested range is the training range ±eps_max).
    """
    family = build_family(gen, params)
    result = yield from train_reconstructor(
        gen,
        family,
        params.train_config(),
        device=device,
        state=state,
        partial=lambda fam, rca: directions_of(gen, params, fam, rca=rca),
    )
    dset = directions_of(gen, params, result.family, rca=result.rca, per_direction=result.rca_per_direction)
    dset.metrics.update({"steps": result.step, "baseline": params.baseline, "history": result.history})
    return dset
