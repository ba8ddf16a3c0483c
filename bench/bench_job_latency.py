"""Cancel latency of ``param-spectrum``: the longest wait between two yields of the job.

A job is cancelled by closing it at a yield, so the longest gap between yields is the longest a
cancel (the GUI's Cancel, Ctrl-C on the command line) can wait. The job now yields after every
pass of a block product (passes are sized to ``LayerHessian.pass_seconds``); before, it yielded
once per LOBPCG iteration, i.e. once per whole block product. One run measures both: the gaps
between all yields, and the gaps between the iteration records (the old yields); a second run with the fixed pass schedule gives
what the time-sliced passes cost in throughput.

    .venv/bin/python bench/bench_job_latency.py [--model digiface-dcgan-64] [--samples 16] [--steps 2]

The distance is LPIPS (alex) with a random backbone when the backbone file is missing (same
cost as the real one; the eigenvectors are not meaningful then, the timing is). The set-up before
the first pass (importing and building the distance network, seconds on a first run) is reported
apart: neither version can be cancelled inside an import.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine.discovery.param_spectrum as param_spectrum  # noqa: E402
from engine.discovery import get_method  # noqa: E402
from engine.discovery.hessian import LayerHessian  # noqa: E402
from engine.distances import backbone, load_distance  # noqa: E402
from engine.models import load_generator  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="digiface-dcgan-64")
    ap.add_argument("--layer", default="")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    gen = load_generator(args.model, device="cpu")
    if not backbone("alex").present:
        real = load_distance
        param_spectrum.load_distance = lambda name, **kw: real(name, pnet_rand=True, **kw)
        print("note: LPIPS alex backbone file missing; timing with a random backbone (same cost)")
    spec = get_method("param-spectrum")
    params = spec.make_params(k=args.k, layer=args.layer, samples=args.samples, steps=args.steps, tol=0.0)
    timed = measure(spec, gen, params)
    # the same run with the fixed pass schedule (``chunk`` images per pass): what the time-sliced
    # passes cost in throughput
    param_spectrum.LayerHessian = functools.partial(LayerHessian, pass_seconds=None)
    fixed = measure(spec, gen, params)
    param_spectrum.LayerHessian = LayerHessian

    # closing the job at a yield: what a cancel costs once the yield is reached
    job = spec.run(gen, params)
    next(job)
    t0 = time.perf_counter()
    job.close()
    close_s = time.perf_counter() - t0

    print(f"model {gen.name}, layer {params.layer or gen.default_edit_layer}, k={args.k}, samples={args.samples}")
    for name, r in (("time-sliced passes", timed), ("fixed passes", fixed)):
        print(
            f"{name:>19}: {r['yields']} yields in {r['total']:.1f} s ({r['iterations']} iterations, set-up "
            f"{r['setup']:.2f} s); longest gap {r['max_gap']:.3f} s (mean {r['mean_gap']:.3f} s); "
            f"longest gap between iteration records {r['max_iter_gap']:.3f} s"
        )
    print(f"closing the job at a yield: {close_s * 1000:.1f} ms")
    print(
        f"RESULT max_yield_gap_s={timed['max_gap']:.3f} old_max_gap_s={timed['max_iter_gap']:.3f} "
        f"latency_ratio={timed['max_iter_gap'] / timed['max_gap']:.1f} "
        f"throughput_ratio={fixed['total'] / timed['total']:.2f} yields={timed['yields']}"
    )


def measure(spec, gen, params) -> dict:
    """Gaps between the job's yields (all of them, and the iteration records: the old yields)."""
    job = spec.run(gen, params)
    t_start = last = time.perf_counter()
    gaps, iteration_times = [], [t_start]
    n = 0
    while True:
        try:
            rec = next(job)
        except StopIteration:
            break
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
        n += 1
        if rec.state is not None:
            iteration_times.append(now)
    end = time.perf_counter()
    gaps.append(end - last)
    iteration_times.append(end)
    iter_gaps = [b - a for a, b in zip(iteration_times, iteration_times[1:])]
    # the gaps up to "starting the eigensolver" are set-up (imports, building the distance network):
    # one-off, not interruptible by either version, and reported apart
    setup, work = sum(gaps[:2]), gaps[2:]
    iter_gaps[0] -= setup
    return {
        "yields": n,
        "total": end - t_start - setup,
        "setup": setup,
        "iterations": len(iter_gaps) - 1,
        "max_gap": max(work),
        "mean_gap": sum(work) / len(work),
        "max_iter_gap": max(iter_gaps),
    }


if __name__ == "__main__":
    main()
