"""GANSpace: principal components of sampled latents or activations (Härkönen et al., NeurIPS 2020).

* StyleGAN2: PCA of N sampled ``w = mapping(z)``. A component ``u_k`` with variance
  ``lambda_k`` becomes the direction ``sqrt(lambda_k) * u_k``, so shifts are in units of the
  component's standard deviation; edits act on w, or on a w+ layer range ("layers").
* DCGAN (no intermediate latent): PCA of an early activation ``y = G_1(z)`` (after the first
  ConvTranspose-BatchNorm-ReLU block), then, as GANSpace does for BigGAN, the z directions are
  found by least-squares regression of z on the standardised PCA coordinates
  ``x = U^T (y - mu) / sigma``: ``M = argmin ||x M - z||``, each row of M normalised, then scaled
  by the standard deviation of z along it (about 1 for z ~ N(0, I)).

N: the paper uses 10^6 samples; the default here is 20,000, enough for stable leading components
and fast on a CPU (seconds for w, under a minute for the 8192-dimensional DCGAN activation).
Activations are regenerated from seeded batches instead of stored. Covariances up to 4096
dimensions are built exactly; larger ones use block subspace iteration with a residual test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import torch

from engine.directions import DirectionSet, model_ref
from engine.discovery.registry import register_method
from engine.discovery.sefa import parse_layer_range
from engine.discovery.shifts import stream_generator
from engine.errors import AtlasError
from engine.jobs import Progress
from engine.models.base import EARLY_ACTIVATION, MAPPING
from engine.params import validate_params

EXACT_MAX_DIM = 4096
DEFAULT_RANGE = 3.0  # in standard deviations


@dataclass(frozen=True)
class Params:
    k: int = field(default=32, metadata={"help": "number of principal components", "min": 1})
    n_samples: int = field(
        default=20_000, metadata={"help": "samples for the PCA (paper: 10^6; 20k is CPU-friendly)", "min": 2}
    )
    layers: str = field(
        default="all", metadata={"help": "StyleGAN2: w+ layer range the edits act on, e.g. all, 0-3, 4-7"}
    )
    activation: int = field(
        default=0,
        metadata={
            "help": "models without w: PCA of the early activation at this depth (0: the model's default; DCGAN: "
            "after main[:N], default 3 = after the first ConvTranspose-BN-ReLU block; ProGAN: the output of "
            "layerN, default 2; adapters: the N-th module call from the first latent layer on, default the "
            "first activation)",
            "min": 0,
        },
    )
    solver: str = field(
        default="auto",
        metadata={
            "help": "exact covariance, subspace iteration, or auto (exact up to 4096 dimensions)",
            "choices": ("auto", "exact", "subspace"),
        },
    )
    shift: float = field(
        default=0.0, metadata={"help": "suggested shift range +-shift in standard deviations (0: 3)", "min": 0.0}
    )
    batch_size: int = field(default=500, metadata={"help": "samples per generator batch", "min": 1, "key": False})
    seed: int = field(default=0, metadata={"help": "seed of the sampled latents"})

    def __post_init__(self) -> None:
        validate_params(self)


# ---- streamed PCA ---------------------------------------------------------------------------
Features = Callable[[int], torch.Tensor]  # batch index -> [b, D] float32 samples


def _batches(n: int, batch: int) -> list[int]:
    return [min(batch, n - s) for s in range(0, n, batch)]


def sample_latents(z_dim: int, n: int, seed: int, index: int, purpose: str = "ganspace") -> torch.Tensor:
    """``[n, z_dim]`` latents of batch ``index`` (reproducible; tests regenerate the same samples)."""
    return torch.randn(n, z_dim, generator=stream_generator(purpose, seed, 0, index))


def streamed_pca(
    features: Features,
    sizes: list[int],
    k: int,
    *,
    solver: str = "auto",
    seed: int = 0,
    tol: float = 1e-4,
    max_iter: int = 100,
) -> Iterator[Progress]:
    """Job: top-k principal components of the samples ``features(i)`` for the batches ``i``.

    Returns ``(mean [D], components [D, k] (unit columns), variances [k] descending, total
    variance)``, variances with the unbiased ``1 / (N - 1)`` normalisation. ``subspace``: block
    power iteration on the covariance with Rayleigh-Ritz, stopped when every wanted Ritz pair has
    ``||C v - lambda v|| <= tol * lambda_1``.
    """
    N = sum(sizes)
    nb = len(sizes)
    mean = None
    for i in range(nb):
        x = features(i).double()
        mean = x.sum(0) if mean is None else mean + x.sum(0)
        yield Progress(i + 1, 0, stage="mean")
    mean = mean / N
    D = mean.numel()
    k = min(k, D, N - 1)
    if solver == "auto":
        solver = "exact" if D <= EXACT_MAX_DIM else "subspace"
    if solver == "exact":
        C = torch.zeros(D, D, dtype=torch.float64)
        for i in range(nb):
            xc = features(i).double() - mean
            C += xc.T @ xc
            yield Progress(i + 1, nb, stage="covariance")
        C /= N - 1
        vals, vecs = torch.linalg.eigh(C)
        order = torch.argsort(vals, descending=True)[:k]
        return mean, vecs[:, order], vals[order].clamp_min(0), float(torch.trace(C))

    # Oversampling speeds convergence (rate lambda_{p+1} / lambda_k per pass). Passes regenerate the
    # samples and multiply in float32 (the memory-bound part), accumulating in float64.
    p = min(D, 2 * k + 8)
    mean32 = mean.float()
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(D, p, generator=g, dtype=torch.float64))
    total = None
    for it in range(max_iter):
        Y = torch.zeros(D, p, dtype=torch.float64)
        tr = 0.0
        for i in range(nb):
            xc = features(i) - mean32
            Y += (xc.T @ (xc @ Q.float())).double()
            if total is None:
                tr += float((xc.double() ** 2).sum())
            yield Progress(i + 1, nb, stage=f"subspace iteration {it + 1}")
        Y /= N - 1
        if total is None:
            total = tr / (N - 1)
        theta, S = torch.linalg.eigh(Q.T @ Y)
        order = torch.argsort(theta, descending=True)
        theta, S = theta[order], S[:, order]
        V = Q @ S
        resid = (Y @ S - V * theta).norm(dim=0)[:k]
        if float(resid.max()) <= tol * float(theta[0].abs().clamp_min(1e-300)):
            break
        Q, _ = torch.linalg.qr(Y)
    return mean, V[:, :k], theta[:k].clamp_min(0), float(total)


# ---- the method -----------------------------------------------------------------------------
def _style_features(gen, params: Params, device) -> Features:
    sizes = _batches(params.n_samples, params.batch_size)

    @torch.no_grad()
    def features(i: int) -> torch.Tensor:
        z = sample_latents(gen.z_dim, sizes[i], params.seed, i).to(device)
        return gen.encode(z, "w", psi=1.0).float().cpu()

    return features


def activation_depth(gen, params: Params) -> int:
    """The early-activation depth to use: ``params.activation``, or the model's default when 0."""
    lo, hi = gen.activation_depths
    depth = params.activation or gen.default_activation_depth
    if not lo <= depth <= hi:
        raise AtlasError(f"activation={depth}: model '{gen.name}' offers early activations at depths {lo}..{hi}")
    return depth


