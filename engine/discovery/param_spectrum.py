"""``param-spectrum``: top Hessian eigenvectors of the perceptual change (Cherepkov et al. 2021).

Directions are the top-K eigenvectors of ``H = nabla_a^2 E_z d2(G_theta(z), G_{theta+a}(z))`` at
``a = 0``, ``a`` a shift of one layer's full weight and ``d2`` LPIPS (``engine.distances``): the
shifts that change images the most, to second order. The expectation is over a fixed minibatch
of ``samples`` latents (paper: 512; the default 64 is sized for a CPU: each latent costs one
forward-mode and one reverse pass per direction per iteration; use 512 on a GPU).

Where the reference runs power iteration on finite differences of gradients (eps 0.1, 20
iterations per vector, one vector at a time with deflation), this uses exact Hessian-vector
products (``engine.discovery.hessian``: Gauss-Newton form, exact at ``a = 0``) and a block
LOBPCG (``engine.discovery.eigensolver``) that converges all K eigenpairs together; ``bench/
bench_spectrum.py`` compares the two. The set's metrics hold the eigenvalues and each pair's
residual ``||H v - lambda v||`` (recomputed with fresh products at the end), absolute and
relative to ``lambda_1`` and to its own ``lambda``.

Units: eigenvalues are per unit squared weight shift (``d2 ~ lambda ||a||^2``); a direction
shifted by ``t`` (fraction of ``||W||_F``) changes images by about ``lambda ||W||^2 t^2``, which
each direction records as ``info["d2_per_t2"]``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import torch

from engine.discovery.eigensolver import EigResult, EigStep, Phase, lobpcg
from engine.discovery.hessian import LayerHessian, ProductProgress
from engine.discovery.param_space import basis_set, dense_basis, resolve_layer
from engine.discovery.registry import register_method
from engine.distances import DISTANCES, load_distance
from engine.errors import AtlasError
from engine.jobs import Progress, relabel, wait_for
from engine.params import validate_params
from engine.selection import check_job_memory

# Default suggested range, in fractions of ||W||_F; chosen on digiface-dcgan-64 grids (README).
SPECTRUM_RANGE = 0.03


@dataclass(frozen=True)
class Params:
    k: int = field(default=16, metadata={"help": "number of eigenvectors K (paper: 64)", "min": 1, "max": 4096})
    layer: str = field(default="", metadata={"help": "editable layer to shift (empty: the model's default)"})
    distance: str = field(
        default="lpips-alex",
        metadata={
            "help": "image distance d2: LPIPS (needs the torchvision backbone file) or pixel (mean squared "
            "pixel difference, not perceptual)",
            "choices": DISTANCES,
        },
    )
    samples: int = field(
        default=64,
        metadata={
            "help": "latents in the fixed minibatch of the expectation (paper: 512; 64 is CPU-sized)",
            "min": 1,
            "max": 100_000,
        },
    )
    tol: float = field(
        default=1e-3, metadata={"help": "stop when every ||Hv - lambda v|| / lambda_1 is below this", "min": 0.0}
    )
    steps: int = field(default=40, metadata={"help": "most block iterations", "min": 1, "max": 10_000, "key": False})
    guard: int = field(
        default=4,
        metadata={
            "help": "extra vectors iterated beside the K wanted (speeds up the last ones)",
            "min": 0,
            "max": 4096,
        },
    )
    warm_samples: int = field(
        default=16,
        metadata={
            "help": "start from warm_steps iterations on this many of the latents (cheaper products; "
            "0 or >= samples: from a random block)",
            "min": 0,
            "max": 100_000,
            "key": False,
        },
    )
    warm_steps: int = field(
        default=5,
        metadata={"help": "iterations of the warm start", "min": 0, "max": 1000, "key": False},
    )
    distance_size: int = field(
        default=64,
        metadata={
            "help": "images larger than this are downsampled before the distance (reference: 64)",
            "min": 16,
            "max": 1024,
        },
    )
    chunk: int = field(
        default=128, metadata={"help": "images per batched pass (memory)", "min": 1, "max": 4096, "key": False}
    )
    truncation: float = field(
        default=1.0, metadata={"help": "truncation psi of the latents (style models)", "min": 0.0, "max": 1.0}
    )
    range: float = field(
        default=SPECTRUM_RANGE,
        metadata={"help": "suggested shift range +-T, as a fraction of the layer's weight norm", "min": 0.0},
    )
    seed: int = field(default=0, metadata={"help": "seed of the latents and of the starting block"})

    def __post_init__(self) -> None:
        validate_params(self)
        if self.range <= 0:
            raise AtlasError(f"parameter range={self.range} must be positive")


def spectrum_set(
    gen,
    params: Params,
    layer: str,
    values: torch.Tensor,
    vectors: torch.Tensor,
    *,
    distance_info: dict,
    method: str = "param-spectrum",
):
    """The set of eigenvectors ``vectors [n, K]`` (values ``[K]``) as dense-basis directions."""
    K = vectors.shape[1]
    W = gen.layer_weight(layer)
    shape = tuple(W.shape)
    basis = dense_basis(gen, layer, vectors.T.reshape(K, *shape))
    wn2 = basis.weight_norm**2
    infos = [{"eigenvalue": float(v), "d2_per_t2": float(v) * wn2} for v in values]
    dset = basis_set(
        method,
        gen,
        basis,
        torch.eye(K),
        scores=values.tolist(),
        range_=(-params.range, params.range),
        params={**asdict(params), "layer": layer, **distance_info},
        infos=infos,
    )
    dset.metrics["eigenvalues"] = [float(v) for v in values]
    return dset


def _phase_text(p) -> str:
    """A warm start's progress record as one line."""
    return f"warm start: block product {p.done}/{p.total} image passes" if isinstance(p, ProductProgress) else p.name


