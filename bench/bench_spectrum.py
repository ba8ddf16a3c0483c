"""Hessian eigenvectors: our exact products + block LOBPCG vs navigan's power iteration, one run.

The reference (``yandex-research/navigan``, ``hessian_power_iteration.py``) is replicated step
for step: ``HVP ~ (g(+eps v) - g(-eps v)) / (2 eps ||v||)`` with ``g`` the gradient of
``f(a) = mean_z LPIPS(G(z), G_{theta+a}(z))``, eps = 0.1, 20 iterations per vector, each new
vector projected off the ones found (deflation). Each gradient goes over the latents in batches
of 8, and each batch renders the unshifted images without grad, renders the shifted ones from a
deep copy of the generator whose patched layer is a fresh ``nn.Parameter`` (every parameter of the
copy requires grad, as in the reference), takes the ``lpips`` package's LPIPS of the pair and
back-propagates. Ours: ``LayerHessian`` products and ``lobpcg`` stopped by its own tolerance
``--tol`` (its residual from maintained products), as ``param-spectrum`` runs.

Both sides use the same generator, layer, latents, K and LPIPS network (the same random-weight
AlexNet backbone: no ImageNet file is on this machine, so this is "LPIPS alex with a RANDOM
backbone" on both sides; the cost is the same as with the real one). They run interleaved (one
power-iteration step, then one LOBPCG iteration) with one torch thread; CPU seconds are the
process's CPU time spent in each side's steps. Passes are counted the same way on both sides:
generator passes over single images, a forward (primal or tangent) or a backward each.
Afterwards, uncounted, every vector's residual ``||H v - (v^T H v) v|| / lambda_1`` is measured
with fresh exact products (lambda_1 = the larger of the two sides' top Rayleigh quotients).

    .venv/bin/python bench/bench_spectrum.py [--model digiface-dcgan-64] [--layer main.6] [--k 4]
        [--samples 64] [--tol 1e-3] [--threads 1] [--memory-k 16]

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

from engine.discovery.eigensolver import lobpcg  # noqa: E402
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
    dist = load_distance("lpips-alex", pnet_rand=True)
    z = gen.sample_latents(args.samples, seed=0)
    base = rss_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident size
    H = LayerHessian(gen, args.layer, dist, z, chunk=args.chunk)
    X0 = torch.randn(H.n, args.memory_k + args.guard, generator=torch.Generator().manual_seed(1))
    job = lobpcg(H.matvec, X0, args.memory_k, tol=args.tol, max_iter=args.memory_iters)
    for _ in job:
        pass
    print(json.dumps({"base_mb": base / 1024, "peak_mb": rss_kb() / 1024, "extra_mb": (rss_kb() - base) / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="digiface-dcgan-64")
    ap.add_argument("--layer", default="main.6")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--guard", type=int, default=4)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument(
        "--tol", type=float, default=1e-3, help="our solver's own stopping tolerance (param-spectrum's default)"
    )
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--memory-k", type=int, default=16)
    ap.add_argument("--memory-iters", type=int, default=3)
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args)
        return

    import lpips

    gen = load_generator(args.model, device="cpu")
    dist = load_distance("lpips-alex", pnet_rand=True)
    ref_lpips = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    ref_lpips.load_state_dict(dist.model.state_dict())  # the same random backbone on both sides
    z = gen.sample_latents(args.samples, seed=0)
    print(
        f"model {gen.name}, layer {args.layer} ({gen.layer_weight(args.layer).numel()} weights), K={args.k}, "
        f"{args.samples} latents, LPIPS alex with a RANDOM backbone (both sides), {args.threads} thread(s), cpu"
    )

    ref = PowerIteration(gen, args.layer, ref_lpips, z.clone(), args.k)
    t0 = time.process_time()
    H = LayerHessian(gen, args.layer, dist, z, chunk=args.chunk)
    X0 = torch.randn(H.n, args.k + args.guard, generator=torch.Generator().manual_seed(1))
    ours_job = lobpcg(H.matvec, X0, args.k, tol=args.tol, max_iter=200)
    cpu_ours = time.process_time() - t0
    cpu_ref = 0.0
    ours_result = last = None
    while not (ref.done and ours_result is not None):
        if not ref.done:
            t0 = time.process_time()
            ref.step()
            cpu_ref += time.process_time() - t0
        if ours_result is None:
            t0 = time.process_time()
            try:
                last = next(ours_job)
            except StopIteration as stop:
                ours_result = stop.value
            cpu_ours += time.process_time() - t0
            if last is not None and ours_result is None:
                print(
                    f"  ours it {last.iteration}: max residual {float(last.residual[: args.k].max()):.2g}, "
                    f"{cpu_ours:.0f} CPU s | reference vector {len(ref.found) + 1}/{args.k} step {ref.i}, "
                    f"{cpu_ref:.0f} CPU s",
                    flush=True,
                )

    check = LayerHessian(gen, args.layer, dist, z, chunk=args.chunk)  # fresh, uncounted
    lam_o, r_o = residuals(check, ours_result.vectors)
    lam_r, r_r = residuals(check, ref.vectors())
    lam1 = max(float(lam_o.max()), float(lam_r.max()))
    res_o, res_r = float(r_o.max() / lam1), float(r_r.max() / lam1)
    passes_o, passes_r = H.forwards + H.backwards, ref.forwards + ref.backwards
    print(
        f"reference power iteration: {cpu_ref:.1f} CPU s ({cpu_ref / args.k:.1f} per eigenvector), "
        f"{ref.forwards} forward + {ref.backwards} backward passes; eigenvalues "
        + ", ".join(f"{v:.4g}" for v in lam_r)
        + "; residuals / lambda_1 "
        + ", ".join(f"{v / lam1:.2g}" for v in r_r)
    )
    print(
        f"ours (exact HVP + LOBPCG, tol {args.tol:g}): {cpu_ours:.1f} CPU s ({cpu_ours / args.k:.1f} per eigenvector), "
        f"{ours_result.iterations} iterations, {ours_result.matvecs} products, {H.forwards} forward + "
        f"{H.backwards} backward passes; eigenvalues "
        + ", ".join(f"{v:.4g}" for v in lam_o)
        + "; residuals / lambda_1 "
        + ", ".join(f"{v / lam1:.2g}" for v in r_o)
    )
    fields = {
        "cpu_ratio_vs_power_iteration": cpu_ref / cpu_ours,
        "passes_ratio": passes_r / passes_o,
        "residual_ours": res_o,
        "residual_ref": res_r,
        "residual_ratio_ref_over_ours": res_r / res_o,
        "cpu_s_per_vector_ours": cpu_ours / args.k,
        "cpu_s_per_vector_ref": cpu_ref / args.k,
    }
    if args.memory_k > 0:
        cmd = [sys.executable, __file__, "--memory-child", "--model", args.model, "--layer", args.layer]
        cmd += ["--samples", str(args.samples), "--memory-k", str(args.memory_k), "--tol", str(args.tol)]
        cmd += ["--memory-iters", str(args.memory_iters), "--chunk", str(args.chunk), "--guard", str(args.guard)]
        cmd += ["--threads", str(args.threads)]
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