def _activation_features(gen, params: Params, device, purpose: str = "ganspace") -> Features:
    sizes = _batches(params.n_samples, params.batch_size)
    depth = activation_depth(gen, params)

    @torch.no_grad()
    def features(i: int) -> torch.Tensor:
        z = sample_latents(gen.z_dim, sizes[i], params.seed, i, purpose).to(device)
        cond = gen.condition(z.shape[0])
        return gen.early_activation(z, depth, classes=cond.classes).flatten(1).float().cpu()

    return features


def regress_to_latent(gen, params: Params, mean, comps, stdev, device) -> Iterator[Progress]:
    """Job: z directions ``[k, z_dim]`` (unit rows) and the std of z along each, by least squares.

    Solves ``min_M sum ||x_i M - z_i||^2`` over fresh samples, ``x_i`` the standardised PCA
    coordinates of ``G_1(z_i)``, through the normal equations (``k x k``, well conditioned
    because the coordinates are decorrelated and of unit variance).
    """
    sizes = _batches(params.n_samples, params.batch_size)
    k = comps.shape[1]
    XtX = torch.zeros(k, k, dtype=torch.float64)
    XtZ = torch.zeros(k, gen.z_dim, dtype=torch.float64)
    zs = []
    depth = activation_depth(gen, params)
    with torch.no_grad():
        for i, n in enumerate(sizes):
            z = sample_latents(gen.z_dim, n, params.seed, i, "ganspace-regression")
            zd = z.to(device)
            cond = gen.condition(zd.shape[0])
            y = gen.early_activation(zd, depth, classes=cond.classes).flatten(1).double().cpu()
            x = (y - mean) @ comps / stdev.clamp_min(1e-12)
            XtX += x.T @ x
            XtZ += x.T @ z.double()
            zs.append(z.double())
            yield Progress(i + 1, len(sizes), stage="regression")
    M = torch.linalg.solve(XtX, XtZ)  # [k, z_dim]
    U = M / M.norm(dim=1, keepdim=True).clamp_min(1e-12)
    lat_std = (torch.cat(zs) @ U.T).std(dim=0)
    return U, lat_std


