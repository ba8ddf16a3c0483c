"""The longest wait between two yields of every long job: how long a Cancel or Ctrl-C can wait.

A job is cancelled by closing it at a yield, so its longest gap between yields is the longest a
cancel waits. Each job runs on each model with its default parameters for a bounded time (a
child process per job, killed if it never yields again: its gap is then at least the time it
ran), and the longest gap is reported per job. Schedules that only change *when* a phase runs
are moved forward so that every phase shows up within the time: RCA is measured after the first
step (``rca_every=1``), the hybrid's training stage is also run from a saved spectrum set, the
GANSpace regression of DCGAN-type models is run on its own, pivotal tuning starts from a
one-step projection. LPIPS and the FID Inception network have random weights when their files
are missing (the same cost; the numbers they give are meaningless, their timing is not).

    .venv/bin/python bench/bench_yield_gaps.py [--seconds 20] [--models a,b] [--jobs curves,fid]

The first gap (from starting the job to its first record: imports, building networks) is
reported apart; the longest gap is over the rest of the run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ("digiface-dcgan-64", "procedural-stylegan2-32", str(ROOT.parent / "shared/fixtures/stylegan3/sg3r_res32.pkl"))
LIMIT_S = 1.0


# ---- the jobs ------------------------------------------------------------------------------------
def _method(name: str, **overrides):
    def make(ctx):
        from engine.discovery import get_method

        spec = get_method(name)
        reason = spec.unsupported_reason(ctx.gen)
        if reason:
            return None
        return spec.run(ctx.gen, spec.make_params(**overrides))

    return make


def _latent_recon(ctx):
    from engine.discovery import get_method

    spec = get_method("latent-recon")
    dim = ctx.gen.w_dim if ctx.gen.num_ws else ctx.gen.z_dim
    k = min(spec.params().k, dim)  # the default K (64), or the latent size where it is smaller (32 in sg3r)
    return spec.run(ctx.gen, spec.make_params(k=k, rca_every=1))


def _ganspace_regression(ctx):
    import torch

    import engine.discovery.ganspace as ganspace
    from engine.models.base import EARLY_ACTIVATION, MAPPING

    if ctx.gen.supports(MAPPING) or not ctx.gen.supports(EARLY_ACTIVATION):
        return None  # only models without w regress z on the activation's components
    params = ganspace.Params()
    depth = ganspace.activation_depth(ctx.gen, params)
    with torch.no_grad():
        D = ctx.gen.early_activation(ctx.gen.sample_latents(1, 0), depth).numel()
    k = min(params.k, ctx.gen.z_dim)
    comps, _ = torch.linalg.qr(torch.randn(D, k, dtype=torch.float64))
    return ganspace.regress_to_latent(ctx.gen, params, torch.zeros(D, dtype=torch.float64), comps, torch.ones(k), "cpu")


def _hybrid_from_set(ctx):
    import torch

    from engine.discovery import get_method
    from engine.discovery.param_space import resolve_layer
    from engine.discovery.param_spectrum import Params as SpectrumParams
    from engine.discovery.param_spectrum import spectrum_set

    spec = get_method("param-hybrid")
    layer = resolve_layer(ctx.gen, "")
    n = int(torch.Size(layer.shape).numel())
    k = min(spec.params().basis_k, n)
    Q, _ = torch.linalg.qr(torch.randn(n, k))
    dset = spectrum_set(ctx.gen, SpectrumParams(k=k), layer.name, torch.linspace(1, 0.1, k), Q, distance_info={})
    path = dset.save(ctx.tmp / "spectrum.json")
    return spec.run(ctx.gen, spec.make_params(spectrum=str(path), rca_every=1))


def _rca(ctx):
    from engine.discovery.rca import rca_of_set
    from engine.discovery.reconstructor import TrainConfig

    dset = ctx.latent_set
    return rca_of_set(ctx.gen, dset, TrainConfig(rca_every=1, checkpoint_every=2000, rca_samples=1024))


def _analysis(name: str, param_set: bool = False, procedural_only: bool = False):
    def make(ctx):
        from engine.analysis import get_analysis

        if procedural_only and "procedural" not in ctx.gen.name:
            return None
        spec = get_analysis(name)
        features = {"features": "regressor"} if name == "fid" and "procedural" in ctx.gen.name else {}
        dset = ctx.param_set if param_set else ctx.latent_set
        return spec.run(ctx.gen, dset, [0, 1], spec.make_params(**features))

    return make


def _target_image(ctx):
    import torch

    from engine.render import render_batch, to_uint8

    with torch.no_grad():
        return to_uint8(render_batch(ctx.gen, ctx.gen.seed_latents([123]), None))[0]


def _project(ctx):
    from engine.projection import ProjectParams, project

    return project(ctx.gen, _target_image(ctx), ProjectParams())


def _tune(ctx):
    from engine.jobs import run_job
    from engine.projection import ProjectParams, TuneParams, project, tune

    image = _target_image(ctx)
    lat = run_job(project(ctx.gen, image, ProjectParams(steps=1, candidates=8, starts=4)))
    return tune(ctx.gen, lat, image, TuneParams())


def _render_images(ctx):
    from engine.render import Item, render_items

    codes = ctx.gen.seed_latents(range(8))  # main.py render's default seeds 0-7, batch 32
    return render_items(ctx.gen, [Item(c) for c in codes], batch_size=32)


def _grid(ctx):
    import numpy as np

    from engine.export import export_grid
    from engine.render import materialize

    dirs = [materialize(ctx.latent_set, k) for k in range(4)]
    codes = ctx.gen.seed_latents([0, 1])
    shifts = np.linspace(dirs[0].range[0], dirs[0].range[1], 7)
    return export_grid(ctx.gen, codes, dirs, shifts, ctx.tmp / "grid.png")


def _video(suffix: str):
    def make(ctx):
        from engine.export import MorphOptions, export_morph
        from engine.render import materialize

        codes = ctx.gen.seed_latents([0])
        return export_morph(
            ctx.gen, codes, [materialize(ctx.latent_set, 0)], ctx.tmp / f"morph{suffix}", MorphOptions()
        )

    return make


def _batch(ctx):
    from engine.export import export_interpretable

    dset = ctx.latent_set
    for d in dset.directions[:2]:
        d.annotation.interpretable = "yes"
    return export_interpretable(ctx.gen, dset, ctx.gen.seed_latents([0]), ctx.tmp / "batch", fmt="mp4")


def _train(ctx):
    from engine.training.stylegan2 import TrainConfig, train

    if ctx.model != MODELS[0]:
        return None  # trains a new model: once
    return train(TrainConfig.make(), ctx.tmp / "run")


def _train_regressor(ctx):
    from engine.training.regressor import RegressorParams, train_regressor

    if ctx.model != MODELS[0]:
        return None
    return train_regressor(RegressorParams())


JOBS = {
    "sefa": _method("sefa"),
    "ganspace": _method("ganspace"),
    "ganspace-regression": _ganspace_regression,
    "latent-recon": _latent_recon,
    "param-svd": _method("param-svd"),
    "param-opt": _method("param-opt", rca_every=1),
    "param-spectrum": _method("param-spectrum"),
    "param-hybrid": _method("param-hybrid"),
    "param-hybrid-from-set": _hybrid_from_set,
    "rca": _rca,
    "curves": _analysis("curves"),
    "locality": _analysis("locality"),
    "fid": _analysis("fid"),
    "reproduce": _analysis("reproduce", param_set=True),
    "score": _analysis("score", procedural_only=True),
    "project": _project,
    "tune": _tune,
    "export-image": _render_images,
    "export-grid": _grid,
    "export-mp4": _video(".mp4"),
    "export-gif": _video(".gif"),
    "export-batch": _batch,
    "train": _train,
    "train-regressor": _train_regressor,
}


# ---- one job in a child process ------------------------------------------------------------------
class Context:
    def __init__(self, model: str, tmp: Path) -> None:
        from engine.jobs import run_job
        from engine.models import load_generator

        self.model, self.tmp = model, tmp
        self.gen = load_generator(model, device="cpu")
        self._sets: dict[str, object] = {}
        self.run_job = run_job

    def _set(self, method: str):
        if method not in self._sets:
            from engine.discovery import get_method

            spec = get_method(method)
            self._sets[method] = self.run_job(spec.run(self.gen, spec.make_params(k=8)))
        return self._sets[method]

    @property
    def latent_set(self):
        return self._set("sefa")

    @property
    def param_set(self):
        return self._set("param-svd")


def random_weights() -> None:
    """LPIPS and the FID Inception network with random weights when their files are missing."""
    import torch

    import engine.analysis.realism as realism
    import engine.distances as distances

    real_init = distances.LpipsDistance.__init__

    def lpips_init(self, net="alex", *, size=64, pnet_rand=False):
        real_init(self, net, size=size, pnet_rand=pnet_rand or not distances.backbone(net).present)

    distances.LpipsDistance.__init__ = lpips_init
    if realism.fid_weights_path().is_file():
        return

    def inception_features(device="cpu", path=None):
        import pytorch_fid.inception as fid

        unloaded = {}
        real_url, real_load = fid.load_state_dict_from_url, torch.nn.Module.load_state_dict
        fid.load_state_dict_from_url = lambda *a, **k: unloaded
        torch.nn.Module.load_state_dict = lambda m, sd, *a, **k: None if sd is unloaded else real_load(m, sd, *a, **k)
        try:
            net = fid.InceptionV3([3], resize_input=True, normalize_input=False, use_fid_inception=True)
        finally:
            fid.load_state_dict_from_url, torch.nn.Module.load_state_dict = real_url, real_load
        net = net.to(device).eval()

        @torch.no_grad()
        def features(x):
            x = x.clamp(-1, 1)
            return net((x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x).to(device))[0].flatten(1)

        features.label = "FID Inception with RANDOM weights (timing only)"
        return features

    realism.inception_features = inception_features


def child(model: str, name: str, seconds: float) -> None:
    import torch

    torch.set_num_threads(1)
    random_weights()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(model, Path(tmp))
        job = JOBS[name](ctx)
        if job is None:
            print(json.dumps({"skipped": True}), flush=True)
            return
        t0 = last = time.perf_counter()
        first, longest, where, n, done = None, 0.0, "", 0, False
        last_report = t0
        while True:
            try:
                rec = next(job)
            except StopIteration:
                done = True
            now = time.perf_counter()
            gap, last = now - last, now
            if first is None:
                first = gap
            elif gap > longest:
                longest, where = gap, "" if done else f"{rec.stage} {rec.message}".strip()
            n += 0 if done else 1
            if done or now - t0 >= seconds:
                break
            if now - last_report > 0.5:
                print(json.dumps({"tick": now - t0, "n": n, "max": longest, "first": first}), flush=True)
                last_report = now
        t1 = time.perf_counter()
        job.close()
        close_s = time.perf_counter() - t1
        print(
            json.dumps(
                {
                    "n": n,
                    "max": longest,
                    "first": first,
                    "where": where,
                    "finished": done,
                    "ran": last - t0,
                    "close": close_s,
                }
            ),
            flush=True,
        )


def run_child(model: str, name: str, seconds: float) -> dict:
    """The child's last report; a child that had to be killed reports the gap it was stuck in."""
    cmd = [sys.executable, __file__, "--child", model, name, "--seconds", str(seconds)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ)
    last, last_at = None, start
    deadline = start + seconds + 90  # model loading and set-up, then the run
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    killed = False
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            proc.kill()
            killed = True
            break
        if sel.select(timeout=min(left, 1.0)):
            line = proc.stdout.readline()
            if not line:
                break
            last, last_at = json.loads(line), time.perf_counter()
    proc.wait()
    err = proc.stderr.read()
    if killed:
        stuck = time.perf_counter() - last_at
        out = dict(last or {"n": 0, "max": 0.0, "first": None})
        out.update(killed=True, max=max(out.get("max", 0.0), stuck), where="(killed while waiting for a yield)")
        return out
    if last is None or proc.returncode:
        return {"error": err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}"}
    return last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="how long each job runs")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--jobs", default=",".join(JOBS))
    ap.add_argument("--child", nargs=2, metavar=("MODEL", "JOB"))
    args = ap.parse_args()
    if args.child:
        child(*args.child, args.seconds)
        return
    models = [m for m in args.models.split(",") if m]
    names = [j for j in args.jobs.split(",") if j]
    print(
        f"{len(names)} jobs x {len(models)} models, {args.seconds:g} s each, 1 torch thread; load {os.getloadavg()[0]:.1f}"
    )
    worst, over, errors, measured = 0.0, [], 0, 0
    for model in models:
        for name in names:
            r = run_child(model, name, args.seconds)
            label = f"{Path(model).stem:<24} {name:<22}"
            if r.get("skipped"):
                continue
            if "error" in r:
                errors += 1
                print(f"{label} ERROR {r['error']}")
                continue
            measured += 1
            flag = " KILLED" if r.get("killed") else ""
            first = f"{r['first']:.2f}" if r.get("first") is not None else "-"
            print(
                f"{label} longest gap {r['max']:7.2f} s  first {first:>6} s  yields {r['n']:>6}  "
                f"{'finished' if r.get('finished') else 'stopped'}{flag}  {r.get('where', '')[:60]}",
                flush=True,
            )
            worst = max(worst, r["max"])
            if r["max"] > LIMIT_S:
                over.append(f"{Path(model).stem}:{name}")
    print("over 1 s:", ", ".join(over) or "none")
    print(f"RESULT max_gap_s={worst:.2f} jobs_over_1s={len(over)} jobs={measured} errors={errors}")


if __name__ == "__main__":
    from cli.main import exit_process

    main()
    exit_process(0)  # a child whose job was closed while a helper thread ran must not abort at exit
