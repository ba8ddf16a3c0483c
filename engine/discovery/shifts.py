"""Shift families: K ways of changing a generator's output that a reconstructor learns to tell apart.

The reconstructor trainer (``engine.discovery.reconstructor``) only needs, for latents
``z [B, z_dim]``, direction indices ``k [B]`` (long, in ``[0, K)``) and shift magnitudes
``eps [B]`` (the trainer's units, ``|eps| <= eps_max``), the image pair
``(G(z), G_shifted(z))`` — both ``[B, C, H, W]`` — and the family's trainable parameters.

* ``LatentShifts``: a direction matrix ``A [dim, K]`` in z, w or w+ (Voynov & Babenko):
  ``code + eps * scale[k] * A[:, k]``; A is free (``linear``), has unit-norm columns (``unit``),
  orthonormal columns (``ortho``, via QR), or is ``fixed`` (baselines, existing direction sets).
* ``ParamShifts``: fixed weight shifts of one layer, ``W + eps * scale[k] * delta[k]``, through
  ``engine.models.base.ParamEdit``; ``param_pair`` is the building block for trainable
  parameter-space families (coefficients over a weight basis).

How a pair is rendered is the family's ``pair_mode`` (``PAIR_MODES``; measured by
``bench/bench_reconstructor.py``):

* ``one``: both images in ONE forward of 2B samples (the unshifted half carries a zero shift);
  parameter shifts on a model with ``supports_shared_prefix`` run the layers before the edited
  one once per latent, not once per image;
* ``two``: ``G(z)`` under ``no_grad`` then the shifted images, so a trainable family's backward
  pass runs through the B shifted images only;
* ``auto`` (default): ``two`` for a trainable latent family (its gradient flows through the whole
  generator, and on a CPU the batched backward of 2B costs more than two passes), ``one``
  otherwise (fixed families, and parameter families whose shared prefix halves the work).
"""

from __future__ import annotations

import torch
from torch import nn

from engine.directions import DirectionSet
from engine.errors import AtlasError
from engine.models.base import Generator, ParamEdit

PARAMETRIZATIONS = ("linear", "unit", "ortho", "fixed")
PAIR_MODES = ("auto", "one", "two")


