"""StyleGAN3 on the CPU: rendering speed against our StyleGAN2 at the same resolution, and the cost
of the filtered leaky ReLU's up-sampling by zero insertion vs the transposed convolution we use.

Ratios measured in one run:

1. images/s of the sg3t / sg3r fixtures (32 px, 16 ws) vs the 32 px NVIDIA StyleGAN2 fixture
   (``nvada_skip_res32``), eval mode, batch ``--batch``, both modulated-conv paths;
2. the filtered leaky ReLU of one up-sampling layer (sg3t ``L5_52_32``, up 4): zero insertion then
   a depthwise FIR (the reference's order of operations) vs one transposed convolution per axis.

    .venv/bin/python bench/bench_stylegan3.py [--threads N] [--batch 16] [--reps 3]

Ends with one line ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.models import load_generator  # noqa: E402
from engine.models.stylegan3 import _fir, filtered_lrelu  # noqa: E402

FIXTURES = ROOT.parent / "shared" / "fixtures"


def timed(fn, reps: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def zero_insertion_lrelu(x, fu, fd, b, *, up, down, padding, gain, slope, clamp):
    """The reference's order: bias, zero-insert, pad, FIR, lrelu x gain, clamp, FIR, decimate."""
    N, C, H, W = x.shape
    x = x + b.reshape(1, -1, 1, 1)
    z = x.new_zeros(N, C, H * up, W * up)
    z[:, :, ::up, ::up] = x
    x = _fir(F.pad(z, list(padding)), fu, float(up * up), 1)
    x = F.leaky_relu(x, slope) * gain
    return _fir(x.clamp(-clamp, clamp), fd, 1.0, down)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    models = {
        "sg2": load_generator(str(FIXTURES / "nvada_skip_res32.pkl"), device="cpu"),
        "sg3t": load_generator(str(FIXTURES / "stylegan3" / "sg3t_res32.pkl"), device="cpu"),
        "sg3r": load_generator(str(FIXTURES / "stylegan3" / "sg3r_res32.pkl"), device="cpu"),
    }
    rates = {}
    print(f"batch {a.batch}, {a.threads} thread(s), eval mode")
    for name, g in models.items():
        z = torch.randn(a.batch, g.z_dim, generator=torch.Generator().manual_seed(0))
        params = sum(p.numel() for p in g.parameters())
        for fused in (False, True):
            g.fused_modconv = fused
            with torch.no_grad():
                ws = g.mapping(z)
                t = timed(lambda g=g, ws=ws: g.synthesis(ws), a.reps)
            rates[f"{name}_{'fused' if fused else 'unfused'}"] = a.batch / t
            print(
                f"{name:5s} ({params / 1e3:.0f}k params) {'fused  ' if fused else 'unfused'} {a.batch / t:8.1f} img/s"
            )
        g.fused_modconv = None

    g = models["sg3t"]
    layer = g.layer_module("synthesis.L5_52_32")
    s = layer.spec
    x = torch.randn(a.batch, s.out_channels, s.in_size[1] + s.conv_kernel - 1, s.in_size[0] + s.conv_kernel - 1)
    kw = dict(up=s.up_factor, down=s.down_factor, padding=s.padding, gain=math.sqrt(2), slope=0.2, clamp=256.0)
    args = (x, layer.up_filter, layer.down_filter, layer.bias.detach())
    with torch.no_grad():
        t_zero = timed(lambda: zero_insertion_lrelu(*args, **kw), a.reps)
        t_ours = timed(lambda: filtered_lrelu(*args, **kw), a.reps)
        err = float((zero_insertion_lrelu(*args, **kw) - filtered_lrelu(*args, **kw)).abs().max())
    print(
        f"filtered lrelu L5 (up 4): zero insertion {t_zero * 1e3:.1f} ms, transposed {t_ours * 1e3:.1f} ms, max diff {err:.1e}"
    )
    sg3t_vs_sg2 = rates["sg3t_unfused"] / rates["sg2_unfused"]
    sg3r_vs_sg2 = rates["sg3r_unfused"] / rates["sg2_unfused"]
    print(
        f"RESULT sg3t_vs_sg2_speed={sg3t_vs_sg2:.3f} sg3r_vs_sg2_speed={sg3r_vs_sg2:.3f} "
        f"sg3t_img_s={rates['sg3t_unfused']:.1f} sg2_img_s={rates['sg2_unfused']:.1f} "
        f"lrelu_transposed_speedup={t_zero / t_ours:.2f}"
    )


if __name__ == "__main__":
    main()
