"""``param-opt``: parameter-space directions learned with a reconstructor (Cherepkov et al. 2021).

K coefficient vectors ``xi_k`` (unit length) over the SVD basis of one layer's weight define the
shifts ``W -> U diag(s + t xi_k) V^T = W + t U diag(xi_k) V^T``; a reconstructor R sees
``(G_theta(z), G_{theta + t xi_k}(z))`` and predicts ``k`` (cross-entropy) and ``t`` (mean absolute
error, weight lambda). The xi_k and R are trained together (``engine.discovery.reconstructor``), so
the directions become easy to tell apart: interpretable. RCA on fresh samples is reported.

Paper settings: K = 64, lambda = 2.5e-3, batch 32, ResNet-18 R on 256 px (LeNet here up to 64
px, as the latent method does). The paper's T (3500 for StyleGAN2) is in its own weight units;
here shifts are fractions of ``||W||_F`` (``t`` in ``[-range, range]``, the trainer's
``eps in [-6, 6]`` mapped linearly onto it), with the range of ``param-svd`` by default: the
directions start at the top-K singular directions (``xi_k = e_k``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from engine.directions import ParamBasis
from engine.discovery.param_space import basis_set, resolve_layer, svd_basis
from engine.discovery.param_svd import SVD_RANGE
from engine.discovery.reconstructor import RECONSTRUCTORS, TrainConfig, train_reconstructor
from engine.discovery.registry import register_method
from engine.discovery.shifts import ShiftFamily, param_pair
from engine.errors import AtlasError
from engine.jobs import Progress, wait_for
from engine.models.base import LayerInfo
from engine.params import validate_params
from engine.selection import check_job_memory


class BasisShifts(ShiftFamily):
    """K trainable unit coefficient vectors over a weight basis: ``W + t * ||W|| * expand(xi_k)``.

    ``basis``: an ``svd`` or ``dense`` ``ParamBasis`` of rank r; ``init [K, r]`` the starting
    coefficients. The trainer's ``eps`` becomes ``t = eps * scale`` (fraction of ``||W||_F``).
    Only the deltas of the directions present in a batch are built, with gradients to ``xi``.
    """

    def __init__(self, basis: ParamBasis, init: torch.Tensor, *, scale: float, psi: float = 1.0) -> None:
        super().__init__()
        if init.dim() != 2 or init.shape[1] != basis.rank:
            raise ValueError(f"init must be [K, {basis.rank}]")
        self.K = int(init.shape[0])
        self.layer = basis.layer
        self.kind = basis.kind
        self.shape = tuple(basis.shape)
        self.weight_norm = float(basis.weight_norm)
        self.psi = float(psi)
        self.xi = nn.Parameter(init.detach().float().clone())
        for name, t in basis.tensors.items():
            # not in state_dict: checkpoints hold the trained xi, the basis is rebuilt (or stored once)
            self.register_buffer(f"basis_{name}", t.detach().float().clone(), persistent=False)
        self.register_buffer("scale", torch.full((self.K,), float(scale)))

    def coefficients(self) -> torch.Tensor:
        """``[K, r]`` unit-length rows (the paper normalises xi to avoid parameter explosion)."""
        return self.xi / self.xi.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def deltas(self, ks: torch.Tensor) -> torch.Tensor:
        """``[len(ks), *shape]`` weight shifts of directions ``ks``, each of Frobenius norm ``||W||``."""
        c = self.coefficients()[ks]
        if self.kind == "svd":
            d = torch.einsum("ir,ur,jr->uij", self.basis_U, c, self.basis_V)
        else:
            vec = self.basis_vectors
            d = c @ vec.reshape(vec.shape[0], -1)
        d = d.reshape(len(ks), -1)
        d = d * (self.weight_norm / d.norm(dim=1, keepdim=True).clamp_min(1e-12))
        return d.reshape(len(ks), *self.shape)

    def pair(self, gen, z, k, eps):
        self.check_k(k)
        uniq, inv = torch.unique(k, return_inverse=True)
        return param_pair(
            gen,
            z,
            self.layer,
            self.deltas(uniq),
            inv,
            eps * self.scale[k],
            psi=self.psi,
            mode=self.resolved_pair_mode(),
        )


@dataclass(frozen=True)
class TrainingParams:
    """The fields param-opt and param-hybrid share: K directions over a basis of one layer, trained
    with a reconstructor (``train_config``). A subclass adds its own fields after these and may
    redefine a default (a redefined field keeps its place in forms and ``--list-params``)."""

    k: int = field(default=64, metadata={"help": "number of directions K (paper: 64)", "min": 2, "max": 4096})
    layer: str = field(default="", metadata={"help": "editable layer to shift (empty: the model's default)"})
    range: float = field(
        default=SVD_RANGE,
        metadata={
            "help": "shift range +-T as a fraction of the layer's weight norm (training and suggested)",
            "min": 0.0,
        },
    )
    reconstructor: str = field(
        default="auto",
        metadata={
            "help": "R: lenet, resnet18, or auto (LeNet up to 64 px, ResNet-18 above; paper: ResNet-18)",
            "choices": RECONSTRUCTORS,
        },
    )
    steps: int = field(
        default=2000, metadata={"help": "training steps (CPU-sized default)", "min": 0, "max": 10**9, "key": False}
    )
    batch_size: int = field(default=32, metadata={"help": "pairs per step and rank (paper: 32)", "min": 2, "max": 4096})
    lam: float = field(
        default=2.5e-3, metadata={"help": "weight lambda of the shift regression (paper: 2.5e-3)", "min": 0.0}
    )
    lr: float = field(default=1e-4, metadata={"help": "Adam learning rate of the directions and R", "min": 0.0})
    truncation: float = field(
        default=1.0, metadata={"help": "truncation psi of the latents (style models)", "min": 0.0, "max": 1.0}
    )
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
        if self.range <= 0:
            raise AtlasError(f"parameter range={self.range} must be positive")

    def train_config(self) -> TrainConfig:
        return TrainConfig.of(self)


@dataclass(frozen=True)
class Params(TrainingParams):
    """param-opt: the shared training fields over the layer's SVD basis, at the paper's settings."""


def initial_coefficients(K: int, r: int, seed: int) -> torch.Tensor:
    """``[K, r]``: the first K basis vectors (top singular values / eigenvalues), random rows beyond r."""
    init = torch.zeros(K, r)
    m = min(K, r)
    init[:m, :m] = torch.eye(m)
    if K > r:
        g = torch.Generator().manual_seed(seed)
        init[r:] = torch.randn(K - r, r, generator=g)
    return init


def check_shift_memory(params, layer: LayerInfo) -> None:
    """Refuse a ``batch_size`` whose step would hold more than the memory budget: a step builds the
    weight shift of every direction in its batch, with their gradients (before any work)."""
    n = math.prod(layer.shape)
    check_job_memory("batch_size", min(params.batch_size, params.k), 3 * 4 * n, f"the shifts of {layer.name}")


def train_directions(
    gen, params, basis: ParamBasis, method: str, *, device, state=None, extra_params: dict | None = None
) -> Iterator[Progress]:
    """Job shared by param-opt and param-hybrid: train xi over ``basis``; returns the direction set."""
    cfg = params.train_config()
    family = BasisShifts(
        basis,
        initial_coefficients(params.k, basis.rank, params.seed),
        scale=params.range / cfg.eps_max,
        psi=params.truncation,
    )
    recorded = {**asdict(params), "layer": basis.layer, **(extra_params or {})}

    def to_set(fam, rca=None, per_direction=None):
        scores = per_direction.tolist() if per_direction is not None else None
        dset = basis_set(
            method,
            gen,
            basis,
            fam.coefficients().detach(),
            scores=scores,
            range_=(-params.range, params.range),
            params=recorded,
        )
        if rca is not None:
            dset.metrics["rca"] = rca
        dset.metrics["chance"] = 1.0 / params.k
        return dset

    result = yield from train_reconstructor(
        gen, family, cfg, device=device, state=state, partial=lambda fam, rca: to_set(fam, rca)
    )
    dset = to_set(result.family, result.rca, result.rca_per_direction)
    dset.metrics.update({"steps": result.step, "history": result.history})
    return dset


@register_method(
    "param-opt",
    Params,
    kind="param",
    resumable=True,
    summary="weight-shift directions over the layer's SVD basis learned with a reconstructor (Cherepkov et al.); RCA",
)
def run(gen, params: Params, *, device="cpu", state: dict | None = None) -> Iterator[Progress]:
    """Job: returns K directions (coefficients over the SVD basis); scores = per-direction RCA."""
    info = resolve_layer(gen, params.layer)
    check_shift_memory(params, info)
    basis = yield from wait_for(svd_basis, gen, info.name, record=Progress(0, params.steps, stage="svd"))
    return (yield from train_directions(gen, params, basis, "param-opt", device=device, state=state))
