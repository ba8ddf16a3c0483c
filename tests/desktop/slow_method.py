"""A test-only discovery method registered for the GUI tests: it drives the panel (progress,
metrics, partial sets, cancel) without depending on which real methods have landed.

It computes something real and checkable: the top-K principal directions of the generator's
first-layer output over sampled z (power iterations on the Gram matrix, one step per yield),
so partial results are genuine orthonormal direction sets whose eigenvalue estimates converge.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from engine.directions import DirectionSet, model_ref
from engine.discovery.registry import get_method, methods, register_method
from engine.jobs import Progress
from engine.models.base import FIRST_LATENT_LAYER

NAME = "test-power-iteration"


@dataclass(frozen=True)
class Params:
    k: int = field(default=4, metadata={"help": "number of directions"})
    steps: int = field(default=20, metadata={"help": "power iterations"})
    delay: float = field(default=0.0, metadata={"help": "seconds to sleep per step (to test cancel)"})
    normalise: bool = field(default=True, metadata={"help": "unit-length directions"})
    mode: str = field(default="gram", metadata={"help": "matrix to factorise", "choices": ("gram", "identity")})


def run(gen, params: Params, *, device, state=None):
    w = gen.main[0].weight.detach().to(device)  # [nz, C, 4, 4]
    A = w.reshape(w.shape[0], -1).T  # [C*16, nz]
    M = A.T @ A if params.mode == "gram" else torch.eye(A.shape[1], device=device)
    g = torch.Generator().manual_seed(0)
    Q = torch.linalg.qr(torch.randn(M.shape[0], params.k, generator=g).to(device))[0]
    for step in range(1, params.steps + 1):
        Q = torch.linalg.qr(M @ Q)[0]
        eig = torch.diag(Q.T @ M @ Q)
        partial = DirectionSet.latent(NAME, model_ref(gen), Q.T.cpu(), scores=eig.tolist(), params=params.__dict__)
        if params.delay:
            time.sleep(params.delay)
        yield Progress(
            step,
            params.steps,
            stage="power",
            metrics={"residual": float((M @ Q - Q * eig).norm()), "eigenvalues": eig.cpu().numpy()},
            partial=partial,
            snapshot=lambda Q=Q: {"Q": Q.clone()},  # a closure, as the real methods' resumable state is
        )
    return partial


if NAME not in {m.name for m in methods()}:
    register_method(
        NAME,
        Params,
        kind="latent",
        summary="test-only: power iteration on the first layer's Gram matrix",
        requires=(FIRST_LATENT_LAYER,),
    )(run)
SPEC = get_method(NAME)
