"""Hessian eigenvectors: our exact products + block LOBPCG vs navigan's power iteration, one run.

The reference (``yandex-research/navigan``, ``hessian_power_iteration.py``) is replicated step
for step: ``HVP ~ (g(+eps v) - g(-eps v)) / (2 eps ||v||)`` with ``g`` the gradient of
``f(a) = mean_z LPIPS(G(z), G_{theta+a}(z))``, eps = 0.1, 20 iterations per vector, each new
vector projected off the ones found (deflation). Each gradient goes over the latents in batches
of 8, and each batch renders the unshifted images without grad, renders the shifted ones from a
deep copy of the generator whose patched layer is a fresh ``nn.Parameter`` (every parameter of the
copy requires grad, as in the reference), takes the ``lpips`` package's LPIPS of the pair and
back-propagates. Ours, as ``param-spectrum`` runs: ``LayerHessian`` products, a warm start
(``--warm-steps`` LOBPCG iterations on the first ``--warm-samples`` latents), then ``lobpcg`` on all
latents stopped by its own tolerance (its residual from maintained products), twice: at
``--tol`` (param-spectrum's default) and at ``--tol-matched``, a looser tolerance meant to give a
residual no larger than the reference's (the goal compares "at equal or better residual"; the
bench reports whether it did, it never stops a solve by looking at the exact answer).

Both sides use the same generator, layer, latents, K and LPIPS network (the same random-weight
AlexNet backbone: no ImageNet file is on this machine, so this is "LPIPS alex with a RANDOM
backbone" on both sides, drawn from ``--seed`` so that runs compare; the cost is the same as with
the real one). They run interleaved (one power-iteration step, then one step of each of our two
solves) with one torch thread; CPU seconds are the
process's CPU time spent in each side's steps. Passes are counted the same way on both sides:
generator passes over single images, a forward (primal or tangent) or a backward each.
Afterwards, uncounted, every vector's residual ``||H v - (v^T H v) v|| / lambda_1`` is measured
with fresh exact products (lambda_1 = the larger of the two sides' top Rayleigh quotients).

    .venv/bin/python bench/bench_spectrum.py [--model digiface-dcgan-64] [--layer main.6] [--k 4]
        [--samples 64] [--guard 2] [--tol 1e-3] [--tol-matched 2e-2] [--warm-samples 16]
        [--warm-steps 5] [--threads 1] [--memory-k 16]

``--memory-k K`` (default 16; 0 skips) then runs our solver alone for K eigenvectors in a child
process for ``--memory-iters`` iterations and reports its peak resident memory above the loaded
model and distance.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.discovery.eigensolver import EigStep, lobpcg  # noqa: E402
from engine.discovery.hessian import LayerHessian  # noqa: E402
from engine.distances import load_distance  # noqa: E402
from engine.models import load_generator  # noqa: E402


class PowerIteration:
    """navigan's ``HVP_forward`` + ``find_top_n_eigenvectors``, one power-iteration step per ``step()``."""

    def __init__(self, gen, layer: str, lpips_model, zs: torch.Tensor, k: int, *, iters=20, eps=0.1, batch=8, seed=0):
        self.g0 = gen.eval()
        self.g1 = copy.deepcopy(gen)
        for p in self.g1.parameters():
            p.requires_grad_(True)
        w1 = self.g1.layer_weight(layer)
        self.conv1 = next(m for m in self.g1.modules() if getattr(m, "weight", None) is w1)
        self.w0 = gen.layer_weight(layer).detach().clone()
        self.lpips, self.zs, self.k, self.iters, self.eps, self.batch = lpips_model, zs, k, iters, eps, batch
        self.size = gen.resolution if gen.resolution <= 64 else 64  # lpips_interpolation_size (reference: 64)
        self.gen_rng = torch.Generator().manual_seed(seed)
        self.found: list[torch.Tensor] = []
        self.v = None
        self.i = 0
        self.forwards = self.backwards = 0

    def _g_batch(self, zs, delta):
        with torch.no_grad():
            img0 = F.interpolate(self.g0(zs), size=(self.size, self.size))
        self.conv1.weight = nn.Parameter(self.w0 + delta)
        img1 = F.interpolate(self.g1(zs), size=(self.size, self.size))
        d = self.lpips(img0, img1).mean()
        self.g1.zero_grad()
        d.backward()
        self.forwards += 2 * zs.shape[0]
        self.backwards += zs.shape[0]
        return self.conv1.weight.grad

    def _g(self, delta):
        n_batches = len(self.zs) // self.batch
        g = None
        for i in range(0, len(self.zs), self.batch):
            gb = self._g_batch(self.zs[i : i + self.batch], delta)
            g = gb / n_batches if g is None else g + gb / n_batches
        return g

    def _project(self, v):
        v = v.detach().clone()
        for b in self.found:
            b = b / b.pow(2).sum().sqrt()
            v -= b * (v * b).sum()
        return v

    @property
    def done(self) -> bool:
        return len(self.found) == self.k

    def step(self) -> None:
        if self.v is None:
            self.v = self._project(torch.randn(self.w0.shape, generator=self.gen_rng))
        plus, minus = self._g(self.eps * self.v), self._g(-self.eps * self.v)
        self.v = self._project((plus - minus) / (2 * (self.eps + 1e-14) * self.v.pow(2).sum().sqrt()))
        self.i += 1
        if self.i == self.iters:
            self.found.append(self.v)
            self.v, self.i = None, 0

    def vectors(self) -> torch.Tensor:
        return torch.stack([(v / v.norm()).flatten() for v in self.found], 1)  # [n, k]