@register_method(
    "ganspace",
    Params,
    kind="latent",
    summary="PCA of sampled w or early activations (Härkönen et al.)",
    requires=(MAPPING, EARLY_ACTIVATION),
)
def run(gen, params: Params, *, device="cpu", state=None) -> Iterator[Progress]:
    """Job: k directions scaled by their std (t in standard deviations), scores = PCA variances."""
    device = torch.device(device)
    sizes = _batches(params.n_samples, params.batch_size)
    if gen.supports(MAPPING):
        layer_range = parse_layer_range(params.layers, gen.num_ws)
        mean, comps, var, total = yield from streamed_pca(
            _style_features(gen, params, device), sizes, params.k, solver=params.solver, seed=params.seed
        )
        vectors = (comps * var.sqrt()).T  # [k, w_dim], std along u_k is sqrt(var_k)
        space = "w" if layer_range is None else "w+"
        lat_std = var.sqrt()
    elif gen.supports(EARLY_ACTIVATION):
        layer_range = None
        mean, comps, var, total = yield from streamed_pca(
            _activation_features(gen, params, device),
            sizes,
            min(params.k, gen.z_dim),
            solver=params.solver,
            seed=params.seed,
        )
        U, lat_std = yield from regress_to_latent(gen, params, mean, comps, var.sqrt(), device)
        vectors = U * lat_std.unsqueeze(1)
        space = "z"
    else:
        raise AtlasError(
            f"GANSpace needs a w space or an early activation; model '{gen.name}' ({gen.family}) offers neither"
        )
    T = params.shift or DEFAULT_RANGE
    dset = DirectionSet.latent(
        "ganspace",
        model_ref(gen),
        vectors.float(),
        space=space,
        layers=layer_range,
        scores=var.tolist(),
        range_=(-T, T),
        params=asdict(params),
    )
    for d, v, s in zip(dset.directions, var.tolist(), lat_std.tolist(), strict=True):
        d.info.update({"explained_variance_ratio": v / total if total > 0 else 0.0, "std": s})
    dset.metrics.update(
        {
            "variances": var.tolist(),
            "total_variance": total,
            "samples": params.n_samples,
            "pca_space": "w" if gen.supports(MAPPING) else gen.activation_name(activation_depth(gen, params)),
        }
    )
    return dset
