"""Build a parameter-space SVD direction set for one layer (Cherepkov et al. 2021, "SVD basis").

The layer weight flattened to ``[C_out, C_in * k * k]`` is ``U diag(s) V^T``; direction k shifts
the k-th singular value, ``delta_k = u_k v_k^T`` rescaled to the weight's Frobenius norm (the
project's unit: t is a fraction of ||W||). Used for the README's analysis figures while the
``discover --method param-svd`` command was not yet on main; it writes an ordinary direction set.

    python scripts/param_svd_set.py --model digiface-dcgan-64 --layer main.6 --k 16 --out sets/param_svd.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.directions import Direction, DirectionSet, ParamBasis, model_ref  # noqa: E402
from engine.models import load_generator  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="digiface-dcgan-64")
    ap.add_argument("--layer", default=None, help="default: the model's default edit layer")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--range", type=float, default=0.3, help="suggested range [-T, T] (fraction of ||W||)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    gen = load_generator(args.model, device="cpu")
    layer = args.layer or gen.default_edit_layer
    W = gen.layer_weight(layer).detach().float()
    flat = W.reshape(W.shape[0], -1)
    U, S, Vh = torch.linalg.svd(flat, full_matrices=False)
    basis = ParamBasis(layer, "svd", tuple(W.shape), float(W.norm()), {"U": U, "S": S, "V": Vh.T.contiguous()})
    dirs = []
    for k in range(min(args.k, S.numel())):
        coeffs = torch.zeros(S.numel())
        coeffs[k] = 1.0
        dirs.append(Direction("param", vector=coeffs, layer=layer, basis="svd", score=float(S[k]),
                              range=(-args.range, args.range), info={"singular_index": k}))
    dset = DirectionSet(method="param-svd", model=model_ref(gen), directions=dirs, bases={"svd": basis},
                        params={"layer": layer, "k": len(dirs), "built_by": "scripts/param_svd_set.py"})
    path = dset.save(args.out)
    print(f"wrote {path}: {len(dirs)} SVD directions of {layer} {tuple(W.shape)}, range +-{args.range}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
