"""Latent-recon training steps/s vs a faithful replica of Voynov & Babenko's trainer step, one run.

The generator is an MNIST-size MLP of the reference's ``sn_gen_fc`` shape (latent 64 -> 128 ->
256 -> 512 -> 1024 with ReLU + BatchNorm, -> 32 x 32 x 1 with tanh; 32 px as the paper's MNIST),
random weights (speed does not depend on them), wrapped as a bring-your-own generator.
K = 16, batch 128, Adam 1e-4, one torch thread.

* reference (``anvoynov/GANLatentDiscovery``, ``trainer.py``, replicated step for step in our own
  code): z and the one-hot shifts (filled row by row, as the reference does), an orthogonal
  deformator ``expm(M - M^T)`` over the full 64-dimensional latent, ``G(z)`` and ``G(z + shift)``
  with autograd on (the generator's parameters are never frozen there, so the backward pass also
  computes their gradients), the reference LeNet (``LeNetShiftPredictor``, width 2: unpadded 5x5
  convs 6-16-120, heads 84), loss CE + 0.25 MAE, both Adam steps.
* ours: ``engine.discovery.latent_recon`` 's step, ``train_reconstructor`` with the ``ortho``
  family (QR), two passes (``G(z)`` without grad), the generator frozen, our LeNet.

The two steps run interleaved, one each in turn; medians of the process's CPU time per step.
``--pair-modes`` also runs the older comparison of our pair modes (one forward of 2B vs two
passes) on ``--model``.

    .venv/bin/python bench/bench_reconstructor.py [--steps 30] [--threads 1] [--pair-modes]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.discovery.reconstructor import TrainConfig, train_reconstructor  # noqa: E402
from engine.discovery.shifts import LatentShifts  # noqa: E402
from engine.models.adapter import AdapterGenerator  # noqa: E402


def mnist_mlp(latent: int = 64, side: int = 32, width: int = 128, seed: int = 0) -> nn.Module:
    """``z [B, latent] -> [B, 1, side, side]``: the reference's fully connected MNIST generator shape."""
    torch.manual_seed(seed)
    dims = [latent, width, 2 * width, 4 * width, 8 * width]
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(), nn.BatchNorm1d(b)]
    layers += [nn.Linear(dims[-1], side * side), nn.Tanh(), nn.Unflatten(1, (1, side, side))]
    return nn.Sequential(*layers).eval()


class ReferenceLeNet(nn.Module):
    """The reference's ``LeNetShiftPredictor`` geometry (width 2), written here for the replica."""

    def __init__(self, K: int, channels: int = 1, width: int = 2) -> None:
        super().__init__()
        c1, c2, c3, h = 3 * width, 8 * width, 60 * width, 42 * width
        self.convnet = nn.Sequential(
            nn.Conv2d(2 * channels, c1, 5),
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(c1, c2, 5),
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(c2, c3, 5),
            nn.BatchNorm2d(c3),
            nn.ReLU(),
        )
        self.fc_logits = nn.Sequential(nn.Linear(c3, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, K))
        self.fc_shift = nn.Sequential(nn.Linear(c3, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, 1))

    def forward(self, x1, x2):
        f = self.convnet(torch.cat([x1, x2], dim=1)).mean(dim=[-1, -2]).view(x1.shape[0], -1)
        return self.fc_logits(f), self.fc_shift(f).squeeze()


class ReferenceTrainer:
    """One training step of the reference trainer (latent deformator ``ortho``, LeNet predictor)."""

    def __init__(self, net: nn.Module, latent: int, K: int, batch: int, *, fixed_A: torch.Tensor | None = None):
        self.G = copy.deepcopy(net).eval()
        for p in self.G.parameters():
            p.requires_grad_(True)  # the reference never freezes G
        self.latent, self.K, self.batch = latent, K, batch
        self.fixed_A = fixed_A  # [latent, K] for the RANDOM deformator (RCA baselines): no deformator training
        self.log_mat_half = nn.Parameter(torch.randn(latent, latent))  # deformator_random_init=True
        self.R = ReferenceLeNet(K, channels=net[-1].unflattened_size[0] if isinstance(net[-1], nn.Unflatten) else 1)
        self.R.train()
        self.opt_d = torch.optim.Adam([self.log_mat_half], lr=1e-4) if fixed_A is None else None
        self.opt_r = torch.optim.Adam(self.R.parameters(), lr=1e-4)
        self.ce = nn.CrossEntropyLoss()

    def shifts(self):
        target = torch.randint(0, self.K, [self.batch])
        shifts = 6.0 * (2.0 * torch.rand(target.shape) - 1.0)
        shifts[(shifts < 0.5) & (shifts > 0)] = 0.5
        shifts[(shifts > -0.5) & (shifts < 0)] = -0.5
        z_shift = torch.zeros([self.batch, self.latent])
        for i, (index, val) in enumerate(zip(target, shifts)):
            z_shift[i][index] += val
        return target, shifts, z_shift

    def deform(self, z_shift):
        if self.fixed_A is not None:
            return z_shift[:, : self.K] @ self.fixed_A.T
        mat = torch.linalg.matrix_exp(self.log_mat_half - self.log_mat_half.transpose(0, 1))
        return F.linear(z_shift, mat)

    def step(self) -> float:
        self.G.zero_grad()
        self.log_mat_half.grad = None
        self.R.zero_grad()
        z = torch.randn(self.batch, self.latent)
        target, shifts, z_shift = self.shifts()
        shift = self.deform(z_shift)
        imgs = self.G(z)
        imgs_shifted = self.G(z + shift)
        logits, pred = self.R(imgs, imgs_shifted)
        loss = self.ce(logits, target) + 0.25 * torch.mean(torch.abs(pred - shifts))
        loss.backward()
        if self.opt_d is not None:
            self.opt_d.step()
        self.opt_r.step()
        acc = torch.mean((torch.argmax(logits, dim=1) == target).to(torch.float32)).detach()
        return float(loss.item() + 0 * acc)


