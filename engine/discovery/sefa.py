"""SeFa, closed-form factorisation of latent semantics (Shen & Zhou, CVPR 2021).

The first layer that consumes the latent is affine, ``y = A n + b``, so moving the latent by
``alpha * n`` moves ``y`` by ``alpha * A n``. The unit directions that move ``y`` most are the
top eigenvectors of ``A^T A``; the eigenvalues (squared singular values of A) are the scores.

* DCGAN: A is the first ConvTranspose (1x1 -> 4x4) reshaped to ``(C * 4 * 4, nz)`` with the
  following eval-mode BatchNorm's per-channel scale ``gamma / sqrt(var + eps)`` folded into its
  rows (the BatchNorm is part of the same affine map); directions live in z.
* StyleGAN2: A stacks the style affines of the selected layers, ``[sum C_in, w_dim]``, each row
  (one style channel) normalised to unit length as SeFa's code does; directions live in w, or in
  w+ restricted to the selected layer range.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import torch

from engine.directions import DirectionSet, model_ref
from engine.discovery.registry import register_method
from engine.errors import AtlasError
from engine.jobs import Progress
from engine.models.base import FIRST_LATENT_LAYER, STYLE_AFFINES
from engine.params import validate_params

# Suggested shift range per space (unit directions): z ~ N(0, I_100) has norm ~10, so +-5 is a
# clear but on-manifold edit; w codes of StyleGAN2 are larger and SeFa's own demo uses +-3..+-5.
DEFAULT_RANGE = {"z": 5.0, "w": 5.0, "w+": 5.0}


@dataclass(frozen=True)
class Params:
    k: int = field(
        default=32,
        metadata={
            "help": "directions kept: the top-k eigenvectors (at most the latent dimension)",
            "min": 1,
            "max": 4096,
        },
    )
    layers: str = field(
        default="all",
        metadata={
            "help": "StyleGAN2: w+ layer indices whose style affines are factorised, e.g. all, 0-1, 2-5 "
            "(edits then act on that range); DCGAN: ignored (its first layer)"
        },
    )
    normalize: str = field(
        default="auto",
        metadata={
            "help": "normalise each row of A to unit length: auto (StyleGAN2 yes, as SeFa; DCGAN no, so the "
            "folded BatchNorm scale counts), yes or no",
            "choices": ("auto", "yes", "no"),
        },
    )
    torgb: bool = field(
        default=False,
        metadata={
            "help": "StyleGAN2: also factorise the toRGB layers' style affines (SeFa uses the convolution styles)"
        },
    )
    shift: float = field(default=0.0, metadata={"help": "suggested shift range +-shift (0: 5 in z and w)", "min": 0.0})

    def __post_init__(self) -> None:
        validate_params(self)


def parse_layer_range(text: str, num_ws: int) -> tuple[int, int] | None:
    """``"all"`` -> None; ``"2-5"`` / ``"3"`` / ``"2,3,4"`` -> ``(start, stop)``, contiguous, within num_ws."""
    text = str(text).strip().lower()
    if text in ("all", "", "*"):
        return None
    idx: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                idx.extend(range(a, b + 1))
            elif part:
                idx.append(int(part))
    except ValueError:
        raise AtlasError(f"layers '{text}': expected all, a range such as 2-5, or indices such as 2,3") from None
    idx = sorted(set(idx))
    if not idx or idx[0] < 0 or idx[-1] >= num_ws:
        raise AtlasError(f"layers '{text}': w+ layer indices must lie in 0..{num_ws - 1}")
    if idx != list(range(idx[0], idx[-1] + 1)):
        raise AtlasError(f"layers '{text}': edits act on a contiguous w+ range; give e.g. {idx[0]}-{idx[-1]}")
    return idx[0], idx[-1] + 1


def style_matrix(gen, layer_range: tuple[int, int] | None, *, torgb: bool = False) -> torch.Tensor:
    """``[sum C_in, w_dim]`` float64: the style affines of the w+ layers in ``layer_range`` (all if None).

    toRGB layers are left out unless ``torgb``.
    """
    rows = []
    kinds = {info.name: info.kind for info in gen.editable_layers()}
    for name, ws_index, weight in gen.style_affines():
        if not torgb and (kinds.get(name) == "torgb" or "rgb" in name.rsplit(".", 1)[-1].lower()):
            continue
        if layer_range is None or layer_range[0] <= ws_index < layer_range[1]:
            rows.append(weight.detach().double())
    if not rows:
        raise AtlasError(f"model '{gen.name}' has no style affines in w+ layers {layer_range}")
    return torch.cat(rows, dim=0)


def factorize(A: torch.Tensor, *, normalize_rows: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of ``A^T A`` (``A [m, d]``): (eigenvalues ``[d]`` descending, vectors ``[d, d]`` columns)."""
    A = A.double()
    if normalize_rows:
        A = A / A.norm(dim=1, keepdim=True).clamp_min(1e-12)
    vals, vecs = torch.linalg.eigh(A.T @ A)
    order = torch.argsort(vals, descending=True)
    return vals[order].clamp_min(0), vecs[:, order]


@register_method(
    "sefa",
    Params,
    kind="latent",
    summary="closed-form factorisation of the first latent layer (Shen & Zhou)",
    requires=(STYLE_AFFINES, FIRST_LATENT_LAYER),
)
def run(gen, params: Params, *, device="cpu", state=None) -> Iterator[Progress]:
    """Job (one step): the top-k SeFa directions, unit vectors, scores = eigenvalues."""
    yield Progress(0, 1, stage="factorise")
    if gen.supports(STYLE_AFFINES):
        layer_range = parse_layer_range(params.layers, gen.num_ws)
        A = style_matrix(gen, layer_range, torgb=params.torgb)
        space = "w" if layer_range is None else "w+"
        normalize = params.normalize != "no"
    elif gen.supports(FIRST_LATENT_LAYER):
        layer_range = None
        first = gen.first_latent_layer()
        A = first.matrix
        space = "z"
        normalize = first.normalize_rows if params.normalize == "auto" else params.normalize == "yes"
    else:
        raise AtlasError(
            f"SeFa needs style affines or the first latent-consuming layer; model '{gen.name}' ({gen.family}) "
            "declares neither"
        )
    vals, vecs = factorize(A, normalize_rows=normalize)
    k = min(params.k, vecs.shape[1])
    T = params.shift or DEFAULT_RANGE[space]
    dset = DirectionSet.latent(
        "sefa",
        model_ref(gen),
        vecs[:, :k].T.float(),
        space=space,
        layers=layer_range,
        scores=vals[:k].tolist(),
        range_=(-T, T),
        params=asdict(params),
    )
    total = float(vals.sum())
    for d, v in zip(dset.directions, vals[:k].tolist(), strict=True):
        d.info["energy_fraction"] = v / total if total > 0 else 0.0
    dset.metrics.update({"eigenvalues": vals[:k].tolist(), "matrix_shape": list(A.shape), "normalized_rows": normalize})
    yield Progress(1, 1, stage="factorise", metrics={"eigenvalues": vals[:k].float().cpu().numpy()})
    return dset