class ShiftFamily(nn.Module):
    """Base class. Subclasses set ``K`` and implement ``pair``; trainable ones register parameters.

    ``scale [K]`` (a buffer) converts the trainer's ``eps`` into each direction's own units, so a
    fixed set whose directions suggest different ranges is probed over each one's range.
    """

    K: int = 0
    pair_mode: str = "auto"  # see PAIR_MODES and the module docstring
    two_pass_when_trained: bool = False  # whether "auto" picks two passes once the family is trainable

    def pair(
        self, gen: Generator, z: torch.Tensor, k: torch.Tensor, eps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(G(z), G_shifted(z))``, each ``[B, C, H, W]``, for ``z [B, z_dim]``, ``k [B]``, ``eps [B]``."""
        raise NotImplementedError

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    def resolved_pair_mode(self) -> str:
        """``one`` or ``two``: ``pair_mode`` with ``auto`` resolved for this family."""
        if self.pair_mode not in PAIR_MODES:
            raise AtlasError(f"unknown pair mode '{self.pair_mode}'; choose one of {', '.join(PAIR_MODES)}")
        if self.pair_mode != "auto":
            return self.pair_mode
        return "two" if self.two_pass_when_trained and self.trainable else "one"

    def check_k(self, k: torch.Tensor) -> None:
        if k.numel() and (int(k.min()) < 0 or int(k.max()) >= self.K):
            raise ValueError(f"direction index out of range [0, {self.K})")


def latent_classes(gen: Generator, z: torch.Tensor) -> torch.Tensor | None:
    """Long ``[B]``: the class of each latent of ``z`` on a class-conditional model (its view's
    classes), or ``None``. A pair's two images must use the same class: callers resolve it once
    and pass it to both halves."""
    return gen.condition(z.shape[0]).classes


def base_codes(
    gen: Generator, z: torch.Tensor, space: str, psi: float, classes: torch.Tensor | None = None
) -> torch.Tensor:
    """``z`` expressed in ``space`` (w / w+ after truncation, as edits are applied there)."""
    return z if space == "z" else gen.encode(z, space, psi=psi, classes=classes)


def _twice(classes: torch.Tensor | None) -> torch.Tensor | None:
    return None if classes is None else torch.cat([classes, classes])


def decode_pair(
    gen: Generator,
    code: torch.Tensor,
    shifted: torch.Tensor,
    space: str,
    psi: float,
    *,
    mode: str = "one",
    classes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of ``code`` and ``shifted`` (``[B, ...]`` each); ``mode`` as in ``PAIR_MODES``.

    ``classes [B]``: row b of both halves uses class ``classes[b]`` (class-conditional models).
    """
    B = code.shape[0]
    if mode == "two":
        with torch.no_grad():
            x0 = gen.decode(code, space, psi=psi, noise="const", classes=classes)
        return x0, gen.decode(shifted, space, psi=psi, noise="const", classes=classes)
    imgs = gen.decode(torch.cat([code, shifted]), space, psi=psi, noise="const", classes=_twice(classes))
    return imgs[:B], imgs[B:]


def param_pair(
    gen: Generator,
    z: torch.Tensor,
    layer: str,
    deltas: torch.Tensor,
    k: torch.Tensor,
    t: torch.Tensor,
    *,
    psi: float = 1.0,
    mode: str = "one",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(G_theta(z), G_{theta + t_b delta[k_b]}(z))`` for weight shifts of ``layer``.

    ``deltas [U, *weight_shape]`` (may require grad), ``k [B]`` rows of ``deltas``, ``t [B]`` the
    shift of each sample in weight units. In ``one`` mode the 2B samples share one forward: the
    first half uses ``t = 0`` (``apply_conv_edit`` skips those rows), and on a model with
    ``supports_shared_prefix`` the layers before ``layer`` run once per latent. Style models are
    mapped once and both halves are decoded from the same w+, unless ``layer`` is in the mapping
    network (``LayerInfo.mapping``): then both halves are decoded from z.
    """
    space = "w+" if gen.num_ws > 0 and not gen.layer_info(layer).mapping else "z"
    cls = latent_classes(gen, z)
    code = base_codes(gen, z, space, psi, cls)
    B = z.shape[0]
    kw = dict(psi=psi, noise="const")
    if mode == "two":
        with torch.no_grad():
            x0 = gen.decode(code, space, classes=cls, **kw)
        return x0, gen.decode(code, space, classes=cls, edit=ParamEdit(layer, deltas, k, t), **kw)
    index, shifts = torch.cat([k, k]), torch.cat([torch.zeros_like(t), t])
    if gen.supports_shared_prefix:
        # B codes (with their B classes); rows expand to 2B at the edited layer
        source = torch.arange(B, device=code.device).repeat(2)
        imgs = gen.decode(code, space, classes=cls, edit=ParamEdit(layer, deltas, index, shifts, source), **kw)
    else:
        imgs = gen.decode(
            torch.cat([code, code]), space, classes=_twice(cls), edit=ParamEdit(layer, deltas, index, shifts), **kw
        )
    return imgs[:B], imgs[B:]


class LatentShifts(ShiftFamily):
    """K latent directions, the columns of ``A [dim, K]``; the edit is ``code + eps * scale[k] * A[:, k]``.

    ``space``: ``z``, ``w`` or ``w+``; in w+ each direction acts on the layers where
    ``layer_mask [K, num_ws]`` is 1 (default: all). ``parametrization``:
    ``linear`` (A free; the paper's "A is a linear operator", initialised to coordinate axes as
    the reference code does), ``unit`` (columns divided by their norms), ``ortho`` (A = Q of the
    QR decomposition of a free matrix, sign-fixed so that it is unique), ``fixed`` (no
    parameters). ``init [dim, K]`` is the starting (or fixed) matrix.
    """

    two_pass_when_trained = True

    def __init__(
        self,
        init: torch.Tensor,
        parametrization: str = "ortho",
        *,
        space: str = "z",
        layer_mask: torch.Tensor | None = None,
        psi: float = 1.0,
        scale: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if parametrization not in PARAMETRIZATIONS:
            raise AtlasError(
                f"unknown direction parametrization '{parametrization}'; choose one of {', '.join(PARAMETRIZATIONS)}"
            )
        if init.dim() != 2:
            raise ValueError("init must be [dim, K]")
        dim, K = init.shape
        if parametrization == "ortho" and K > dim:
            raise AtlasError(f"{K} orthonormal directions do not fit in a {dim}-dimensional space; use k <= {dim}")
        self.K = int(K)
        self.dim = int(dim)
        self.parametrization = parametrization
        self.space = space
        self.psi = float(psi)
        init = init.detach().float().clone()
        if parametrization == "fixed":
            self.register_buffer("A_fixed", init)
        else:
            self.M = nn.Parameter(init)
        self.register_buffer("scale", torch.ones(K) if scale is None else scale.detach().float().clone())
        self.register_buffer("layer_mask", None if layer_mask is None else layer_mask.detach().float().clone())

    def matrix(self) -> torch.Tensor:
        """``A [dim, K]`` after the parametrization."""
        if self.parametrization == "fixed":
            return self.A_fixed
        M = self.M
        if self.parametrization == "linear":
            return M
        if self.parametrization == "unit":
            return M / M.norm(dim=0, keepdim=True).clamp_min(1e-12)
        Q, R = torch.linalg.qr(M)
        # QR is unique only up to column signs; fixing diag(R) > 0 keeps A continuous in M
        sign = torch.sign(torch.diagonal(R))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        return Q * sign

    def shifts(self, k: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """``[B, dim]`` the latent offsets ``eps * scale[k] * A[:, k]``."""
        A = self.matrix()
        return (eps * self.scale[k]).unsqueeze(1) * A.T[k]

    def pair(self, gen, z, k, eps):
        self.check_k(k)
        cls = latent_classes(gen, z)
        code = base_codes(gen, z, self.space, self.psi, cls)
        off = self.shifts(k, eps.to(code.dtype))
        if self.space == "w+":
            mask = (
                self.layer_mask[k]
                if self.layer_mask is not None
                else torch.ones(k.shape[0], code.shape[1], device=code.device)
            )
            off = mask.unsqueeze(-1) * off.unsqueeze(1)  # [B, num_ws, w_dim]
        return decode_pair(gen, code, code + off, self.space, self.psi, mode=self.resolved_pair_mode(), classes=cls)


class ParamShifts(ShiftFamily):
    """K fixed weight shifts of one layer: ``W + eps * scale[k] * deltas[k]`` (``deltas [K, *W.shape]``)."""

    def __init__(
        self, layer: str, deltas: torch.Tensor, *, psi: float = 1.0, scale: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.layer = layer
        self.K = int(deltas.shape[0])
        self.psi = float(psi)
        self.register_buffer("deltas", deltas.detach().float().clone())
        self.register_buffer("scale", torch.ones(self.K) if scale is None else scale.detach().float().clone())

    def pair(self, gen, z, k, eps):
        self.check_k(k)
        return param_pair(
            gen, z, self.layer, self.deltas, k, eps * self.scale[k], psi=self.psi, mode=self.resolved_pair_mode()
        )


def family_from_set(gen: Generator, dset: DirectionSet, *, eps_max: float = 6.0, psi: float = 1.0) -> ShiftFamily:
    """A fixed family of a saved direction set, each direction probed over its suggested range.

    Direction k is shifted by ``eps * max|range_k| / eps_max``, so the trainer's
    ``eps ~ U[-eps_max, eps_max]`` sweeps each direction's own range. Latent directions must
    share one space; parameter directions one layer.
    """
    if len(dset) == 0:
        raise AtlasError(f"{dset.title}: the direction set is empty")
    kinds = {d.kind for d in dset.directions}
    if len(kinds) != 1:
        raise AtlasError(f"{dset.title}: mixes latent and parameter directions; RCA needs one kind")
    scale = torch.tensor([max(abs(d.range[0]), abs(d.range[1])) / eps_max for d in dset.directions])
    if kinds == {"latent"}:
        spaces = {d.space for d in dset.directions}
        if len(spaces) != 1:
            raise AtlasError(f"{dset.title}: directions live in different spaces ({', '.join(sorted(spaces))})")
        space = spaces.pop()
        gen.check_space(space)
        vecs, masks = [], []
        for i, d in enumerate(dset.directions):
            v = d.vector.float()
            if space == "w+":
                lo, hi = d.layers if d.layers is not None else (0, gen.num_ws)
                mask = torch.zeros(gen.num_ws)
                mask[lo:hi] = 1
                if v.dim() == 2:  # a per-layer vector: keep its first row in range, the mask does the rest
                    v = v[lo]
                masks.append(mask)
            want = gen.z_dim if space == "z" else gen.w_dim
            if v.numel() != want:
                raise AtlasError(
                    f"{dset.title}: direction {i} has {v.numel()} values; {gen.name} needs {want} in {space}"
                )
            vecs.append(v.reshape(-1))
        A = torch.stack(vecs, dim=1)
        return LatentShifts(
            A, "fixed", space=space, layer_mask=torch.stack(masks) if masks else None, psi=psi, scale=scale
        )
    layers = {d.layer for d in dset.directions}
    if len(layers) != 1:
        raise AtlasError(f"{dset.title}: parameter directions shift different layers ({', '.join(sorted(layers))})")
    layer = layers.pop()
    info = gen.layer_info(layer)
    deltas = torch.stack([dset.param_delta(i).float() for i in range(len(dset))])
    if tuple(deltas.shape[1:]) != tuple(info.shape):
        raise AtlasError(
            f"{dset.title}: its shifts of {layer} have shape {tuple(deltas.shape[1:])}; "
            f"{gen.name} has {tuple(info.shape)}"
        )
    return ParamShifts(layer, deltas, psi=psi, scale=scale)


def stream_generator(purpose: str, seed: int, rank: int, index: int) -> torch.Generator:
    """A CPU ``torch.Generator`` for batch ``index`` of stream (purpose, seed, rank).

    Random numbers are a function of these four values only, so a resumed run draws exactly the
    batches the uninterrupted run would have, each rank of a distributed run draws its own, and
    evaluation batches (purpose "rca") never coincide with training batches.
    """
    import hashlib

    digest = hashlib.blake2b(f"{purpose}:{seed}:{rank}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def sample_shift_batch(
    g: torch.Generator, batch: int, z_dim: int, K: int, eps_max: float = 6.0, eps_min: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``z [B, z_dim] ~ N(0, I)``, ``k [B] ~ U{0..K-1}``, ``eps [B]`` (CPU tensors).

    ``eps ~ U[-eps_max, eps_max]`` pushed away from 0: ``sign(eps) * max(|eps|, eps_min)``
    (Voynov & Babenko: 6 and 0.5).
    """
    z = torch.randn(batch, z_dim, generator=g)
    k = torch.randint(K, (batch,), generator=g)
    eps = (torch.rand(batch, generator=g) * 2 - 1) * eps_max
    sign = torch.where(eps < 0, -1.0, 1.0)
    return z, k, sign * eps.abs().clamp_min(eps_min)
