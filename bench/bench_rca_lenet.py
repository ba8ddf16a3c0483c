"""Reconstructor strength on fixed random orthonormal directions (the RCA instrument), one run.

1. Trains an MNIST-size MLP GAN (the reference's ``sn_gen_fc`` generator shape, latent 64,
   32 x 32 x 1) on grey procedural faces (``engine.data.procedural``; no MNIST on this machine),
   non-saturating loss, Adam 2e-4 (0.5, 0.999), batch 64.
2. Fixes K = 16 random orthonormal latent directions and trains, on the same batches (batch 128,
   Adam 1e-4, eps ~ U[-6, 6] with |eps| >= 0.5, loss CE + 0.25 MAE), three reconstructors:
   ours (``LeNetReconstructor``, the paper's geometry), ours before this change (the same LeNet
   with padded convolutions: its third conv ran on an 8x8 map, averaged), and the reference's
   ``LeNetShiftPredictor`` (width 2) replicated in ``bench_reconstructor.py``.
3. RCA (accuracy on fresh pairs) at each checkpoint.

    .venv/bin/python bench/bench_rca_lenet.py [--gan-steps 4000] [--steps 2000] [--every 1000] [--device auto]

The defaults take about 8 CPU minutes (one thread); the README's table came from
``--steps 10000 --every 2000`` (as far as it got).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reconstructor import ReferenceLeNet, mnist_mlp  # noqa: E402

from engine.data.procedural import ProceduralFaces  # noqa: E402
from engine.discovery.reconstructor import LeNetReconstructor, Reconstructor, _head  # noqa: E402
from engine.discovery.shifts import sample_shift_batch, stream_generator  # noqa: E402


class PaddedLeNet(Reconstructor):
    """Our LeNet before this change: 5x5 convs padded by 2, so maps stay 32 -> 16 -> 8, averaged."""

    def __init__(self, K: int, channels: int = 1) -> None:
        super().__init__(K)

        def block(cin, cout, pool):
            layers = [nn.Conv2d(cin, cout, 5, padding=2), nn.BatchNorm2d(cout), nn.ReLU()]
            return layers + ([nn.MaxPool2d(2)] if pool else [])

        self.body = nn.Sequential(*block(2 * channels, 6, True), *block(6, 16, True), *block(16, 120, False))
        self.logits = _head(120, 84, K)
        self.shift = _head(120, 84, 1)

    def features(self, x):
        return self.body(x).mean(dim=(-2, -1))


def train_gan(device, steps: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    G = mnist_mlp(64).to(device).train()
    D = nn.Sequential(
        nn.Flatten(),
        nn.Linear(1024, 512),
        nn.LeakyReLU(0.2),
        nn.Linear(512, 256),
        nn.LeakyReLU(0.2),
        nn.Linear(256, 1),
    ).to(device)
    data = ProceduralFaces(20_000, seed=seed)
    imgs = torch.cat([data.batch(range(i, min(i + 2000, 20_000)))[0] for i in range(0, 20_000, 2000)])
    real_all = imgs.mean(1, keepdim=True).to(device)  # grey, [-1, 1]
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    for step in range(steps):
        real = real_all[torch.randint(len(real_all), (64,), device=device)]
        fake = G(torch.randn(64, 64, device=device))
        loss_d = F.softplus(-D(real)).mean() + F.softplus(D(fake.detach())).mean()
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = F.softplus(-D(G(torch.randn(64, 64, device=device)))).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        if (step + 1) % 1000 == 0:
            print(f"  GAN step {step + 1}: loss D {loss_d.item():.3f}, G {loss_g.item():.3f}", flush=True)
    return G.eval()


def pairs(G, A, z, k, eps):
    with torch.no_grad():
        return G(z), G(z + eps[:, None] * A.T[k])


def rca(G, A, R, device, n: int = 4096) -> float:
    R.eval()
    hits = 0
    with torch.no_grad():
        for i in range(0, n, 512):
            g = stream_generator("rca", 0, 0, i)
            z, k, eps = (t.to(device) for t in sample_shift_batch(g, 512, 64, A.shape[1]))
            logits, _ = R(*pairs(G, A, z, k, eps))
            hits += int((logits.argmax(1) == k).sum())
    R.train()
    return hits / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gan-steps", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--every", type=int, default=1000)
    args = ap.parse_args()
    device = torch.device(
        "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")
    )
    print(f"device {device}")
    G = train_gan(device, args.gan_steps)
    for p in G.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    Q, Rm = torch.linalg.qr(torch.randn(64, args.k, generator=g, dtype=torch.float64))
    A = (Q * torch.sign(torch.diagonal(Rm))).float().to(device)
    models = {}
    for name, make in (
        ("ours (paper geometry)", lambda: LeNetReconstructor(args.k, 1)),
        ("ours before (padded)", lambda: PaddedLeNet(args.k, 1)),
        ("reference LeNet (width 2)", lambda: ReferenceLeNet(args.k, 1, 2)),
    ):
        torch.manual_seed(0)
        R = make().to(device).train()
        models[name] = (R, torch.optim.Adam(R.parameters(), lr=1e-4))
    results = {name: [] for name in models}
    for step in range(1, args.steps + 1):
        g = stream_generator("train", 0, 0, step)
        z, k, eps = (t.to(device) for t in sample_shift_batch(g, 128, 64, args.k))
        x0, x1 = pairs(G, A, z, k, eps)
        for R, opt in models.values():
            logits, pred = R(x0, x1)
            loss = F.cross_entropy(logits, k) + 0.25 * (pred - eps).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        if step % args.every == 0 or step == args.steps:
            line = []
            for name, (R, _) in models.items():
                r = rca(G, A, R, device)
                results[name].append((step, r))
                line.append(f"{name} {r:.3f}")
            print(f"step {step}: RCA " + ", ".join(line), flush=True)
    fields = {}
    for key, name in (
        ("ours", "ours (paper geometry)"),
        ("padded", "ours before (padded)"),
        ("ref", "reference LeNet (width 2)"),
    ):
        fields[f"rca_{key}"] = results[name][-1][1]
        at2k = [r for s, r in results[name] if s == 2000]
        if at2k:
            fields[f"rca2k_{key}"] = at2k[0]
    print("RESULT " + " ".join(f"{k}={v:.3f}" for k, v in fields.items()))


if __name__ == "__main__":
    main()
