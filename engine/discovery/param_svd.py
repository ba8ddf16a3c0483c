"""``param-svd``: the rank-1 singular directions of one layer's weight (Cherepkov et al. 2021, SVD basis).

The layer weight flattened to 2-D is ``W = U diag(s) V^T``. Direction k shifts one singular
value, ``diag(s) -> diag(s + t' e_k)``, i.e. ``W + t' u_k v_k^T``: the unit coefficient vector
``e_k`` over the SVD basis. The paper uses this basis as the search space of its optimisation
method and notes that single singular directions already give meaningful edits; here they are
browsable directly. K = the top-K singular values; scores = singular values.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import torch

from engine.discovery.param_space import basis_set, resolve_layer, svd_basis
from engine.discovery.registry import register_method
from engine.errors import AtlasError
from engine.jobs import Progress, wait_for
from engine.params import validate_params

# Default suggested range, in fractions of ||W||_F; chosen on digiface-dcgan-64 grids (README).
SVD_RANGE = 0.2


@dataclass(frozen=True)
class Params:
    k: int = field(
        default=16, metadata={"help": "number of directions: the top-K singular values", "min": 1, "max": 4096}
    )
    layer: str = field(default="", metadata={"help": "editable layer to shift (empty: the model's default)"})
    range: float = field(
        default=SVD_RANGE,
        metadata={"help": "suggested shift range +-T, as a fraction of the layer's weight norm", "min": 0.0},
    )

    def __post_init__(self) -> None:
        validate_params(self)
        if self.range <= 0:
            raise AtlasError(f"parameter range={self.range} must be positive")


@register_method(
    "param-svd", Params, kind="param", summary="rank-1 singular directions of one layer's weight (Cherepkov et al.)"
)
def run(gen, params: Params, *, device="cpu", state=None) -> Iterator[Progress]:
    """Job (closed form): the top-K singular directions of the layer; returns a ``DirectionSet``."""
    info = resolve_layer(gen, params.layer)
    yield Progress(0, 1, stage="svd", message=f"SVD of {info.name} {'x'.join(map(str, info.shape))}")
    basis = yield from wait_for(svd_basis, gen, info.name, record=Progress(0, 1, stage="svd"))  # one LAPACK call
    r = basis.rank
    if params.k > r:
        raise AtlasError(f"k={params.k} exceeds the rank {r} of {info.name}'s flattened weight; use k <= {r}")
    coeffs = torch.eye(r)[: params.k]
    S = basis.tensors["S"]
    infos = [{"singular_index": k, "singular_value": float(S[k])} for k in range(params.k)]
    dset = basis_set(
        "param-svd",
        gen,
        basis,
        coeffs,
        scores=S[: params.k].tolist(),
        range_=(-params.range, params.range),
        params={**asdict(params), "layer": info.name},
        infos=infos,
    )
    dset.metrics["singular_values"] = S.tolist()
    yield Progress(1, 1, stage="svd", metrics={"singular_values": S[: params.k].float().cpu().numpy()}, partial=dset)
    return dset
