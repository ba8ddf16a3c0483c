"""Projection speed on the CPU, as ratios measured in one run.

For each model: seconds per step of the latent fit (``engine.projection.project``) and of pivotal
tuning (``tune``), each as a multiple of one plain forward + backward of the generator at batch 1,
and the wall time a full default projection (500 steps; + 350 tuning steps) would take here.

    .venv/bin/python bench/bench_projection.py [--threads N] [--steps 40] [--model M ...]

Models: the default face model, and a 64 px StyleGAN2 fixture from ../shared/fixtures when present.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.jobs import run_job  # noqa: E402
from engine.models import load_generator  # noqa: E402
from engine.projection import ProjectParams, TuneParams, project, tune  # noqa: E402
from engine.render import to_uint8  # noqa: E402


def forward_backward(gen, space: str) -> float:
    z = gen.seed_latents([0]).to(gen.device)
    code = gen.encode(z, space).detach().requires_grad_(True) if space != "z" else z.requires_grad_(True)

    def once():
        x = gen.decode(code, space)
        torch.autograd.grad(x.square().mean(), [code])

    once()
    t0 = time.perf_counter()
    for _ in range(5):
        once()
    return (time.perf_counter() - t0) / 5


def per_step(job, steps: int) -> float:
    times = []

    def note(rec):
        if rec.step >= 1:
            times.append(time.perf_counter())

    result = run_job(job, note)
    # steps 2..N: excludes set-up (candidates, w statistics) and the final evaluation
    return (times[steps - 1] - times[1]) / (steps - 2), result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--model", action="append", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = args.model or ["digiface-dcgan-64"]
    fixture = REPO.parent / "shared" / "fixtures" / "rosinality_s64_train.pt"
    if args.model is None and fixture.is_file():
        models.append(str(fixture))
    print(f"{torch.get_num_threads()} threads, cpu, {args.steps} steps per measurement (pixel distance)")
    for spec in models:
        gen = load_generator(spec, device="cpu")
        space = "w" if "w" in gen.spaces else "z"
        fb = forward_backward(gen, space)
        with torch.no_grad():
            target = to_uint8(gen.decode(gen.encode(gen.seed_latents([3]), space), space))[0]
        p = ProjectParams(steps=args.steps, stats_samples=2000)
        t_fit, lat = per_step(project(gen, target, p, distance="pixel"), args.steps)
        t_tune, _ = per_step(tune(gen, lat, target, TuneParams(steps=args.steps), distance="pixel"), args.steps)
        starts = p.starts if space == "z" else 1
        print(f"\n{gen.name} ({gen.resolution}px, fit in {space}, {starts} start(s)):")
        print(f"  forward+backward, batch 1: {fb * 1000:7.1f} ms")
        print(f"  fit step:                  {t_fit * 1000:7.1f} ms  = {t_fit / fb:5.2f} x forward+backward")
        print(f"  tuning step:               {t_tune * 1000:7.1f} ms  = {t_tune / fb:5.2f} x forward+backward")
        print(
            f"  default projection (500 steps): about {500 * t_fit:.0f} s; with tuning (+350): "
            f"about {500 * t_fit + 350 * t_tune:.0f} s"
        )


if __name__ == "__main__":
    main()
