"""Tiny generators with random weights for fast engine tests (no files, no downloads)."""

from __future__ import annotations

import torch

from engine.models.dcgan import DCGANGenerator


def tiny_dcgan(nz: int = 8, ngf: int = 4, n_up: int = 2, seed: int = 0) -> DCGANGenerator:
    """A ``4 * 2**n_up`` px DCGAN with random weights and random (non-trivial) BatchNorm statistics."""
    g = torch.Generator().manual_seed(seed)
    gen = DCGANGenerator(nz=nz, ngf=ngf, nc=3, n_up=n_up)
    with torch.no_grad():
        for m in gen.modules():
            if isinstance(m, torch.nn.ConvTranspose2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / (m.weight.shape[0])) ** 0.5)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    gen.name = f"tiny-dcgan-{seed}"
    gen.identity = f"tiny-dcgan-{nz}-{ngf}-{n_up}-{seed}"
    return gen.eval()


def save_tiny_dcgan(path, **kw) -> str:
    """Write a tiny DCGAN as a DCGAN-tutorial checkpoint (``{"netG_state_dict": ...}``); returns the path."""
    gen = tiny_dcgan(**kw)
    torch.save({"netG_state_dict": gen.state_dict()}, path)
    return str(path)


def tiny_stylegan2(seed: int = 0, resolution: int = 16):
    """A tiny StyleGAN2 (z 12, w 10, widths <= 16) with random weights moved off their init values."""
    from engine.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator

    cfg = StyleGAN2Config.standard(resolution, channel_base=128, channel_max=16, z_dim=12, w_dim=10, mapping_layers=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = StyleGAN2Generator(cfg)
        with torch.no_grad():
            for p in g.parameters():
                p.add_(torch.randn_like(p) * 0.1 * (p.std() if p.numel() > 1 else 1))
            g.w_avg.normal_()
    g.name, g.identity = f"tiny-stylegan2-{seed}", f"tiny-stylegan2-{resolution}-{seed}"
    return g.eval()
