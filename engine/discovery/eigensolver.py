"""Top eigenpairs of a symmetric operator given only as a block matrix-vector product.

``lobpcg`` is the locally optimal block preconditioned conjugate gradient method (Knyazev 2001)
without a preconditioner, maximising the Rayleigh quotient: every iteration applies the operator
once to a block of residuals and does a Rayleigh-Ritz step on ``[X, W, P]`` (current Ritz vectors,
residuals, previous search directions). All ``m`` vectors converge together, which is what makes it
far cheaper than power iteration with deflation (one vector at a time).

Numerics: the three blocks are kept mutually orthonormal (``X`` by construction, ``P`` and ``W`` by
two rounds of block Gram-Schmidt followed by SVQB, Stathopoulos & Wu 2002), and their images
under the operator are updated by the same linear maps, so each iteration costs exactly one
block product of the active (not yet converged) residuals. Small projected problems are solved in
float64 with ``eigh``.

The solver is a generator (``yield`` once per iteration) so callers can report progress and
cancel; ``torch.lobpcg`` needs an explicit matrix, which a Hessian of 500k x 500k is not. The
operator may itself be a job (a function returning a generator that yields progress and returns
the product, e.g. ``LayerHessian.matvec_job``): its yields are passed through between the
iterations' ``EigStep`` records, so a caller can cancel within a long product too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

MatVec = Callable[[torch.Tensor], torch.Tensor | Iterator[Any]]  # [n, b] -> [n, b] (or a job returning it)


def _apply(matvec: MatVec, V: torch.Tensor):
    """``matvec(V)``, passing through the yields of a job-style operator."""
    out = matvec(V)
    if isinstance(out, torch.Tensor):
        return out
    return (yield from out)


@dataclass
class EigStep:
    """State after one iteration: Ritz values ``theta [m]`` (descending), relative residuals ``[m]``."""

    iteration: int
    theta: torch.Tensor
    residual: torch.Tensor
    converged: int  # how many of the wanted k have residual < tol
    matvecs: int  # operator applications (vectors) so far
    X: torch.Tensor = field(repr=False, default=None)  # [n, m] current Ritz vectors


@dataclass
class EigResult:
    values: torch.Tensor  # [k] descending
    vectors: torch.Tensor  # [n, k] orthonormal columns
    residual: torch.Tensor  # [k] ||A v - lambda v|| / |lambda_1| from the maintained products
    iterations: int
    matvecs: int
    converged: bool


def _svqb(U: torch.Tensor, AU: torch.Tensor | None = None, drop: float = 1e-7):
    """Orthonormalise the columns of ``U`` (and apply the same map to ``AU``); drops dependent ones."""
    if U.shape[1] == 0:
        return U, AU
    G = (U.T @ U).double()
    d = G.diagonal().clamp_min(1e-300).rsqrt()
    Gs = d[:, None] * G * d[None, :]
    s, Q = torch.linalg.eigh(Gs)
    keep = s > drop * s.max()
    C = (d[:, None] * Q[:, keep] * s[keep].rsqrt()[None, :]).to(U.dtype)
    return U @ C, (AU @ C if AU is not None else None)


def _project_out(W: torch.Tensor, blocks: list[torch.Tensor]) -> torch.Tensor:
    for _ in range(2):  # twice is enough (Kahan: "twice is enough")
        for B in blocks:
            if B is not None and B.shape[1]:
                W = W - B @ (B.T @ W)
    return W


@dataclass(frozen=True)
class Phase:
    """Yielded between the dense steps of an iteration when ``lobpcg(phases=True)``: a point where
    the caller may report or cancel (each step costs O(n m^2); on a large layer, about a second)."""

    name: str


def lobpcg(
    matvec: MatVec,
    X0: torch.Tensor,
    k: int,
    *,
    tol: float = 1e-4,
    max_iter: int = 100,
    locked: bool = True,
    phases: bool = False,
) -> Iterator[EigStep]:
    """Generator: top-``k`` eigenpairs of the symmetric operator ``matvec`` starting from ``X0 [n, m]``.

    ``m >= k`` columns are iterated (the extra ones are guard vectors that speed up convergence of
    the k-th pair). Converged when the wanted k residuals ``||A x - theta x|| / |theta_1|`` are all
    below ``tol``. With ``locked`` (soft locking) converged columns stop contributing residuals,
    saving their products. Yields an ``EigStep`` per iteration, whatever a job-style ``matvec``
    yields, and with ``phases`` a ``Phase`` between the dense steps; returns an ``EigResult``.
    """
    n, m = X0.shape
    if not 1 <= k <= m <= n:
        raise ValueError(f"need 1 <= k ({k}) <= block size ({m}) <= dimension ({n})")
    X, _ = _svqb(X0)
    if X.shape[1] < m:  # a degenerate start: top up with random vectors
        extra = torch.randn(n, m - X.shape[1], dtype=X0.dtype, device=X0.device)
        X, _ = _svqb(torch.cat([X, _project_out(extra, [X])], 1))
    if phases:
        yield Phase("start")
    AX = yield from _apply(matvec, X)
    nmv = m
    theta, C = torch.linalg.eigh(_sym(X.T @ AX))
    order = theta.argsort(descending=True)
    theta, C = theta[order], C[:, order].to(X.dtype)
    X, AX = X @ C, AX @ C
    P = AP = None
    it = 0
    if phases:
        yield Phase("rayleigh-ritz")
    res = _residuals(X, AX, theta)
    if phases:
        yield Phase("residual norms")
    while True:
        conv = res < tol
        n_conv = int(conv[:k].sum())
        yield EigStep(it, theta.clone(), res.clone(), n_conv, nmv, X)
        if n_conv == k or it >= max_iter:
            break
        it += 1
        active = ~conv if locked else torch.ones_like(conv)
        W = (AX - X * theta.to(X.dtype)[None, :])[:, active]
        W = _project_out(W, [X, P])
        if phases:
            yield Phase("residuals")
        W, _ = _svqb(W)
        W = _project_out(W, [X, P])  # SVQB can reintroduce tiny components; clean once more
        if phases:
            yield Phase("orthogonalise")
        W, _ = _svqb(W)
        if W.shape[1] == 0:
            break
        AW = yield from _apply(matvec, W)
        nmv += W.shape[1]
        # Rayleigh-Ritz on span[X, W, P] block by block: the [n, 3m] concatenation is never built
        blocks = [(X, AX), (W, AW)] + ([(P, AP)] if P is not None else [])
        T = torch.cat([torch.cat([Bi.T @ ABj for _, ABj in blocks], 1) for Bi, _ in blocks], 0)
        vals, vecs = torch.linalg.eigh(_sym(T))
        order = vals.argsort(descending=True)[:m]
        theta, Y = vals[order], vecs[:, order].to(X.dtype)
        if phases:
            yield Phase("rayleigh-ritz")
        sizes = [B.shape[1] for B, _ in blocks]
        Ys = Y.split(sizes)
        # new search directions: the parts of the new Ritz vectors that came from W and P
        P_new = sum(B @ Yb for (B, _), Yb in zip(blocks[1:], Ys[1:]))
        AP_new = sum(AB @ Yb for (_, AB), Yb in zip(blocks[1:], Ys[1:]))
        X = X @ Ys[0] + P_new
        AX = AX @ Ys[0] + AP_new
        del blocks, W, AW
        P, AP = P_new, AP_new
        if phases:
            yield Phase("update")
        coef = X.T @ P
        P, AP = P - X @ coef, AP - AX @ coef
        P, AP = _svqb(P, AP)
        if phases:
            yield Phase("search directions")
        res = _residuals(X, AX, theta)
        if phases:
            yield Phase("residual norms")
    return EigResult(theta[:k].clone(), X[:, :k].clone(), res[:k].clone(), it, nmv, bool(n_conv == k))


def _sym(T: torch.Tensor) -> torch.Tensor:
    T = T.double()
    return 0.5 * (T + T.T)


def _residuals(X: torch.Tensor, AX: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    r = (AX - X * theta.to(X.dtype)[None, :]).norm(dim=0).double()  # in the blocks' precision: no [n, m] copies
    return r / theta.abs().max().clamp_min(1e-300)
