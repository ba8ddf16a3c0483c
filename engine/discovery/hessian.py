"""The Hessian of the mean image distance with respect to one layer's weight shift.

For a fixed minibatch ``z_1..z_N`` and a squared distance ``d2`` (``engine.distances``)::

    f(a) = 1/N sum_i d2(G_theta(z_i), G_{theta + a}(z_i)),      a = shift of the layer weight W
    H    = nabla^2 f(0)                                           [n, n], n = W.numel()

Every ``d2`` here is ``sum_l <omega_l, (psi_l(x) - psi_l(y))^2>`` with ``omega_l >= 0``. Write
``Phi_i(a) = psi(G_{theta+a}(z_i))`` and ``J_i`` its Jacobian at ``a = 0``. Then

    H = 2/N sum_i J_i^T Omega J_i

*exactly*: the second-order term of ``Phi`` is multiplied by the residual ``psi(x) - psi(y)``,
which is zero at ``a = 0`` (the paper's point that the value and gradient vanish there). So a
Hessian-vector product is one forward-mode pass (``J v``: the weight tangent pushed through the
generator and the distance's feature network), a multiplication by ``Omega``, and one reverse
pass (``J^T``). A block ``V = [v_1..v_m]`` is done together (``torch.func``): the shift is zero,
so every direction sees the same primal values; for a chunk of latents the primal forward runs
once (``vjp``, which keeps what the reverse pass needs), the m tangents are pushed through the
edited layer and everything after it together (``jvp`` under ``vmap`` over the directions: the
unbatched primal is computed once per latent, and no convolution of an all-zero shift runs per
direction), and the m reverse passes run together (``vmap`` of the saved ``vjp`` function),
each delivering ``sum_i J_i^T (.)`` as a gradient with respect to the layer shift.

Products are jobs (``matvec_job``) that yield after every pass of a few (latent, direction)
images, each pass sized from the time the previous one took (CPU time of the job's thread on the
CPU, wall time on CUDA: ``_clock``), so a caller can report and cancel
within a product (one block on a large model takes many seconds).

The test suite checks these products against an explicitly built Hessian of the literal ``f``
(double backward through ``lpips``) and against finite differences of gradients.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.func import jvp, vjp, vmap

from engine.discovery.eigensolver import EigStep, Phase, lobpcg
from engine.distances import Distance
from engine.jobs import Pacer, run_job
from engine.models.base import Generator, ParamEdit

# The pass timer: on the CPU this thread's CPU time, so that other processes sharing the cores do
# not shrink the passes (timed by the wall clock, passes fell to 8 images at a load average of 8 on
# 2 cores and a product cost 2.4x the CPU of one in passes of 40); on CUDA the wall clock after a
# synchronize. Tests give a slow fake generator a fake clock.
_clock = time.thread_time
_wall_clock = time.perf_counter


@dataclass(frozen=True)
class ProductProgress:
    """How far one block product has got: ``done`` of ``total`` (direction, latent) image passes."""

    done: int
    total: int


class LayerHessian:
    """``H`` above for ``gen``'s layer ``layer`` over latents ``z [N, z_dim]``.

    ``matvec(V [n, m]) -> H V [n, m]``; ``matvec_job(V)`` is the same product as a job that yields
    a ``ProductProgress`` after every pass; ``gradient(a [*shape]) -> nabla f(a)``.

    Passes: a chunk of latents gets its primal forward once (``vjp``), then its directions are
    pushed through it a group at a time, one pass per group. With ``pass_seconds`` (the default)
    the images of a pass (latents x directions) are sized from the time the previous pass took
    (this thread's CPU time on the CPU, so a loaded machine does not shrink the passes; wall time on CUDA),
    to take between half of ``pass_seconds`` and ``pass_seconds`` (at most ``chunk`` images; down
    to one latent and one direction), so a product yields about every ``pass_seconds`` on any
    machine and model; the products then agree with a fixed schedule to rounding, not bit for bit.
    With ``pass_seconds=None`` a chunk holds ``chunk // block`` latents and a pass ``block``
    directions. ``forwards`` / ``backwards`` count generator passes over single images, the units
    ``bench/bench_spectrum.py`` compares: a primal pass over a latent is one forward, each
    direction's tangent pushed through it one more forward, each direction's reverse pass one
    backward. The unshifted images ``G_theta(z)`` are rendered on first use (only ``value`` needs
    them). Under ``torch.distributed`` each rank takes every world-size-th latent and the products
    are summed across ranks.
    """

    def __init__(
        self,
        gen: Generator,
        layer: str,
        distance: Distance,
        z: torch.Tensor,
        *,
        psi: float = 1.0,
        chunk: int = 256,
        block: int = 32,
        pass_seconds: float | None = 0.5,
    ) -> None:
        # products differentiate through the generator: on a copy sharing its weights, so the
        # generator other threads render from (the editor's preview) is never touched
        gen = gen.detached()
        self.gen, self.layer, self.distance = gen, layer, distance
        self.weight = gen.layer_weight(layer)
        self.shape = tuple(self.weight.shape)
        self.n = self.weight.numel()
        self.N = z.shape[0]
        self.psi = psi
        self.chunk = max(1, int(chunk))
        self.block = max(1, int(block))
        self.pass_seconds = pass_seconds
        # images in the next timed pass (small first passes), sized as engine.jobs.Pacer sizes pieces
        self._pacer = Pacer(self.chunk, seconds=pass_seconds, first=min(2, self.chunk))
        self.distributed = dist.is_available() and dist.is_initialized()
        rank, world = (dist.get_rank(), dist.get_world_size()) if self.distributed else (0, 1)
        self._rank, self._world = rank, world
        # each latent keeps one class (class-conditional models) in G_theta(z) and every shifted render
        classes = gen.condition(z.shape[0]).classes
        self.classes = None if classes is None else classes[rank::world]
        self.z = z[rank::world].to(gen.device, self.weight.dtype)
        self.device = gen.device
        self.forwards = 0  # single-image generator forward passes (primal and tangent ones)
        self.backwards = 0  # single-image generator backward passes
        self._x0: torch.Tensor | None = None
        self._omega: list[torch.Tensor] | None = None
        for p in distance.parameters():  # the job's own distance network
            p.requires_grad_(False)

    @property
    def x0(self) -> torch.Tensor:
        """The unshifted images ``G_theta(z)`` (rendered on first use; only ``value`` needs them)."""
        if self._x0 is None:
            with torch.no_grad():
                self._x0 = torch.cat(
                    [
                        self.gen.decode(
                            self.z[i : i + self.chunk], "z", psi=self.psi, classes=self._classes(i, self.chunk)
                        )
                        for i in range(0, self.z.shape[0], self.chunk)
                    ]
                )
            self.forwards += self.z.shape[0]
        return self._x0

    @property
    def omega(self) -> list[torch.Tensor]:
        """``omega_l``: the distance's constant weights (they depend on the feature shapes only)."""
        if self._omega is None:
            with torch.no_grad():
                img = (
                    self.x0[:1]
                    if self._x0 is not None
                    else self.gen.decode(self.z[:1], "z", psi=self.psi, classes=self._classes(0, 1))
                )
                self._omega = [w.detach() for w in self.distance.features_weights(img)[1]]
        return self._omega

    def _classes(self, start: int, n: int) -> torch.Tensor | None:
        """The classes of latents ``z[start : start + n]`` (``None`` for unconditional models)."""
        return None if self.classes is None else self.classes[start : start + n]

    def _render(
        self, z: torch.Tensor, delta: torch.Tensor, index: torch.Tensor, classes: torch.Tensor | None
    ) -> torch.Tensor:
        """Sample ``b = u * c + i`` renders latent ``z[i]`` (``c = len(z)``, class ``classes[i]``) with ``W + delta[index[b]]``."""
        B = index.shape[0]
        ones = torch.ones(B, device=z.device)
        c = z.shape[0]
        if self.gen.supports_shared_prefix:
            # the layers before the edited one run once per latent, not once per (latent, direction)
            source = torch.arange(c, device=z.device).repeat(B // c)
            edit = ParamEdit(self.layer, delta, index, ones, source)
            return self.gen.decode(z, "z", psi=self.psi, edit=edit, classes=classes)
        reps = None if classes is None else classes.repeat(B // c)
        edit = ParamEdit(self.layer, delta, index, ones)
        return self.gen.decode(z.repeat(B // c, 1), "z", psi=self.psi, edit=edit, classes=reps)

    def _features(self, z: torch.Tensor, classes: torch.Tensor | None):
        """``a -> psi(G_{theta + a}(z))`` (a tuple of feature maps) for the latents ``z [c, z_dim]``."""
        c = z.shape[0]

        def features(a: torch.Tensor):
            edit = ParamEdit.single(self.layer, a, c)
            img = self.gen.decode(z, "z", psi=self.psi, edit=edit, classes=classes)
            return tuple(self.distance.features_weights(img)[0])

        return features

    def matvec(self, V: torch.Tensor) -> torch.Tensor:
        """``H V`` for ``V [n, m]``, computed in the generator's precision; exact up to rounding."""
        return run_job(self.matvec_job(V))

    def matvec_job(self, V: torch.Tensor) -> Iterator[ProductProgress]:
        """Job: ``H V`` for ``V [n, m]``, yielding a ``ProductProgress`` after every pass."""
        m = V.shape[1]
        Vs = V.T.reshape(m, *self.shape).to(self.device, self.weight.dtype)
        out = torch.zeros_like(Vs)
        N = self.z.shape[0]
        total, done = m * N, 0
        # a pass serves at most `block` directions: edited layers convolve each direction's rows separately
        group = max(1, min(m, self.block))
        i0 = 0
        while i0 < N:
            c = min(N - i0, self._chunk_latents(group))
            zc = self.z[i0 : i0 + c]
            features = self._features(zc, self._classes(i0, c))
            zero = torch.zeros(self.shape, device=self.device, dtype=self.weight.dtype)
            # the primal forward once per latent chunk; the saved values serve every direction's J^T
            _, pullback = vjp(features, zero)
            self.forwards += c
            u0 = 0
            while u0 < m:
                d = min(m - u0, group, self._pass_directions(c))
                out[u0 : u0 + d] += self._timed_pass(features, pullback, zero, Vs[u0 : u0 + d], c)
                u0 += d
                done += d * c
                yield ProductProgress(done, total)
            i0 += c
        if self.distributed:
            dist.all_reduce(out)
        return out.reshape(m, self.n).T.to(V.dtype)

    def _chunk_latents(self, group: int) -> int:
        """Latents of the next chunk (passes of up to ``group`` directions each)."""
        if self.pass_seconds is None:
            return max(1, self.chunk // group)
        return max(1, self._pacer.size // group)

    def _pass_directions(self, c: int) -> int:
        """Directions in the next pass over a chunk of ``c`` latents."""
        if self.pass_seconds is None:
            return self.block
        return max(1, self._pacer.size // c)

    def _timed_pass(self, features, pullback, zero: torch.Tensor, Vs: torch.Tensor, c: int) -> torch.Tensor:
        """One pass (``_block_product``), and the size of the next one from the time this one took.

        The plan follows ``engine.jobs.Pacer.record`` (doubles under half of ``pass_seconds``, scaled
        down to fit over it, within ``[1, chunk]`` images), timed by the thread's CPU time on the CPU.
        Only times taken are used, so a machine's stalls shrink passes for a moment at most.
        """
        clock = _wall_clock if self.device.type == "cuda" else _clock
        t0 = clock()
        grad = self._block_product(features, pullback, zero, Vs, c)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._pacer.record(Vs.shape[0] * c, clock() - t0)
        return grad

    def _block_product(self, features, pullback, zero: torch.Tensor, Vs: torch.Tensor, c: int) -> torch.Tensor:
        """``sum_i 2/N J_i^T Omega J_i v_u`` over the chunk's latents for each ``v_u`` of ``Vs [m, *shape]``."""
        m = Vs.shape[0]
        tangents = vmap(lambda v: jvp(features, (zero,), (v,))[1])(Vs)  # each [m, c, C_l, H_l, W_l]
        cot = tuple((2.0 / self.N) * w * t for w, t in zip(self.omega, tangents))
        (grad,) = vmap(pullback)(cot)
        self.forwards += c + m * c  # jvp's own primal, and one tangent per (latent, direction)
        self.backwards += m * c
        return grad

    def subset(self, samples: int) -> LayerHessian:
        """The same operator over the first ``samples`` latents only (``H_s = 2/s sum_{i<s} J_i^T Omega J_i``).

        It shares the generator copy, the distance and ``omega``; its products cost about
        ``samples / N`` of this operator's, and it counts its own passes."""
        s = max(1, min(int(samples), self.N))
        sub = copy.copy(self)
        local = len(range(self._rank, s, self._world))  # this rank's latents among the first s
        sub.z = self.z[:local]
        sub.classes = None if self.classes is None else self.classes[:local]
        sub.N = s
        sub.forwards = sub.backwards = 0
        sub._pacer = copy.copy(self._pacer)
        sub._x0 = None
        return sub

    def warm_start_job(self, X0: torch.Tensor, k: int, *, samples: int, steps: int) -> Iterator:
        """Job: a starting block for the eigensolver, from ``steps`` LOBPCG iterations on ``subset(samples)``.

        The subsampled Hessian's top eigenvectors are close to this one's (the same layer, a
        smaller average), at ``samples / N`` of the cost per product: a few cheap iterations
        replace the first iterations from a random block, which only find the dominant subspace.
        Returns the ``[n, m]`` block of Ritz vectors (all ``m = X0.shape[1]`` columns, guard
        vectors included); its passes are added to this operator's counts. Yields the products'
        ``ProductProgress`` and a ``Phase`` per iteration. ``samples >= N`` or ``steps < 1``
        returns ``X0`` unchanged.
        """
        if samples >= self.N or steps < 1:
            return X0
        sub = self.subset(samples)
        X = X0
        try:
            solver = lobpcg(sub.matvec_job, X0, k, tol=0.0, max_iter=steps)
            while True:
                try:
                    step = next(solver)
                except StopIteration:
                    break
                if isinstance(step, EigStep):
                    X = step.X
                    step = Phase(f"warm start: iteration {step.iteration}/{steps} on {sub.N} latents")
                yield step
        finally:
            self.forwards += sub.forwards
            self.backwards += sub.backwards
        return X

    def value(self, a: torch.Tensor) -> torch.Tensor:
        """``f(a)`` (a scalar tensor, differentiable in ``a [*shape]``)."""
        total = 0.0
        for i0 in range(0, self.z.shape[0], self.chunk):
            zc, x0 = self.z[i0 : i0 + self.chunk], self.x0[i0 : i0 + self.chunk]
            index = torch.zeros(zc.shape[0], dtype=torch.long, device=self.device)
            x1 = self._render(zc, a.unsqueeze(0), index, self._classes(i0, self.chunk))
            total = total + self.distance(x0, x1).sum() / self.N
        return total

    def gradient(self, a: torch.Tensor) -> torch.Tensor:
        """``nabla f(a)`` as ``[*shape]`` (one forward + backward per latent; summed over ranks)."""
        a = a.detach().to(self.device, self.weight.dtype).requires_grad_(True)
        (g,) = torch.autograd.grad(self.value(a), a)
        self.forwards += self.z.shape[0]
        self.backwards += self.z.shape[0]
        if self.distributed:
            dist.all_reduce(g)
        return g
