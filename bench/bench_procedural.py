"""Procedural training speed, as ratios measured in one run.

1. images/s of the procedural renderer (numpy, batch 32 and 256) vs images/s of one StyleGAN2
   training iteration (G step + D step, lazy R1 amortised) at the default training config: how far
   the data is from being the bottleneck;
2. images/s of the factor regressor's inference (``predict_factors``) vs the built-in generator's
   forward at batch 64: the cost of scoring generated images against the ground truth.

    .venv/bin/python bench/bench_procedural.py [--threads 1] [--steps 16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data.procedural import N_FACTORS, render  # noqa: E402
from engine.data.regressor import load_regressor, predict_factors  # noqa: E402
from engine.training.stylegan2 import TrainConfig, build_state, train_step  # noqa: E402


def timed(fn, reps: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=16, help="training iterations to time (R1 runs every 16)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    cfg = TrainConfig.make()
    B = cfg.batch_size
    f32, f256 = rng.random((B, N_FACTORS), dtype=np.float32), rng.random((256, N_FACTORS), dtype=np.float32)
    render_32 = B / timed(lambda: render(f32, cfg.resolution), 20)
    render_256 = 256 / timed(lambda: render(f256, cfg.resolution), 5)

    st = build_state(cfg, torch.device("cpu"))
    reals = torch.from_numpy(render(f32, cfg.resolution))
    train_step(st, reals)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        train_step(st, reals)
    train_ips = args.steps * B / (time.perf_counter() - t0)

    print(f"threads {args.threads}, {cfg.resolution}px, batch {B}, G widths {cfg.generator_config().channels}")
    print(f"renderer           {render_32:9.0f} img/s (batch {B}), {render_256:.0f} img/s (batch 256)")
    print(f"training iteration {train_ips:9.1f} img/s")
    print(f"renderer / training = {render_32 / train_ips:.0f}x  (data share of a step {train_ips / render_32:.2%})")

    try:
        from engine.models import load_generator

        gen = load_generator("procedural-stylegan2-32", device="cpu")
    except Exception as exc:  # noqa: BLE001 - the built-in may not be trained yet
        print(f"(built-in generator unavailable: {exc})")
        return
    reg = load_regressor()
    z = gen.sample_latents(64, seed=0)
    with torch.no_grad():
        imgs = gen(z)
        g_ips = 64 / timed(lambda: gen(z), 5)
    r_ips = 64 / timed(lambda: predict_factors(imgs, reg), 5)
    print(f"generator forward  {g_ips:9.0f} img/s (batch 64); regressor {r_ips:.0f} img/s")
    print(f"regressor / generator = {r_ips / g_ips:.1f}x")


if __name__ == "__main__":
    main()
