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
   and 4 (``grid_<family>_1seed``, ``grid_<family>_4seeds``: the speed-up). The batched grid runs
   in fixed batches of ``--batch-size`` (as the editor's grid does); ``..._paced`` is the same grid
   with the batches sized by time (``render_grid``'s default, as ``render`` and exports run it),
   whose batches shrink when a loaded machine stretches their wall time.
3. Where a grid's time must go: the CPU time of one unedited forward of a batch of
   ``--batch-size`` images split at the edited layer (prefix, the layer, the layers after it)
   by hooks, per image, measured interleaved with the grids (under the same load). Every image of a grid must run the layers after the edit; the prefix
   runs once per seed and the layer once per seed plus once per (seed, direction). So no
   batched grid can beat ``naive / (after + prefix / (K S) + layer (1 + K) / (K S))`` per image
   (``grid_<family>_<M>_bound``), with ``naive`` the naive loop's measured time per image.

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


class LayerSplit:
    """CPU seconds per image of an unedited forward of ``batch`` images: before ``layer``, in it, after it.

    Each call renders one batch (hooks on the layer's module read the CPU clock), so that the split
    can be measured interleaved with the grids, under the same load."""

    def __init__(self, gen, layer: str, batch: int) -> None:
        W = gen.layer_weight(layer)
        self.module = next(m for m in gen.modules() if getattr(m, "weight", None) is W)
        self.gen, self.batch = gen, batch
        self.z = gen.seed_latents(range(batch))
        self.parts: dict[str, list[float]] = {"prefix": [], "layer": [], "after": []}

    def __call__(self) -> None:
        marks: dict[str, float] = {}
        hooks = [
            self.module.register_forward_pre_hook(lambda m, i: marks.__setitem__("pre", time.process_time())),
            self.module.register_forward_hook(lambda m, i, o: marks.__setitem__("post", time.process_time())),
        ]
        try:
            with torch.no_grad():
                t0 = time.process_time()
                to_uint8(self.gen(self.z))
                t1 = time.process_time()
        finally:
            for h in hooks:
                h.remove()
        self.parts["prefix"].append((marks["pre"] - t0) / self.batch)
        self.parts["layer"].append((marks["post"] - marks["pre"]) / self.batch)
        self.parts["after"].append((t1 - marks["post"]) / self.batch)

    def medians(self) -> dict[str, float]:
        return {k: statistics.median(v) for k, v in self.parts.items()}


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
    KS = args.k * len(shifts)
    for n_seeds in sorted({1, args.seeds}):
        zs = gen.seed_latents(range(n_seeds))

        def batched(zs=zs):
            return run_job(render_grid(gen, zs, dirs, shifts, batch_size=args.batch_size, pass_seconds=None))

        def paced(zs=zs):
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

        split = LayerSplit(gen, layer, args.batch_size)
        med = interleaved({"batched": batched, "paced": paced, "naive": naive, "split": split}, args.reps)
        part = split.medians()
        floor = part["after"] + part["prefix"] / KS + part["layer"] * (1 + args.k) / KS  # per image
        print(
            f"   M={n_seeds}: one unedited forward of {args.batch_size} images, per image: before {layer} "
            f"{part['prefix'] * 1e3:.2f} ms, {layer} {part['layer'] * 1e3:.2f} ms, after it {part['after'] * 1e3:.2f} ms"
        )
        n_img = args.k * len(shifts) * n_seeds
        ratio = med["naive"] / med["batched"]
        key = f"grid_{family}_{n_seeds}seed" + ("s" if n_seeds > 1 else "")
        fields[key] = ratio
        fields[key + "_paced"] = med["naive"] / med["paced"]
        fields[key + "_bound"] = med["naive"] / n_img / floor
        print(
            f"   M={n_seeds}: batched {n_img / med['batched']:7.1f} img/s   paced {n_img / med['paced']:7.1f} img/s   "
            f"naive {n_img / med['naive']:7.1f} img/s   speed-up {ratio:.2f}x (paced {fields[key + '_paced']:.2f}x); "
            f"bound {fields[key + '_bound']:.2f}x (naive {med['naive'] / n_img * 1e3:.2f} ms/img over "
            f"{floor * 1e3:.2f} ms/img)"
        )
    print("RESULT " + " ".join(f"{k}={v:.3g}" for k, v in fields.items()))


if __name__ == "__main__":
    main()
