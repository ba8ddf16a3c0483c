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


TINY_CLASS_NAMES = ["tench", "goldfish", "golden retriever", "tabby cat", "volcano"]


def tiny_biggan(seed: int = 0):
    """A 16 px BigGAN-deep (z 8, ch 4, 5 named classes, attention, 11 BN levels) with random weights."""
    from engine.models.biggan import BigGANConfig, BigGANGenerator, CondBatchNorm

    cfg = BigGANConfig(
        output_dim=16,
        z_dim=8,
        class_embed_dim=8,
        channel_width=4,
        num_classes=len(TINY_CLASS_NAMES),
        layers=((True, 16, 8), (False, 8, 4), (True, 4, 2), (False, 2, 1)),
        attention_layer_position=2,
        eps=1e-4,
        n_stats=11,
    )
    cfg.check("tiny")
    g = torch.Generator().manual_seed(seed)
    gen = BigGANGenerator(cfg, name=f"tiny-biggan-{seed}")
    with torch.no_grad():
        for name, p in gen.named_parameters():
            if p.dim() == 4 or name == "gen_z_weight":
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif name == "embeddings":
                p.copy_(torch.randn(p.shape, generator=g))
            elif name == "bn_weight":
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("gamma"):
                p.fill_(0.5)
            else:  # biases, conditional BN scale / offset maps
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for m in [*gen.modules()]:
            if isinstance(m, CondBatchNorm):
                m.running_means.copy_(0.1 * torch.randn(m.running_means.shape, generator=g))
                m.running_vars.copy_(0.5 + torch.rand(m.running_vars.shape, generator=g))
        gen.bn_means.copy_(0.1 * torch.randn(gen.bn_means.shape, generator=g))
        gen.bn_vars.copy_(0.5 + torch.rand(gen.bn_vars.shape, generator=g))
    gen.class_labels = list(TINY_CLASS_NAMES)
    gen.identity = f"tiny-biggan-{seed}"
    gen.source = "tiny-biggan"
    return gen.eval()


def tiny_cond_stylegan2(seed: int = 0, resolution: int = 16, c_dim: int = 4):
    """A tiny class-conditional StyleGAN2 (NVIDIA's conditional mapping, ``c_dim`` classes), random weights."""
    from engine.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator

    cfg = StyleGAN2Config.standard(
        resolution, channel_base=128, channel_max=16, z_dim=12, w_dim=10, mapping_layers=2, c_dim=c_dim
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = StyleGAN2Generator(cfg)
        with torch.no_grad():
            for p in g.parameters():
                p.add_(torch.randn_like(p) * 0.1 * (p.std() if p.numel() > 1 else 1))
            g.mapping_net.embed.weight.normal_(0, 3)  # classes that differ visibly
            g.w_avg.normal_()
    g.name, g.identity = f"tiny-cond-stylegan2-{seed}", f"tiny-cond-stylegan2-{resolution}-{seed}"
    return g.eval()
