"""Rendering speed, as ratios measured in one run (interleaved, medians).

Timings are medians of CPU time (one thread), interleaved.

1. The editor's preview (``desktop.rendering.render_preview``: one seed, one edit, the unedited
   'before' from its cache, uint8 out) vs the raw generator forward of one image plus the uint8
   conversion; with a latent edit (``preview_over_raw``) and with a parameter edit of the default
   layer (``preview_param_over_raw``). The cache is warmed by a first render of the seed, as the
   first slider move does.
2. A parameter-edit grid (K directions x S shifts x M seeds) rendered batched
   (``engine.render.render_grid``: shared prefix, linearity at the edited layer) vs the naive loop
   that patches the layer's weight once per (direction, t) and renders the M seeds, for M = 1
   and 4 (``grid_<family>_1seed``, ``grid_<family>_4seeds``: the speed-up).

    .venv/bin/python bench/bench_render.py [--model M] [--layer L] [--threads 1] [--reps 7]

Models: ``digiface-dcgan-64`` (default), ``procedural-stylegan2-32``, a checkpoint path such as
``../shared/fixtures/nvada_skip_res64_fp16.pkl``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from desktop.rendering import BeforeCache, PreviewRequest, render_preview  # noqa: E402
from engine.directions import Direction, DirectionSet, model_ref  # noqa: E402
from engine.jobs import run_job  # noqa: E402
from engine.models import load_generator  # noqa: E402
from engine.render import render_grid, to_uint8  # noqa: E402


def interleaved(fns: dict, reps: int) -> dict[str, float]:
    """Median CPU seconds of each callable, run in turn ``reps`` times after one warm-up each.

    CPU time of this process (one torch thread), so that other jobs on a shared machine do not
    inflate either side."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.process_time()
            fn()
            times[name].append(time.process_time() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def param_dirs(gen, layer: str, k: int) -> list[Direction]:
    W = gen.layer_weight(layer)
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(k):
        d = torch.randn(W.shape, generator=g)
        out.append(Direction("param", layer=layer, delta=d * (W.norm() / d.norm()), range=(-0.2, 0.2)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="digiface-dcgan-64")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--layer", default=None, help="edited layer (default: the model's default edit layer)")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--shifts", type=int, default=7)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--batch-size", type=int, default=64, help="images per forward of the batched grid")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = load_generator(args.model, device="cpu")
    layer = args.layer or gen.default_edit_layer
    family = gen.family
    print(f"model {gen.name} ({family}), layer {layer}, {torch.get_num_threads()} thread(s), cpu")
    fields: dict[str, float] = {}

    # 1. preview vs raw forward
    space = "w" if gen.num_ws else "z"
    g = torch.Generator().manual_seed(1)
    dim = gen.w_dim if gen.num_ws else gen.z_dim
    latent = DirectionSet.latent("bench", model_ref(gen), torch.randn(1, dim, generator=g), space=space)
    pset = DirectionSet("bench", model_ref(gen), param_dirs(gen, layer, 1))
    z = gen.seed_latents([11])
    cache = BeforeCache()
    render_preview(gen, PreviewRequest((11,), space=space), cache)  # the seed's first render fills the cache
    ticks = iter(range(10**9))

    def raw():
        with torch.no_grad():
            to_uint8(gen(z))

    def preview(dset, amount):
        t = amount * (1 + next(ticks) % 5)  # a slider being dragged: a new t every call
        render_preview(gen, PreviewRequest((11,), space=space, shifts=((dset, 0, t),)), cache)

    reps = max(5, args.reps * 3)
    med = interleaved({"raw": raw, "latent": lambda: preview(latent, 0.5), "param": lambda: preview(pset, 0.02)}, reps)
    fields["preview_over_raw"] = med["latent"] / med["raw"]
    fields["preview_param_over_raw"] = med["param"] / med["raw"]
    print(
        f"1. preview, one image: raw forward {med['raw'] * 1e3:.1f} ms; preview with a latent edit "
        f"{med['latent'] * 1e3:.1f} ms ({fields['preview_over_raw']:.2f}x raw); with a parameter edit of {layer} "
        f"{med['param'] * 1e3:.1f} ms ({fields['preview_param_over_raw']:.2f}x raw)"
    )

    # 2. parameter-edit grid vs the naive patch loop
    dirs = param_dirs(gen, layer, args.k)
    shifts = torch.linspace(-0.2, 0.2, args.shifts).tolist()
    W = gen.layer_weight(layer)
    print(f"2. parameter-edit grid of {layer}: {args.k} directions x {args.shifts} shifts x M seeds")
    for n_seeds in sorted({1, args.seeds}):
        zs = gen.seed_latents(range(n_seeds))

        def batched(zs=zs):
            return run_job(render_grid(gen, zs, dirs, shifts, batch_size=args.batch_size))

        def naive(zs=zs):
            out = []
            with torch.no_grad():
                for d in dirs:
                    for t in shifts:
                        W.add_(t * d.delta)
                        out.append(to_uint8(gen(zs)))
                        W.sub_(t * d.delta)
            return out

        med = interleaved({"batched": batched, "naive": naive}, args.reps)
        n_img = args.k * len(shifts) * n_seeds
        ratio = med["naive"] / med["batched"]
        fields[f"grid_{family}_{n_seeds}seed" + ("s" if n_seeds > 1 else "")] = ratio
        print(
            f"   M={n_seeds}: batched {n_img / med['batched']:7.1f} img/s   naive {n_img / med['naive']:7.1f} img/s   "
            f"speed-up {ratio:.2f}x"
        )
    print("RESULT " + " ".join(f"{k}={v:.3g}" for k, v in fields.items()))


if __name__ == "__main__":
    main()
