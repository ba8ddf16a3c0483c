"""Shared pieces of the parameter-space methods (Cherepkov, Voynov & Babenko 2021).

All four methods shift the weight ``W`` of one editable layer (the model's
``default_edit_layer`` unless the user names another), the rest of the generator frozen.

Units of shift magnitudes: a parameter direction's expanded shift has the Frobenius norm of the
layer's weight (``engine.directions.ParamBasis``), so ``t = 0.1`` changes the layer by 10 % of
``||W||_F`` whatever the model: this is what makes one default range work on any generator.
Each method's default suggested range was chosen by looking at grids on digiface-dcgan-64
(see README "Parameter-space methods").

Bases (stored once per set, directions are coefficient vectors over them):

* ``svd``: ``W`` flattened to ``[shape[0], prod(shape[1:])] = U diag(s) V^T``; coefficients
  ``xi`` (unit length) shift the singular values, ``diag(s) -> diag(s + xi)``.
* ``dense``: explicit weight-shaped vectors, e.g. Hessian eigenvectors.
"""

from __future__ import annotations

import torch

from engine.directions import Direction, DirectionSet, ParamBasis, model_ref
from engine.errors import AtlasError
from engine.models.base import Generator, LayerInfo


def resolve_layer(gen: Generator, name: str = "") -> LayerInfo:
    """The editable layer ``name`` (empty: the model's default), or an ``AtlasError`` listing them."""
    layers = gen.editable_layers()
    if not layers:
        raise AtlasError(f"model '{gen.name}' has no editable layers for parameter-space methods")
    name = name or gen.default_edit_layer or layers[len(layers) // 2].name
    return gen.layer_info(name)


def weight_of(gen: Generator, layer: str) -> torch.Tensor:
    """The layer's weight as a detached float32 CPU tensor of shape ``LayerInfo.shape``."""
    return gen.layer_weight(layer).detach().float().cpu()


def svd_basis(gen: Generator, layer: str) -> ParamBasis:
    """SVD basis of the flattened weight: ``U [r0, r]``, ``S [r]``, ``V [cols, r]``, r = min(r0, cols)."""
    W = weight_of(gen, layer)
    W2 = W.reshape(W.shape[0], -1).double()
    U, S, Vh = torch.linalg.svd(W2, full_matrices=False)
    return ParamBasis(
        layer,
        "svd",
        tuple(W.shape),
        float(W.norm()),
        {"U": U.float().contiguous(), "S": S.float().contiguous(), "V": Vh.T.float().contiguous()},
    )


def dense_basis(gen: Generator, layer: str, vectors: torch.Tensor) -> ParamBasis:
    """A basis of explicit weight shifts ``vectors [r, *shape]`` (e.g. Hessian eigenvectors)."""
    W = weight_of(gen, layer)
    if tuple(vectors.shape[1:]) != tuple(W.shape):
        raise ValueError(f"basis vectors of shape {tuple(vectors.shape[1:])} do not fit {layer} {tuple(W.shape)}")
    return ParamBasis(
        layer, "dense", tuple(W.shape), float(W.norm()), {"vectors": vectors.detach().float().cpu().contiguous()}
    )


def basis_set(
    method: str,
    gen: Generator,
    basis: ParamBasis,
    coeffs: torch.Tensor,
    *,
    scores=None,
    range_: tuple[float, float],
    params: dict,
    infos: list[dict] | None = None,
) -> DirectionSet:
    """A direction set whose K directions are ``coeffs [K, r]`` over ``basis`` (rows normalised).

    Scores and per-direction infos are optional; shifts are fractions of ``||W||_F``.
    """
    coeffs = coeffs.detach().float().cpu()
    coeffs = coeffs / coeffs.norm(dim=1, keepdim=True).clamp_min(1e-12)
    K = coeffs.shape[0]
    scores = list(scores) if scores is not None else [None] * K
    infos = infos or [{} for _ in range(K)]
    dirs = [
        Direction(
            "param",
            vector=c.clone(),
            layer=basis.layer,
            basis="layer",
            score=None if s is None else float(s),
            range=tuple(map(float, range_)),
            info=dict(i),
        )
        for c, s, i in zip(coeffs, scores, infos)
    ]
    dset = DirectionSet(
        method=method, model=model_ref(gen), directions=dirs, params=dict(params), bases={"layer": basis}
    )
    dset.metrics["layer"] = basis.layer
    dset.metrics["weight_norm"] = basis.weight_norm
    return dset
