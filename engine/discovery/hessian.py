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

The test suite checks these products against an explicitly built Hessian of the literal ``f``
(double backward through ``lpips``) and against finite differences of gradients.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.func import jvp, vjp, vmap

from engine.distances import Distance
from engine.models.base import Generator, ParamEdit


class LayerHessian:
    """``H`` above for ``gen``'s layer ``layer`` over latents ``z [N, z_dim]``.

    ``matvec(V [n, m]) -> H V [n, m]``; ``gradient(a [*shape]) -> nabla f(a)``. ``chunk`` bounds
    the (latent, direction) rows of one batched pass (memory), ``block`` the directions in one
    pass. ``forwards`` / ``backwards`` count generator passes over single images, the units
    ``bench/bench_spectrum.py`` compares: a primal pass over a latent is one forward, each
    direction's tangent pushed through it one more forward, each direction's reverse pass one
    backward. The unshifted images ``G_theta(z)`` are rendered once. Under ``torch.distributed``
    each rank takes every world-size-th latent and the products are summed across ranks.
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
        self.distributed = dist.is_available() and dist.is_initialized()
        rank, world = (dist.get_rank(), dist.get_world_size()) if self.distributed else (0, 1)
        # each latent keeps one class (class-conditional models) in G_theta(z) and every shifted render
        classes = gen.condition(z.shape[0]).classes
        self.classes = None if classes is None else classes[rank::world]
        self.z = z[rank::world].to(gen.device, self.weight.dtype)
        self.device = gen.device
        self.forwards = 0  # single-image generator forward passes (primal and tangent ones)
        self.backwards = 0  # single-image generator backward passes
        for p in distance.parameters():  # the job's own distance network
            p.requires_grad_(False)
        with torch.no_grad():
            self.x0 = torch.cat(
                [
                    gen.decode(self.z[i : i + self.chunk], "z", psi=psi, classes=self._classes(i, self.chunk))
                    for i in range(0, self.z.shape[0], self.chunk)
                ]
            )
            # omega_l: constants of the distance (they depend on the feature shapes only)
            self.omega = [w.detach() for w in distance.features_weights(self.x0[:1])[1]]
        self.forwards += self.z.shape[0]

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
        m = V.shape[1]
        Vs = V.T.reshape(m, *self.shape).to(self.device, self.weight.dtype)
        out = torch.zeros_like(Vs)
        block = max(1, min(m, self.block))
        per = max(1, self.chunk // block)  # latents per pass
        for i0 in range(0, self.z.shape[0], per):
            zc = self.z[i0 : i0 + per]
            features = self._features(zc, self._classes(i0, per))
            zero = torch.zeros(self.shape, device=self.device, dtype=self.weight.dtype)
            # the primal forward once per latent chunk; the saved values serve every direction's J^T
            _, pullback = vjp(features, zero)
            self.forwards += zc.shape[0]
            for u0 in range(0, m, block):
                out[u0 : u0 + block] += self._block_product(features, pullback, zero, Vs[u0 : u0 + block], zc.shape[0])
        if self.distributed:
            dist.all_reduce(out)
        return out.reshape(m, self.n).T.to(V.dtype)

    def _block_product(self, features, pullback, zero: torch.Tensor, Vs: torch.Tensor, c: int) -> torch.Tensor:
        """``sum_i 2/N J_i^T Omega J_i v_u`` over the chunk's latents for each ``v_u`` of ``Vs [m, *shape]``."""
        m = Vs.shape[0]
        tangents = vmap(lambda v: jvp(features, (zero,), (v,))[1])(Vs)  # each [m, c, C_l, H_l, W_l]
        cot = tuple((2.0 / self.N) * w * t for w, t in zip(self.omega, tangents))
        (grad,) = vmap(pullback)(cot)
        self.forwards += c + m * c  # jvp's own primal, and one tangent per (latent, direction)
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
