"""Reconstructor training speed by pair mode: both images of a pair in ONE forward vs two passes.

Trains the same family and reconstructor for the same steps (same seeds, same batches) in each
``pair_mode`` in one run — ``one`` (2B samples in one forward/backward; parameter shifts share the
layers before the edit), ``two`` (G(z) under no_grad, then the shifted images) — and prints steps/s,
the ratio one/two and which mode ``auto`` picks. Families: the latent-recon direction matrix
(trainable, ortho), param-opt's trainable coefficients over the SVD basis of the default layer,
and fixed parameter shifts of that layer (the RCA protocol of a parameter set).

    .venv/bin/python bench/bench_reconstructor.py [--model digiface-dcgan-64] [--threads 2] [--steps 15] [--k 16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.discovery.param_opt import BasisShifts, initial_coefficients  # noqa: E402
from engine.discovery.param_space import svd_basis  # noqa: E402
from engine.discovery.reconstructor import TrainConfig, train_reconstructor  # noqa: E402
from engine.discovery.shifts import LatentShifts, ParamShifts  # noqa: E402
from engine.jobs import run_job  # noqa: E402
from engine.models import load_generator  # noqa: E402


def steps_per_second(gen, make_family, mode: str, cfg: TrainConfig, warmup: int = 2) -> float:
    fam = make_family()
    fam.pair_mode = mode
    times: list[float] = []
    last = [time.perf_counter()]

    def tick(rec):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    run_job(train_reconstructor(gen, fam, cfg), tick)
    timed = times[warmup:-1]  # the last step includes the final RCA measurement
    return len(timed) / sum(timed)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="digiface-dcgan-64")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = load_generator(args.model, device="cpu")
    cfg = TrainConfig(
        steps=args.steps + 3,
        batch_size=args.batch_size,
        rca_samples=8,
        rca_batch=8,
        rca_every=10**9,
        checkpoint_every=10**9,
    )
    print(
        f"model {gen.name}, {torch.get_num_threads()} threads, cpu, batch {args.batch_size} pairs, K={args.k}, "
        f"{args.steps} timed steps"
    )
    space_dim = gen.w_dim if gen.num_ws else gen.z_dim
    layer = gen.default_edit_layer
    W = gen.layer_weight(layer).detach()
    g = torch.Generator().manual_seed(0)
    deltas = torch.randn(args.k, *W.shape, generator=g)
    deltas = deltas * (W.norm() / deltas.flatten(1).norm(dim=1)).view(-1, *[1] * W.dim())
    basis = svd_basis(gen, layer)
    families = {
        "latent A (trainable, ortho)": lambda: LatentShifts(
            torch.eye(space_dim)[:, : args.k], "ortho", space="w" if gen.num_ws else "z"
        ),
        "param-opt coefficients (trainable)": lambda: BasisShifts(
            basis, initial_coefficients(args.k, basis.rank, 0), scale=0.2 / 6
        ),
        f"param shifts of {layer} (fixed)": lambda: ParamShifts(layer, deltas, scale=torch.full((args.k,), 0.1 / 6)),
    }
    for name, make in families.items():
        one = steps_per_second(gen, make, "one", cfg)
        two = steps_per_second(gen, make, "two", cfg)
        print(
            f"  {name:<34} one forward {one:6.2f} steps/s   two passes {two:6.2f} steps/s   "
            f"ratio {one / two:.2f}x   auto picks {make().resolved_pair_mode()}"
        )


if __name__ == "__main__":
    main()
