"""Our StyleGAN2 model on tiny random configurations: shapes, training, noise, edits, Hessians."""

from __future__ import annotations

import pytest
import torch

from engine.errors import AtlasError
from engine.models.base import ParamEdit
from engine.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator


def tiny(arch: str = "skip", clamp: float | None = None, seed: int = 0, R: int = 16) -> StyleGAN2Generator:
    torch.manual_seed(seed)
    cfg = StyleGAN2Config.standard(
        R, channel_base=128, channel_max=16, z_dim=12, w_dim=10, mapping_layers=2, architecture=arch, conv_clamp=clamp
    )
    g = StyleGAN2Generator(cfg)
    with torch.no_grad():  # move everything off its init value so every term matters
        for name, p in g.named_parameters():
            p.add_(torch.randn_like(p) * (0.3 if "noise_strength" in name else 0.1 * (p.std() if p.numel() > 1 else 1)))
        g.w_avg.normal_()
    return g.eval()


@pytest.mark.parametrize("arch", ["skip", "orig", "resnet"])
def test_shapes_and_ws_layout(arch):
    g = tiny(arch, clamp=0.5 if arch == "resnet" else None)
    assert g.num_ws == 2 * 4 - 2
    z = torch.randn(3, 12)
    ws = g.mapping(z)
    assert ws.shape == (3, 6, 10)
    img = g.synthesis(ws)
    assert img.shape == (3, 3, 16, 16) and torch.isfinite(img).all()
    idx = [i for _, i, _ in g.style_affines()]
    assert idx == sorted(idx) and idx[0] == 0 and idx[-1] == g.num_ws - 1
    names = [n for n, _, _ in g.style_affines()]
    assert names == [i.name for i in g.editable_layers() if not i.mapping]
    torgbs = [n for n in names if n.endswith("torgb")]
    assert len(torgbs) == (3 if arch == "skip" else 1)
    assert g.default_edit_layer == "synthesis.b8.conv0"
    # the last w index only reaches the final toRGB: changing it changes the image
    ws2 = ws.clone()
    ws2[:, -1] += 1
    assert not torch.allclose(g.synthesis(ws2), img)


def test_truncation_and_mixing():
    g = tiny()
    z = torch.randn(2, 12)
    ws1 = g.mapping(z)
    ws0 = g.mapping(z, psi=0.0)
    assert torch.allclose(ws0, g.w_avg.expand_as(ws0))
    wsc = g.mapping(z, psi=0.5, cutoff=2)
    assert torch.allclose(wsc[:, 2:], ws1[:, 2:])
    assert torch.allclose(wsc[:, :2], g.w_avg + 0.5 * (ws1[:, :2] - g.w_avg), atol=1e-6)
    z2 = torch.randn(2, 12)
    mixed = g.mix(z, z2, 3)
    assert torch.equal(mixed[:, :3], ws1[:, :3]) and torch.equal(mixed[:, 3:], g.mapping(z2)[:, 3:])


def test_noise_modes():
    g = tiny()
    ws = g.mapping(torch.randn(2, 12))
    with torch.no_grad():
        a, b = g.synthesis(ws, noise="const"), g.synthesis(ws, noise="const")
        r1 = g.synthesis(ws, noise="random", noise_generator=torch.Generator().manual_seed(1))
        r2 = g.synthesis(ws, noise="random", noise_generator=torch.Generator().manual_seed(1))
        r3 = g.synthesis(ws, noise="random", noise_generator=torch.Generator().manual_seed(2))
        n = g.synthesis(ws, noise="none")
        for layer in g.editable_layers():
            m = g.layer_module(layer.name)
            if hasattr(m, "noise_strength"):
                m.noise_strength.zero_()
        assert torch.allclose(g.synthesis(ws, noise="const"), n, atol=1e-6)
    assert torch.equal(a, b) and torch.equal(r1, r2)
    assert not torch.allclose(r1, r3) and not torch.allclose(a, n)
    with pytest.raises(AtlasError):
        g.synthesis(ws, noise="loud")
    with pytest.raises(AtlasError):
        g.synthesis(ws[:, :3])


@pytest.mark.parametrize("arch", ["skip", "resnet"])
def test_fused_and_unfused_modconv_agree(arch):
    g = tiny(arch, clamp=0.8)
    ws = g.mapping(torch.randn(3, 12))
    with torch.no_grad():
        g.fused_modconv = True
        a = g.synthesis(ws)
        g.fused_modconv = False
        b = g.synthesis(ws)
    assert torch.allclose(a, b, atol=1e-5)


