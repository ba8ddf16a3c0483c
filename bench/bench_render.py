"""Rendering speed on the default model, as ratios measured in one run.

1. images/s of ``engine.render.render_items`` (what the app uses: batching, edits, uint8) vs the raw
   generator forward, at batch 1 and 64;
2. a parameter-edit grid (K directions x S shifts x M seeds) rendered batched (one forward serves
   every (direction, t) pair) vs the naive loop that patches the layer's weight once per
   (direction, t) and renders the seeds.

    .venv/bin/python bench/bench_render.py [--model M] [--threads N] [--layer main.6]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.directions import Direction  # noqa: E402
from engine.jobs import run_job  # noqa: E402
from engine.models import load_generator  # noqa: E402
from engine.render import Item, render_grid, render_items, to_uint8  # noqa: E402


def timed(fn, reps: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="digiface-dcgan-64")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layer", default=None)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--shifts", type=int, default=7)
    ap.add_argument("--seeds", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = load_generator(args.model, device="cpu")
    print(f"model {gen.name}, {torch.get_num_threads()} threads, device cpu")

    print("\n1. render_items vs raw forward (images/s)")
    for batch in (1, 64):
        z = gen.sample_latents(batch, seed=0)
        items = [Item(c) for c in z]
        reps = 20 if batch == 1 else 3
        with torch.no_grad():
            t_raw = timed(lambda z=z: to_uint8(gen(z)), reps)
        t_app = timed(lambda items=items: run_job(render_items(gen, items, batch_size=64)), reps)
        print(
            f"  batch {batch:>3}: raw forward {batch / t_raw:8.1f} img/s   render {batch / t_app:8.1f} img/s   "
            f"render/raw = {t_raw / t_app:.2f}"
        )

    layers = [args.layer] if args.layer else [i.name for i in gen.editable_layers()]
    shifts = torch.linspace(-0.3, 0.3, args.shifts).tolist()
    print(
        f"\n2. parameter-edit grid: {args.k} directions x {args.shifts} shifts x M seeds, "
        "batched (shared prefix, one conv(x, D) per seed and direction) vs naive in-place patch loop"
    )
    for layer in layers:
        for n_seeds in sorted({1, args.seeds}):
            t_b, t_n = grid_vs_naive(gen, layer, args.k, shifts, n_seeds)
            n_img = args.k * len(shifts) * n_seeds
            mark = "  (default layer)" if layer == gen.default_edit_layer else ""
            print(
                f"  {layer:<24} M={n_seeds}: batched {n_img / t_b:7.1f} img/s   naive {n_img / t_n:7.1f} img/s   "
                f"speed-up = {t_n / t_b:.2f}x{mark}"
            )


def grid_vs_naive(gen, layer: str, k: int, shifts: list[float], n_seeds: int) -> tuple[float, float]:
    W = gen.layer_weight(layer)
    torch.manual_seed(0)
    dirs = []
    for _ in range(k):
        d = torch.randn_like(W)
        dirs.append(Direction("param", layer=layer, delta=d * (W.norm() / d.norm())))
    z = gen.seed_latents(range(n_seeds))

    def batched():
        return run_job(render_grid(gen, z, dirs, shifts, batch_size=64))

    def naive():
        out = []
        with torch.no_grad():
            for d in dirs:
                for t in shifts:
                    W.add_(t * d.delta)
                    out.append(to_uint8(gen(z)))
                    W.sub_(t * d.delta)
        return out

    return timed(batched, 2), timed(naive, 2)


if __name__ == "__main__":
    main()
