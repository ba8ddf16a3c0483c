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
Each seeded batch is computed in pieces sized by time (``engine.jobs.Pacer``) with a yield after
each, so the samples are the same whatever the pieces and a slow model still yields every second.
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
from engine.jobs import Pacer, Progress, wait_for
from engine.models.base import EARLY_ACTIVATION, MAPPING
from engine.params import validate_params

EXACT_MAX_DIM = 4096
DEFAULT_RANGE = 3.0  # in standard deviations


@dataclass(frozen=True)
class Params:
    k: int = field(default=32, metadata={"help": "number of principal components", "min": 1, "max": 4096})
    n_samples: int = field(
        default=20_000,
        metadata={"help": "samples for the PCA (paper: 10^6; 20k is CPU-friendly)", "min": 2, "max": 10**8},
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
            "max": 1000,
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
    batch_size: int = field(
        default=500, metadata={"help": "samples per generator batch", "min": 1, "max": 10_000, "key": False}
    )
    seed: int = field(default=0, metadata={"help": "seed of the sampled latents"})

    def __post_init__(self) -> None:
        validate_params(self)


# ---- streamed PCA ---------------------------------------------------------------------------
Features = Callable[[int], Iterator[torch.Tensor]]  # batch index -> its samples in pieces, each [n, D] float32


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
    """Job: top-k principal components of the samples ``features(i)`` (in pieces) for the batches ``i``.

    Returns ``(mean [D], components [D, k] (unit columns), variances [k] descending, total
    variance)``, variances with the unbiased ``1 / (N - 1)`` normalisation. ``subspace``: block
    power iteration on the covariance with Rayleigh-Ritz, stopped when every wanted Ritz pair has
    ``||C v - lambda v|| <= tol * lambda_1``.
    """
    N = sum(sizes)
    nb = len(sizes)
    mean = None
    for i in range(nb):
        for x in features(i):
            x = x.double()
            mean = x.sum(0) if mean is None else mean + x.sum(0)
            yield Progress(i, nb, stage="mean")
    mean = mean / N
    D = mean.numel()
    k = min(k, D, N - 1)
    if solver == "auto":
        solver = "exact" if D <= EXACT_MAX_DIM else "subspace"
    if solver == "exact":
        C = torch.zeros(D, D, dtype=torch.float64)
        for i in range(nb):
            for x in features(i):
                xc = x.double() - mean
                C += xc.T @ xc
                yield Progress(i, nb, stage="covariance")
        C /= N - 1
        # one dense eigendecomposition (seconds at 4096 dimensions): on a helper thread
        vals, vecs = yield from wait_for(torch.linalg.eigh, C, record=Progress(nb, nb, stage="covariance"))
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
            for x in features(i):
                xc = x - mean32
                Y += (xc.T @ (xc @ Q.float())).double()
                if total is None:
                    tr += float((xc.double() ** 2).sum())
                yield Progress(i, nb, stage=f"subspace iteration {it + 1}")
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
def _style_features(gen, params: Params, device, pacer: Pacer) -> Features:
    sizes = _batches(params.n_samples, params.batch_size)

    def features(i: int) -> Iterator[torch.Tensor]:
        z = sample_latents(gen.z_dim, sizes[i], params.seed, i)
        for sl in pacer.slices(sizes[i]):
            with torch.no_grad():
                yield gen.encode(z[sl].to(device), "w", psi=1.0).float().cpu()

    return features


def activation_depth(gen, params: Params) -> int:
    """The early-activation depth to use: ``params.activation``, or the model's default when 0."""
    lo, hi = gen.activation_depths
    depth = params.activation or gen.default_activation_depth
    if not lo <= depth <= hi:
        raise AtlasError(f"activation={depth}: model '{gen.name}' offers early activations at depths {lo}..{hi}")
    return depth


def _activation_features(gen, params: Params, device, pacer: Pacer, purpose: str = "ganspace") -> Features:
    sizes = _batches(params.n_samples, params.batch_size)
    depth = activation_depth(gen, params)

    def features(i: int) -> Iterator[torch.Tensor]:
        z = sample_latents(gen.z_dim, sizes[i], params.seed, i, purpose).to(device)
        classes = gen.condition(z.shape[0]).classes  # each row's class, as in the whole batch
        for sl in pacer.slices(sizes[i]):
            with torch.no_grad():
                cls = None if classes is None else classes[sl]
                yield gen.early_activation(z[sl], depth, classes=cls).flatten(1).float().cpu()

    return features


def regress_to_latent(
    gen, params: Params, mean, comps, stdev, device, pacer: Pacer | None = None
) -> Iterator[Progress]:
    """Job: z directions ``[k, z_dim]`` (unit rows) and the std of z along each, by least squares.

    Solves ``min_M sum ||x_i M - z_i||^2`` over fresh samples, ``x_i`` the standardised PCA
    coordinates of ``G_1(z_i)``, through the normal equations (``k x k``, well conditioned
    because the coordinates are decorrelated and of unit variance).
    """
    sizes = _batches(params.n_samples, params.batch_size)
    k = comps.shape[1]
    XtX = torch.zeros(k, k, dtype=torch.float64)
    XtZ = torch.zeros(k, gen.z_dim, dtype=torch.float64)
    # the std of z along each direction, from the moments of z (no sample is kept)
    z_sum = torch.zeros(gen.z_dim, dtype=torch.float64)
    z_outer = torch.zeros(gen.z_dim, gen.z_dim, dtype=torch.float64)
    pacer = pacer or Pacer(params.batch_size, device=device)
    features = _activation_features(gen, params, device, pacer, "ganspace-regression")
    for i, n in enumerate(sizes):
        z = sample_latents(gen.z_dim, n, params.seed, i, "ganspace-regression").double()
        start = 0
        for y in features(i):
            x = (y.double() - mean) @ comps / stdev.clamp_min(1e-12)
            XtX += x.T @ x
            XtZ += x.T @ z[start : start + y.shape[0]]
            start += y.shape[0]
            yield Progress(i, len(sizes), stage="regression")
        z_sum += z.sum(0)
        z_outer += z.T @ z
    M = torch.linalg.solve(XtX, XtZ)  # [k, z_dim]
    U = M / M.norm(dim=1, keepdim=True).clamp_min(1e-12)
    N = sum(sizes)
    cov = (z_outer - torch.outer(z_sum, z_sum) / N) / max(N - 1, 1)
    lat_std = ((U @ cov) * U).sum(1).clamp_min(0).sqrt()  # sqrt(u^T Cov(z) u), as the std of z @ u
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
    pacer = Pacer(params.batch_size, device=device)
    if gen.supports(MAPPING):
        layer_range = parse_layer_range(params.layers, gen.num_ws)
        mean, comps, var, total = yield from streamed_pca(
            _style_features(gen, params, device, pacer), sizes, params.k, solver=params.solver, seed=params.seed
        )
        vectors = (comps * var.sqrt()).T  # [k, w_dim], std along u_k is sqrt(var_k)
        space = "w" if layer_range is None else "w+"
        lat_std = var.sqrt()
    elif gen.supports(EARLY_ACTIVATION):
        layer_range = None
        mean, comps, var, total = yield from streamed_pca(
            _activation_features(gen, params, device, pacer),
            sizes,
            min(params.k, gen.z_dim),
            solver=params.solver,
            seed=params.seed,
        )
        U, lat_std = yield from regress_to_latent(gen, params, mean, comps, var.sqrt(), device, pacer)
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