def hessian_eigen(
    gen, params: Params, *, device, state: dict | None = None, stage: str = "spectrum", k_param: str = "k"
):
    """Job: the top-K eigenpairs of the layer Hessian. Returns ``(layer, EigResult, H, distance, metrics)``.

    Yields ``Progress`` per block iteration with the current Ritz values and residuals and a
    resumable ``state`` (the current Ritz vectors; resuming restarts LOBPCG from them), and within
    each block product after every pass (about every ``LayerHessian.pass_seconds``), so a cancel
    never waits for a whole product.
    """
    info = resolve_layer(gen, params.layer)
    n = math.prod(info.shape)
    if params.k > n:
        raise AtlasError(f"{k_param}={params.k} exceeds the {n} weights of {info.name}")
    # the solver keeps about ten blocks of k + guard weight-sized vectors (X, W, P, their products, ...)
    what = f"the eigensolver's blocks of {min(params.k + params.guard, n)} vectors of {info.name}'s {n:,} weights"
    check_job_memory(k_param, params.k, 10 * 4 * n * min(params.k + params.guard, n) / params.k, what)
    loading = Progress(0, params.steps, stage=stage, message="loading the distance")
    yield loading
    # importing and building the distance network: seconds, in calls that cannot be cut
    distance = yield from wait_for(
        load_distance, params.distance, device=device, size=params.distance_size, record=loading
    )
    yield Progress(0, params.steps, stage=stage, message="starting the eigensolver")
    z = gen.sample_latents(params.samples, seed=params.seed)
    H = LayerHessian(gen, info.name, distance, z, psi=params.truncation, chunk=params.chunk)
    m = min(params.k + params.guard, H.n)
    if state is not None and "X" in state:
        X0 = state["X"].to(torch.float32)
        if tuple(X0.shape) != (H.n, m):
            raise AtlasError(
                "the saved state does not fit this run (different layer or block size); start it again without resuming"
            )
        start_iter = int(state.get("step", 0))
    else:
        g = torch.Generator().manual_seed(params.seed + 1)
        X0 = torch.randn(H.n, m, generator=g)
        start_iter = 0
    X0 = X0.to(H.device)
    t0 = time.perf_counter()
    if start_iter == 0 and params.warm_samples > 0:
        warm = H.warm_start_job(X0, params.k, samples=params.warm_samples, steps=params.warm_steps)
        X0 = yield from relabel(warm, lambda p: Progress(0, params.steps, stage=stage, message=_phase_text(p)))
    solver = lobpcg(H.matvec_job, X0, params.k, tol=params.tol, max_iter=max(0, params.steps - start_iter), phases=True)
    step, last_state = start_iter, None

    def product_progress(p: ProductProgress | Phase) -> Progress:
        what = f"block product: {p.done}/{p.total} image passes" if isinstance(p, ProductProgress) else p.name
        return Progress(
            step,
            params.steps,
            stage=stage,
            message=what,
            snapshot=(lambda s=last_state: s) if last_state is not None else None,
        )

    def report(s) -> Progress:
        nonlocal step, last_state
        if not isinstance(s, EigStep):  # a pass of a block product, or a step of an iteration
            return product_progress(s)
        step = start_iter + s.iteration
        metrics = {
            "lambda_1": float(s.theta[0]),
            "lambda_k": float(s.theta[params.k - 1]),
            "max_residual": float(s.residual[: params.k].max()),
            "converged": s.converged,
            "hvp": s.matvecs,
        }
        partial = spectrum_set(
            gen,
            params,
            info.name,
            s.theta[: params.k].float().cpu(),
            s.X[:, : params.k].cpu(),
            distance_info=distance.describe(),
        )
        last_state = {"step": step, "X": s.X.detach().cpu().clone()}
        return Progress(
            step,
            params.steps,
            stage=stage,
            metrics=metrics,
            partial=partial,
            state=last_state,
            snapshot=lambda s=last_state: s,
        )

    result: EigResult = yield from relabel(solver, report)
    # residuals with fresh products (not the solver's running ones)
    V = result.vectors
    HV = yield from relabel(H.matvec_job(V), product_progress)
    lam = result.values.to(V.dtype)
    r = (HV - V * lam[None, :]).norm(dim=0).double().cpu()
    lam_c = result.values.double().cpu()
    metrics = {
        "eigenvalues": lam_c.tolist(),
        "residuals": r.tolist(),
        "relative_residuals": (r / lam_c[0].abs()).tolist(),
        "residuals_over_own_eigenvalue": (r / lam_c.abs().clamp_min(1e-300)).tolist(),
        "max_relative_residual": float((r / lam_c[0].abs()).max()),
        "converged": result.converged,
        "tol": params.tol,
        "iterations": start_iter + result.iterations,
        "hessian_vector_products": result.matvecs + params.k,
        "generator_forward_passes": H.forwards,
        "generator_backward_passes": H.backwards,
        "solve_seconds": time.perf_counter() - t0,
        "samples": params.samples,
        **distance.describe(),
    }
    return info.name, result, H, distance, metrics


@register_method(
    "param-spectrum",
    Params,
    kind="param",
    resumable=True,
    summary="top Hessian eigenvectors of E_z LPIPS(G, G') over one layer's weights (Cherepkov et al.)",
)
def run(gen, params: Params, *, device="cpu", state: dict | None = None) -> Iterator[Progress]:
    """Job: returns the K eigenvector directions; scores = eigenvalues, metrics = eigenvalues + residuals."""
    layer, result, _, distance, metrics = yield from hessian_eigen(gen, params, device=device, state=state)
    dset = spectrum_set(
        gen, params, layer, result.values.float().cpu(), result.vectors.cpu(), distance_info=distance.describe()
    )
    dset.metrics.update(metrics)
    if not distance.perceptual:
        dset.notes = f"made with the {distance.label}"
    return dset
