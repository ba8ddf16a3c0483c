"""Hessian spectrum: our exact products + block LOBPCG vs the reference's power iteration.

The reference (Cherepkov et al.'s code) finds eigenvectors one at a time: ``v <- (g(eps v) -
g(-eps v)) / (2 eps ||v||)`` with ``g`` the gradient of ``f(a) = E_z d2(G(z), G_{theta+a}(z))``,
``eps = 0.1`` (weight units), 20 iterations per vector, each new vector projected off the ones
found (deflation). Ours: exact Gauss-Newton Hessian-vector products and LOBPCG on a block.

Both run in one process on the same layer, latents and distance, for the same K. The exact answer
comes from the explicitly built Hessian (``H e_i`` for every i, then ``eigh``) of a small layer.
Accuracy = the largest principal angle between the found K-dimensional subspace and the exact
top-K eigenspace. Our solver is stopped as soon as its angle is at or below the reference's;
reported: generator passes over single images (forward / backward), wall time, ratios.

    .venv/bin/python bench/bench_spectrum.py [--layer main.12] [--k 8] [--samples 8] [--threads 1]

The distance is ``pixel`` by default because this machine has no LPIPS backbone file; with the
file present, ``--distance lpips-alex`` runs the same comparison.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.discovery.eigensolver import lobpcg  # noqa: E402
from engine.discovery.hessian import LayerHessian  # noqa: E402
from engine.distances import load_distance  # noqa: E402
from engine.models import load_generator  # noqa: E402


def max_angle(A: torch.Tensor, B: torch.Tensor) -> float:
    """Largest principal angle (radians) between the column spans of ``A`` and ``B`` ``[n, k]``."""
    Qa, _ = torch.linalg.qr(A.double())
    Qb, _ = torch.linalg.qr(B.double())
    cos = torch.linalg.svdvals(Qa.T @ Qb).clamp(max=1.0)
    return float(torch.arccos(cos.min()))


def reference_power_iteration(H: LayerHessian, k: int, *, iters: int = 20, eps: float = 0.1, seed: int = 0):
    """The reference algorithm, step for step (finite differences of gradients, deflation)."""
    g = torch.Generator().manual_seed(seed)
    found: list[torch.Tensor] = []

    def project(v):
        for u in found:
            u = u / u.norm()
            v = v - u * (v * u).sum()
        return v

    for _ in range(k):
        v = project(torch.randn(H.shape, generator=g))
        for _ in range(iters):
            v_new = (H.gradient(eps * v) - H.gradient(-eps * v)) / (2 * (eps + 1e-14) * v.norm())
            v = project(v_new)
        found.append(v.clone())
    return torch.stack([(v / v.norm()).flatten() for v in found], 1)  # [n, k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--layer", default="main.12", help="a small layer (its Hessian is built explicitly)")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--distance", default="pixel")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    gen = load_generator(args.model, device="cpu")
    dist = load_distance(args.distance)
    z = gen.sample_latents(args.samples, seed=0)

    def operator():
        return LayerHessian(gen, args.layer, dist, z, chunk=256)

    exact_op = operator()
    n = exact_op.n
    print(
        f"model {gen.name}, layer {args.layer} ({n} weights), K={args.k}, {args.samples} latents, "
        f"distance {dist.name}, {args.threads} thread(s)"
    )
    t0 = time.perf_counter()
    Hfull = exact_op.matvec(torch.eye(n)).double()
    Hfull = 0.5 * (Hfull + Hfull.T)
    evals, evecs = torch.linalg.eigh(Hfull)
    evals, evecs = evals.flip(0), evecs.flip(1)
    exact = evecs[:, : args.k]
    print(
        f"exact Hessian: {time.perf_counter() - t0:.1f} s; top eigenvalues "
        + ", ".join(f"{v:.4g}" for v in evals[: args.k + 1])
        + f"; gap lambda_k/lambda_k+1 = "
        f"{float(evals[args.k - 1] / evals[args.k]):.3f}"
    )

    ref_op = operator()
    f0, b0 = ref_op.forwards, ref_op.backwards
    t0 = time.perf_counter()
    ref_vecs = reference_power_iteration(ref_op, args.k)
    ref_time = time.perf_counter() - t0
    ref_f, ref_b = ref_op.forwards - f0, ref_op.backwards - b0
    ref_angle = max_angle(ref_vecs, exact)
    per_vec = [math.degrees(max_angle(ref_vecs[:, i : i + 1], evecs[:, i : i + 1])) for i in range(args.k)]
    print(
        f"reference power iteration: {ref_time:.1f} s, {ref_f} forward + {ref_b} backward passes, "
        f"subspace angle {math.degrees(ref_angle):.3g} deg (per vector: " + ", ".join(f"{a:.2g}" for a in per_vec) + ")"
    )

    ours_op = operator()
    f0, b0 = ours_op.forwards, ours_op.backwards
    X0 = torch.randn(n, args.k + 4, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    job = lobpcg(ours_op.matvec, X0, args.k, tol=0.0, max_iter=200)
    ours_angle, it = float("inf"), 0
    for step in job:
        ours_angle, it = max_angle(step.X[:, : args.k], exact), step.iteration
        if ours_angle <= ref_angle:
            break
    ours_time = time.perf_counter() - t0
    job.close()
    ours_f, ours_b = ours_op.forwards - f0, ours_op.backwards - b0
    print(
        f"ours (exact HVP + LOBPCG): {ours_time:.1f} s, {ours_f} forward + {ours_b} backward passes, "
        f"{it} iterations, subspace angle {math.degrees(ours_angle):.3g} deg"
    )
    print(
        f"ratio reference/ours: passes {(ref_f + ref_b) / max(1, ours_f + ours_b):.1f}x, "
        f"time {ref_time / max(ours_time, 1e-9):.1f}x (same K, angle <= reference's)"
    )

    # how far the block solver goes with a further budget equal to the reference's
    deep_op = operator()
    t0 = time.perf_counter()
    job = lobpcg(deep_op.matvec, X0, args.k, tol=1e-6, max_iter=200)
    last = None
    for step in job:
        last = step
        if deep_op.forwards + deep_op.backwards >= ref_f + ref_b:
            break
    job.close()
    print(
        f"ours with the reference's pass budget: {time.perf_counter() - t0:.1f} s, {last.iteration} iterations, "
        f"subspace angle {math.degrees(max_angle(last.X[:, : args.k], exact)):.3g} deg, "
        f"max residual/lambda_1 {float(last.residual[: args.k].max()):.2g}"
    )


if __name__ == "__main__":
    main()