def test_training_step_reaches_every_parameter_and_tracks_w_avg():
    g = tiny().train()
    w_avg = g.w_avg.clone()
    noise = {k: v.clone() for k, v in g.state_dict().items() if k.endswith("noise_const")}
    z = torch.randn(4, 12)
    img = g.synthesis(g.mapping(z), noise="random")
    img.square().mean().backward()
    missing = [k for k, p in g.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing
    assert not torch.equal(g.w_avg, w_avg)
    assert all(torch.equal(v, g.state_dict()[k]) for k, v in noise.items())
    g.eval()
    w_avg = g.w_avg.clone()
    g.mapping(z)
    assert torch.equal(g.w_avg, w_avg)


def test_fresh_model_initialisation():
    torch.manual_seed(0)
    cfg = StyleGAN2Config.standard(8, channel_base=64, channel_max=16, z_dim=8, w_dim=8, mapping_layers=3)
    g = StyleGAN2Generator(cfg)
    fc = g.mapping_net.fcs[0]
    assert fc.weight.std() > 20  # stored as N(0, 1) / lr_mul
    assert torch.all(g.layer_module("synthesis.b8.conv0").affine.bias == 1)
    assert g.layer_module("synthesis.b8.conv0").noise_strength.item() == 0
    assert torch.all(g.w_avg == 0)
    assert StyleGAN2Config.from_dict(cfg.to_dict()) == cfg


def _patched(g: StyleGAN2Generator, layer: str, delta: torch.Tensor, t: float, ws: torch.Tensor) -> torch.Tensor:
    w = g.layer_weight(layer)
    saved = w.detach().clone()
    with torch.no_grad():
        w.add_(t * delta)
        out = g.synthesis(ws)
        w.copy_(saved)
    return out


@pytest.mark.parametrize("layer", ["synthesis.b8.conv0", "synthesis.b4.conv1", "synthesis.b16.torgb"])
def test_batched_param_edit_equals_patched_weight(layer):
    g = tiny()
    W = g.layer_weight(layer)
    deltas = torch.randn(3, *W.shape) * W.norm() / W.numel() ** 0.5
    index = torch.tensor([0, 2, 1, 0, 2])
    t = torch.tensor([0.5, -1.0, 2.0, 0.0, 0.3])
    ws = g.mapping(torch.randn(5, 12))
    with torch.no_grad():
        batched = g.synthesis(ws, edit=ParamEdit(layer, deltas, index, t))
    for b in range(5):
        ref = _patched(g, layer, deltas[index[b]], float(t[b]), ws[b : b + 1])
        assert torch.allclose(batched[b : b + 1], ref, atol=2e-5), (b, (batched[b : b + 1] - ref).abs().max())
    plain = g.synthesis(ws).detach()
    assert torch.allclose(batched[3], plain[3], atol=1e-5)  # t = 0
    assert not torch.allclose(batched[0], plain[0], atol=1e-3)


def test_two_edits_on_different_layers_compose():
    g = tiny()
    ws = g.mapping(torch.randn(2, 12))
    d1 = torch.randn_like(g.layer_weight("synthesis.b8.conv1"))
    d2 = torch.randn_like(g.layer_weight("synthesis.b16.conv0"))
    e1 = ParamEdit.single("synthesis.b8.conv1", d1, 2, 0.3)
    e2 = ParamEdit.single("synthesis.b16.conv0", d2, 2, -0.2)
    with torch.no_grad():
        both = g.synthesis(ws, edit=[e1, e2])
        w1, w2 = g.layer_weight("synthesis.b8.conv1"), g.layer_weight("synthesis.b16.conv0")
        w1.add_(0.3 * d1)
        w2.add_(-0.2 * d2)
        ref = g.synthesis(ws)
    assert torch.allclose(both, ref, atol=2e-5)
    with pytest.raises(AtlasError, match="no editable layer"):
        g.synthesis(ws, edit=ParamEdit.single("synthesis.b8.conv9", d1, 2))
    with pytest.raises(AtlasError, match="delta has shape"):
        g.synthesis(ws, edit=ParamEdit.single("synthesis.b8.conv0", d1[:, :2], 2))


def test_hessian_vector_product_through_an_edit():
    """Exact HVP by double backward equals central differences of the gradient (float64)."""
    g = tiny(arch="resnet", clamp=5.0).double()
    layer = g.default_edit_layer
    W = g.layer_weight(layer)
    for p in g.parameters():
        p.requires_grad_(False)
    ws = g.mapping(torch.randn(3, 12, dtype=torch.float64))
    base = g.synthesis(ws).detach()
    torch.manual_seed(3)
    a0 = torch.randn_like(W) * 0.05
    v = torch.randn_like(W)

    def loss(a: torch.Tensor) -> torch.Tensor:
        out = g.synthesis(ws, edit=ParamEdit.single(layer, a, 3, 1.0))
        return (out - base).square().sum()

    def grad(a: torch.Tensor, create: bool) -> torch.Tensor:
        a = a.detach().requires_grad_(True) if not a.requires_grad else a
        return torch.autograd.grad(loss(a), a, create_graph=create)[0]

    a = a0.clone().requires_grad_(True)
    gr = grad(a, True)
    hvp = torch.autograd.grad((gr * v).sum(), a)[0]
    eps = 1e-6  # small: leaky ReLU and clamp kinks must not fall inside [a - eps v, a + eps v]
    fd = (grad(a0 + eps * v, False) - grad(a0 - eps * v, False)) / (2 * eps)
    assert torch.allclose(hvp, fd, rtol=1e-5, atol=1e-8 * fd.abs().max().item())
    assert hvp.abs().max() > 0


def test_edit_gradient_with_respect_to_t():
    g = tiny()
    layer = "synthesis.b8.conv1"
    d = torch.randn(1, *g.layer_weight(layer).shape)
    t = torch.zeros(2, requires_grad=True)
    ws = g.mapping(torch.randn(2, 12)).detach()
    out = g.synthesis(ws, edit=ParamEdit(layer, d, torch.zeros(2, dtype=torch.long), t))
    (gt,) = torch.autograd.grad(out.sum(), t)
    assert gt.shape == (2,) and torch.all(gt != 0)


def test_own_checkpoint_roundtrip(tmp_path):
    from engine.checkpoints.atlas import save_stylegan2
    from engine.models import load_generator

    g = tiny(arch="orig", clamp=2.0)
    path = save_stylegan2(g, tmp_path / "mine.pt", meta={"steps": 3, "dataset": "toy"})
    h = load_generator(str(path), device="cpu")
    assert h.config == g.config and h.meta == {"steps": 3, "dataset": "toy"}
    z = torch.randn(2, 12)
    with torch.no_grad():
        assert torch.equal(h.decode(z, psi=0.7), g.decode(z, psi=0.7))
    assert h.describe()["architecture"] == "orig" and len(h.identity) == 64


@pytest.mark.parametrize("layer", ["synthesis.b8.conv1", "synthesis.b16.torgb"])
def test_shared_prefix_grid_equals_full_batch(layer):
    from engine.directions import Direction
    from engine.render import render_batch

    g = tiny(arch="resnet", clamp=1.0)
    W = g.layer_weight(layer)
    dirs = [Direction("param", layer=layer, delta=torch.randn_like(W)) for _ in range(2)]
    z = torch.randn(2, 12)
    items = [(z[m], ((d, t),)) for d in dirs for t in (-1.0, 0.5) for m in range(2)]
    codes = torch.stack([c for c, _ in items])
    with torch.no_grad():
        grid = render_batch(g, codes, [s for _, s in items])
        index = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
        t = torch.tensor([-1.0, -1.0, 0.5, 0.5] * 2)
        delta = torch.stack([d.delta for d in dirs])
        full = g.decode(codes, edit=ParamEdit(layer, delta, index, t))
        shared = g.decode(z, edit=ParamEdit(layer, delta, index, t, torch.tensor([0, 1] * 4)))
    assert torch.allclose(grid, full, atol=1e-5) and torch.allclose(shared, full, atol=1e-5)


@pytest.mark.parametrize("layer", ["synthesis.b8.conv0", "synthesis.b4.conv1", "synthesis.b16.torgb"])
def test_linear_edit_path_equals_per_sample_weights_and_patching(layer):
    """Gradient-free edits convolve each distinct input once per delta (linearity); the result equals
    per-sample grouped weights (the path taken when delta carries a gradient) and patched weights,
    with two edits of one layer, shifts t = 0, and rows expanded from shared codes."""
    g = tiny(arch="resnet", clamp=1.0)
    W = g.layer_weight(layer)
    gen = torch.Generator().manual_seed(1)
    d1 = torch.randn(2, *W.shape, generator=gen) * 0.3
    d2 = torch.randn(1, *W.shape, generator=gen) * 0.3
    source = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    e1 = ParamEdit(
        layer, d1, torch.tensor([0, 0, 1, 1, 0, 1, 1, 0]), torch.tensor([0.5, 0.0, -1.0, 0.5, 2.0, 0.0, 1.0, 0.5])
    )
    e2 = ParamEdit(layer, d2, torch.zeros(8, dtype=torch.long), torch.tensor([0.0, 0.3, 0.3, -0.7, 0.0, 0.0, 0.3, 0.0]))
    ws = g.mapping(torch.randn(3, 12))
    with torch.no_grad():
        linear = g.synthesis(ws, edit=[ParamEdit(e.layer, e.delta, e.index, e.t, source) for e in (e1, e2)])
    grad_edits = [ParamEdit(e.layer, e.delta.clone().requires_grad_(True), e.index, e.t) for e in (e1, e2)]
    grouped = g.synthesis(ws[source], edit=grad_edits).detach()
    assert torch.allclose(linear, grouped, atol=2e-5), (linear - grouped).abs().max()
    for b in range(8):
        shift = float(e1.t[b]) * d1[e1.index[b]] + float(e2.t[b]) * d2[0]
        ref = _patched(g, layer, shift, 1.0, ws[source[b] : source[b] + 1])
        assert torch.allclose(linear[b : b + 1], ref, atol=2e-5), b
