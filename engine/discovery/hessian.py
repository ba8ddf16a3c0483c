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
pass (``J^T``). A block ``V = [v_1..v_m]`` is done in one batched forward: sample ``(i, u)`` of
the batch renders ``z_i`` with the layer weight ``W + delta[u]`` through ``ParamEdit`` (delta = 0,
tangent ``v_u``), and the reverse pass delivers each ``sum_i J_i^T (.)`` as the gradient with
respect to ``delta[u]``.

The test suite checks these products against an explicitly built Hessian of the literal ``f``
(double backward through ``lpips``) and against finite differences of gradients.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.autograd.forward_ad as fwAD
import torch.distributed as dist

from engine.distances import Distance
from engine.models.base import Generator, ParamEdit

_clock = time.perf_counter  # the pass timer (tests give a slow fake generator a fake clock)


@dataclass(frozen=True)
class ProductProgress:
    """How far one block product has got: ``done`` of ``total`` (direction, latent) image passes."""

    done: int
    total: int


class LayerHessian:
    """``H`` above for ``gen``'s layer ``layer`` over latents ``z [N, z_dim]``.

    ``matvec(V [n, m]) -> H V [n, m]``; ``matvec_job(V)`` is the same product as a job that yields
    a ``ProductProgress`` after every pass, so that a caller can report and cancel within a
    product (one block on a large model takes many seconds). ``gradient(a) -> nabla f(a)``.

    Passes: with ``pass_seconds`` (the default) each pass is sized from the time the previous one
    took, to take between half of that and that (at most ``chunk`` images; down to one latent and
    one direction), so a product yields about every ``pass_seconds`` on any machine and model; the
    products then agree with a fixed schedule to rounding, not bit for bit. With
    ``pass_seconds=None`` every pass holds ``chunk // m`` latents of a block of ``m`` directions.
    ``block`` bounds the directions in one pass. ``forwards`` / ``backwards`` count generator passes
    over single images (a forward-mode pass counts as a forward), the units the benchmark compares.
    Under ``torch.distributed`` each rank takes every world-size-th latent and the products are
    summed across ranks.
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
        self._planned_images = min(2, self.chunk)  # images in the next timed pass (small first passes)
        self.distributed = dist.is_available() and dist.is_initialized()
        rank, world = (dist.get_rank(), dist.get_world_size()) if self.distributed else (0, 1)
        # each latent keeps one class (class-conditional models) in G_theta(z) and every shifted render
        classes = gen.condition(z.shape[0]).classes
        self.classes = None if classes is None else classes[rank::world]
        self.z = z[rank::world].to(gen.device, self.weight.dtype)
        self.device = gen.device
        self.forwards = 0  # single-image generator forward passes (forward-mode ones included)
        self.backwards = 0  # single-image generator backward passes
        self._x0: torch.Tensor | None = None
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

    def matvec(self, V: torch.Tensor) -> torch.Tensor:
        """``H V`` for ``V [n, m]``, computed in the generator's precision; exact up to rounding."""
        job = self.matvec_job(V)
        while True:
            try:
                next(job)
            except StopIteration as stop:
                return stop.value

    def matvec_job(self, V: torch.Tensor) -> Iterator[ProductProgress]:
        """Job: ``H V`` for ``V [n, m]``, yielding a ``ProductProgress`` after every pass."""
        m = V.shape[1]
        Vs = V.T.reshape(m, *self.shape).to(self.device, self.weight.dtype)
        out = torch.zeros_like(Vs)
        N = self.z.shape[0]
        total, done = m * N, 0
        # a pass serves at most `block` directions: edited layers convolve each direction's rows separately
        for b0 in range(0, m, self.block):
            mb = min(self.block, m - b0)
            u = 0
            while u < mb:  # a group of directions, over every latent
                d = min(mb - u, self._pass_directions(mb, N))
                i0 = 0
                while i0 < N:
                    c = min(N - i0, self._pass_latents(d))
                    out[b0 + u : b0 + u + d] += self._timed_pass(Vs[b0 + u : b0 + u + d], i0, c)
                    i0 += c
                    done += d * c
                    yield ProductProgress(done, total)
                u += d
        if self.distributed:
            dist.all_reduce(out)
        return out.reshape(m, self.n).T.to(V.dtype)

    def _pass_directions(self, m: int, N: int) -> int:
        """Directions in the next passes (of ``m`` left in the block, over ``N`` latents).

        Fixed schedule: all ``m``. Timed: the images one pass may hold (``_pass_images``) split
        evenly between directions and latents, since a pass pays a cost per direction (the edited
        layer's convolutions) and one per latent (the layers before the edited one), each shared by
        the other side; all ``m`` when they fit with every latent.
        """
        if self.pass_seconds is None:
            return m
        size = self._pass_images()
        if size >= m * N:
            return m
        d = max(1, min(m, round(size**0.5)))
        if size // d >= N:  # every latent fits: give the rest to directions
            d = max(1, min(m, size // N))
        return d

    def _pass_latents(self, d: int) -> int:
        """Latents in the next pass of ``d`` directions."""
        if self.pass_seconds is None:
            return max(1, self.chunk // d)
        return max(1, self._pass_images() // d)

    def _pass_images(self) -> int:
        """Images the next timed pass may hold (``[1, chunk]``), adjusted after every pass.

        The last pass's time per image, times the planned size, is what a pass of the planned size
        would take: under half of ``pass_seconds``, the plan doubles; over ``pass_seconds``, it is
        scaled down to fit. Only times taken are used, so a machine's stalls shrink passes for a
        moment at most; a pass cut short (the last latents or directions) does not shrink the plan.
        """
        return self._planned_images

    def _timed_pass(self, Vs: torch.Tensor, i0: int, c: int) -> torch.Tensor:
        t0 = _clock()
        grad = self._pass(Vs, i0, c)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if self.pass_seconds is not None:
            projected = (_clock() - t0) / (Vs.shape[0] * c) * self._planned_images
            if projected < self.pass_seconds / 2:
                self._planned_images *= 2
            elif projected > self.pass_seconds:
                self._planned_images = int(self._planned_images * self.pass_seconds / projected)
            self._planned_images = max(1, min(self.chunk, self._planned_images))
        return grad

    def _pass(self, Vs: torch.Tensor, i0: int, c: int) -> torch.Tensor:
        """``sum_i J_i^T Omega J_i v_u`` over the latents ``z[i0 : i0 + c]`` for directions ``Vs [m, *shape]``."""
        m, zc = Vs.shape[0], self.z[i0 : i0 + c]
        index = torch.arange(m, device=self.device).repeat_interleave(c)  # sample u * c + i
        delta = torch.zeros_like(Vs, requires_grad=True)
        with fwAD.dual_level():
            img = self._render(zc, fwAD.make_dual(delta, Vs), index, self._classes(i0, c))
            feats, weights = self.distance.features_weights(img)
            prim, cot = [], []
            for f, w in zip(feats, weights):
                p, tangent = fwAD.unpack_dual(f)
                prim.append(p)
                cot.append((2.0 / self.N) * w.detach() * tangent.detach())
        (grad,) = torch.autograd.grad(prim, delta, grad_outputs=cot)
        self.forwards += m * c
        self.backwards += m * c
        return grad

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