def residuals(H: LayerHessian, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rayleigh quotients ``[k]`` and absolute residuals ``||H v - (v^T H v) v||`` of unit columns."""
    V = V / V.norm(dim=0, keepdim=True)
    HV = H.matvec(V).double()
    lam = (V.double() * HV).sum(0)
    return lam, (HV - V.double() * lam).norm(dim=0)


def rss_kb(field: str = "VmHWM") -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def memory_child(args) -> None:
    """Our solver alone: peak resident memory above the loaded model and distance (JSON on stdout)."""
    gen = load_generator(args.model, device="cpu")
    torch.manual_seed(args.seed)
    dist = load_distance("lpips-alex", pnet_rand=True)
    z = gen.sample_latents(args.samples, seed=0)
    args.guard = args.memory_guard
    base = rss_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident size
    for _ in solve(gen, args, dist, z, args.memory_k, args.tol, max_iter=args.memory_iters):
        pass
    print(json.dumps({"base_mb": base / 1024, "peak_mb": rss_kb() / 1024, "extra_mb": (rss_kb() - base) / 1024}))


def solve(gen, args, dist, z, k: int, tol: float, max_iter: int = 200):
    """Job: ours as param-spectrum runs it (warm start, then LOBPCG to ``tol``); returns ``(EigResult, H)``."""
    H = LayerHessian(gen, args.layer, dist, z, chunk=args.chunk)
    X0 = torch.randn(H.n, k + args.guard, generator=torch.Generator().manual_seed(1))
    X0 = yield from H.warm_start_job(X0, k, samples=args.warm_samples, steps=args.warm_steps)
    result = yield from lobpcg(H.matvec, X0, k, tol=tol, max_iter=max_iter)
    return result, H


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="digiface-dcgan-64")
    ap.add_argument("--layer", default="main.6")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--guard", type=int, default=2, help="guard vectors beside the K wanted")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument(
        "--tol", type=float, default=1e-3, help="our solver's own stopping tolerance (param-spectrum's default)"
    )
    ap.add_argument(
        "--tol-matched", type=float, default=2e-2, help="a looser tolerance of ours, for the equal-residual ratio"
    )
    ap.add_argument("--warm-samples", type=int, default=16, help="latents of the warm start (0: none)")
    ap.add_argument("--warm-steps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="seed of the random LPIPS backbone")
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--memory-k", type=int, default=16)
    ap.add_argument("--memory-iters", type=int, default=3)
    ap.add_argument(
        "--memory-guard", type=int, default=4, help="guard vectors of the memory run (param-spectrum's default)"
    )
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args)
        return

    import lpips

    gen = load_generator(args.model, device="cpu")
    torch.manual_seed(args.seed)  # the random backbone: the same one in every run
    dist = load_distance("lpips-alex", pnet_rand=True)
    ref_lpips = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    ref_lpips.load_state_dict(dist.model.state_dict())  # the same random backbone on both sides
    z = gen.sample_latents(args.samples, seed=0)
    print(
        f"model {gen.name}, layer {args.layer} ({gen.layer_weight(args.layer).numel()} weights), K={args.k} "
        f"(+{args.guard} guard), {args.samples} latents, warm start {args.warm_steps} iterations on "
        f"{args.warm_samples} latents, LPIPS alex with a RANDOM backbone (seed {args.seed}, both sides), "
        f"{args.threads} thread(s), cpu"
    )

    ref = PowerIteration(gen, args.layer, ref_lpips, z.clone(), args.k)
    sides = {"default": args.tol, "matched": args.tol_matched}
    jobs = {name: solve(gen, args, dist, z, args.k, tol) for name, tol in sides.items()}
    cpu = dict.fromkeys(sides, 0.0)
    done: dict[str, tuple] = {}
    last: dict[str, object] = {}
    cpu_ref = 0.0
    while not (ref.done and len(done) == len(jobs)):
        if not ref.done:
            t0 = time.process_time()
            ref.step()
            cpu_ref += time.process_time() - t0
        for name, job in jobs.items():
            if name in done:
                continue
            t0 = time.process_time()
            try:
                rec = next(job)
            except StopIteration as stop:
                done[name] = stop.value
                rec = None
            cpu[name] += time.process_time() - t0
            if isinstance(rec, EigStep) and rec.iteration != getattr(last.get(name), "iteration", None):
                last[name] = rec
                print(
                    f"  ours (tol {sides[name]:g}) it {rec.iteration}: max residual "
                    f"{float(rec.residual[: args.k].max()):.2g}, {cpu[name]:.0f} CPU s | reference vector "
                    f"{min(len(ref.found) + 1, args.k)}/{args.k} step {ref.i}, {cpu_ref:.0f} CPU s",
                    flush=True,
                )

    check = LayerHessian(gen, args.layer, dist, z, chunk=args.chunk)  # fresh, uncounted
    lam_r, r_r = residuals(check, ref.vectors())
    ours = {name: residuals(check, done[name][0].vectors) for name in sides}
    lam1 = max([float(lam_r.max())] + [float(lam.max()) for lam, _ in ours.values()])
    res_r = float(r_r.max() / lam1)
    passes_r = ref.forwards + ref.backwards
    print(
        f"reference power iteration: {cpu_ref:.1f} CPU s ({cpu_ref / args.k:.1f} per eigenvector), "
        f"{ref.forwards} forward + {ref.backwards} backward passes; eigenvalues "
        + ", ".join(f"{v:.4g}" for v in lam_r)
        + "; residuals / lambda_1 "
        + ", ".join(f"{v / lam1:.2g}" for v in r_r)
    )
    fields: dict[str, float] = {}
    for name, tol in sides.items():
        result, H = done[name]
        lam_o, r_o = ours[name]
        res_o = float(r_o.max() / lam1)
        passes_o = H.forwards + H.backwards
        print(
            f"ours (warm start + exact HVP + LOBPCG, tol {tol:g}): {cpu[name]:.1f} CPU s "
            f"({cpu[name] / args.k:.1f} per eigenvector), {result.iterations} iterations after the warm start, "
            f"{H.forwards} forward + {H.backwards} backward passes; eigenvalues "
            + ", ".join(f"{v:.4g}" for v in lam_o)
            + "; residuals / lambda_1 "
            + ", ".join(f"{v / lam1:.2g}" for v in r_o)
            + f"; {cpu_ref / cpu[name]:.2f}x less CPU than the reference at a "
            + ("smaller or equal" if res_o <= res_r else "LARGER")
            + " residual"
        )
        suffix = "" if name == "default" else "_matched"
        fields["cpu_ratio_vs_power_iteration" + suffix] = cpu_ref / cpu[name]
        fields["passes_ratio" + suffix] = passes_r / passes_o
        fields["residual_ours" + suffix] = res_o
        if name == "default":
            fields["residual_ref"] = res_r
        fields["residual_ratio_ref_over_ours" + suffix] = res_r / res_o
        fields["cpu_s_per_vector_ours" + suffix] = cpu[name] / args.k
    fields["cpu_s_per_vector_ref"] = cpu_ref / args.k
    fields["tol_matched"] = args.tol_matched
    if args.memory_k > 0:
        cmd = [sys.executable, __file__, "--memory-child", "--model", args.model, "--layer", args.layer]
        cmd += ["--samples", str(args.samples), "--memory-k", str(args.memory_k), "--tol", str(args.tol)]
        cmd += ["--memory-iters", str(args.memory_iters), "--chunk", str(args.chunk), "--guard", str(args.guard)]
        cmd += ["--threads", str(args.threads), "--warm-samples", str(args.warm_samples)]
        cmd += [
            "--warm-steps",
            str(args.warm_steps),
            "--seed",
            str(args.seed),
            "--memory-guard",
            str(args.memory_guard),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        mem = json.loads(out)
        print(
            f"memory, ours alone at K={args.memory_k} ({args.memory_iters} iterations): peak {mem['peak_mb']:.0f} MB "
            f"resident, {mem['extra_mb']:.0f} MB above the loaded model and distance ({mem['base_mb']:.0f} MB)"
        )
        fields[f"ours_extra_mb_k{args.memory_k}"] = mem["extra_mb"]
        fields[f"ours_peak_mb_k{args.memory_k}"] = mem["peak_mb"]
    print("RESULT " + " ".join(f"{k}={v:.4g}" for k, v in fields.items()))


if __name__ == "__main__":
    main()
