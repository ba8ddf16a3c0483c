"""StyleGAN2 on the CPU: fused (grouped per-sample weights) vs unfused (scaled activations) modconv.

Ratios measured in one run on a freshly initialised generator (the numbers do not depend on the
weights):

1. one training step (mapping + synthesis with random noise, forward + backward);
2. eval-mode rendering of a batch, also at batch 1.

By default (``StyleGAN2Generator.fused_modconv = None``) only CUDA in eval mode runs fused;
edited layers always run fused.

    .venv/bin/python bench/bench_stylegan2.py [--threads N] [--resolution 32] [--width 128] [--batch 16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator  # noqa: E402


def timed(fn, reps: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = StyleGAN2Config.standard(
        a.resolution, channel_base=a.width * 16, channel_max=a.width, z_dim=128, w_dim=128, mapping_layers=4
    )
    g = StyleGAN2Generator(cfg)
    z = torch.randn(a.batch, 128)
    print(f"{a.resolution}px, widths {cfg.channels}, batch {a.batch}, {a.threads} threads")

    def step():
        g.zero_grad(set_to_none=True)
        g.synthesis(g.mapping(z), noise="random").square().mean().backward()

    @torch.no_grad()
    def render():
        g.synthesis(g.mapping(z), noise="const")

    @torch.no_grad()
    def render1():
        g.synthesis(g.mapping(z[:1]), noise="const")

    for label, mode, fn in [
        ("train step", True, step),
        ("eval render", False, render),
        ("eval batch 1", False, render1),
    ]:
        g.train(mode)
        times = {}
        for fused in (True, False):
            g.fused_modconv = fused
            times[fused] = timed(fn, a.reps)
        print(
            f"{label:12s} fused {times[True] * 1e3:8.1f} ms  unfused {times[False] * 1e3:8.1f} ms  "
            f"fused/unfused {times[True] / times[False]:.2f}"
        )


if __name__ == "__main__":
    main()