def ours_job(net: nn.Module, latent: int, K: int, batch: int, steps: int):
    gen = AdapterGenerator(copy.deepcopy(net), latent, name="mnist-mlp", resolution=32)
    family = LatentShifts(torch.eye(latent)[:, :K], "ortho", space="z")
    cfg = TrainConfig(  # pass_seconds=None: one yield per whole step, the unit compared here
        steps=steps,
        batch_size=batch,
        rca_every=10**9,
        checkpoint_every=10**9,
        rca_samples=8,
        rca_batch=8,
        pass_seconds=None,
    )
    return train_reconstructor(gen, family, cfg)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30, help="timed steps per side (after 3 warm-up steps)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--pair-modes", action="store_true", help="also compare our pair modes on --model")
    ap.add_argument("--model", default="digiface-dcgan-64")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    latent, warm = 64, 3
    net = mnist_mlp(latent)
    print(
        f"MNIST-size MLP generator (latent {latent}, 32x32x1), K={args.k}, batch {args.batch_size}, "
        f"{torch.get_num_threads()} thread(s), cpu; {args.steps} timed steps per side, interleaved"
    )
    ref = ReferenceTrainer(net, latent, args.k, args.batch_size)
    job = ours_job(net, latent, args.k, args.batch_size, args.steps + warm + 1)
    t_ref, t_ours = [], []
    for i in range(args.steps + warm):
        t0 = time.process_time()
        next(job)
        t1 = time.process_time()
        ref.step()
        t2 = time.process_time()
        if i >= warm:
            t_ours.append(t1 - t0)
            t_ref.append(t2 - t1)
    job.close()
    m_ours, m_ref = statistics.median(t_ours), statistics.median(t_ref)
    ratio = m_ref / m_ours
    print(f"reference trainer step: {m_ref * 1e3:.0f} ms ({1 / m_ref:.2f} steps/s, CPU time, median)")
    print(f"ours (latent-recon step): {m_ours * 1e3:.0f} ms ({1 / m_ours:.2f} steps/s); ratio {ratio:.2f}x")
    if args.pair_modes:
        pair_modes(args)
    print(f"RESULT steps_per_s_vs_reference={ratio:.3g} ours_ms={m_ours * 1e3:.1f} reference_ms={m_ref * 1e3:.1f}")


def pair_modes(args) -> None:
    """Our pair modes (one forward of 2B vs two passes) on ``--model``, same batches, one run."""
    from engine.discovery.param_opt import BasisShifts, initial_coefficients
    from engine.discovery.param_space import svd_basis
    from engine.discovery.shifts import ParamShifts
    from engine.jobs import run_job
    from engine.models import load_generator

    gen = load_generator(args.model, device="cpu")
    cfg = TrainConfig(
        steps=12,
        batch_size=32,
        rca_samples=8,
        rca_batch=8,
        rca_every=10**9,
        checkpoint_every=10**9,
        pass_seconds=None,  # one yield per step
    )
    space_dim = gen.w_dim if gen.num_ws else gen.z_dim
    layer = gen.default_edit_layer
    W = gen.layer_weight(layer).detach()
    g = torch.Generator().manual_seed(0)
    deltas = torch.randn(args.k, *W.shape, generator=g)
    deltas = deltas * (W.norm() / deltas.flatten(1).norm(dim=1)).view(-1, *[1] * W.dim())
    basis = svd_basis(gen, layer)
    families = {
        "latent A (trainable, ortho)": lambda: LatentShifts(
            torch.eye(space_dim)[:, : args.k], "ortho", space="w" if gen.num_ws else "z"
        ),
        "param-opt coefficients (trainable)": lambda: BasisShifts(
            basis, initial_coefficients(args.k, basis.rank, 0), scale=0.2 / 6
        ),
        f"param shifts of {layer} (fixed)": lambda: ParamShifts(layer, deltas, scale=torch.full((args.k,), 0.1 / 6)),
    }
    print(f"pair modes on {gen.name}, batch 32 pairs, K={args.k} (steps/s, CPU time)")
    for name, make in families.items():
        rates = {}
        for mode in ("one", "two"):
            fam = make()
            fam.pair_mode = mode
            times, last = [], [time.process_time()]

            def tick(rec, times=times, last=last):
                now = time.process_time()
                times.append(now - last[0])
                last[0] = now

            run_job(train_reconstructor(gen, fam, cfg), tick)
            rates[mode] = 1 / statistics.median(times[2:-1])
        print(
            f"  {name:<34} one {rates['one']:6.2f}   two {rates['two']:6.2f}   ratio {rates['one'] / rates['two']:.2f}x   "
            f"auto picks {make().resolved_pair_mode()}"
        )


if __name__ == "__main__":
    main()
