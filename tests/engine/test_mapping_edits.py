"""Parameter edits of the mapping network's fully connected layers (StyleGAN2 and StyleGAN3).

Golden checks: a render with a ``ParamEdit`` of ``mapping.fc{i}`` equals rendering a copy of the
model whose weight was patched to ``W + t delta``, sample by sample, for batches that mix
directions and shifts, in the plain and the shared-prefix form, with and without truncation.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from cli.main import main
from engine.directions import Direction, DirectionSet
from engine.discovery import get_method
from engine.discovery.hessian import LayerHessian
from engine.discovery.shifts import param_pair
from engine.distances import load_distance
from engine.errors import AtlasError
from engine.jobs import run_job
from engine.models import load_generator
from engine.models.base import ParamEdit
from engine.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from engine.render import render_batch
from engine.seeds import applicable
from tests.engine.cli_runs import discover
from tests.engine.param_methods import check_param_methods_on_layer

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"


def tiny(c_dim: int = 0, seed: int = 0) -> StyleGAN2Generator:
    torch.manual_seed(seed)
    cfg = StyleGAN2Config.standard(
        16, channel_base=128, channel_max=16, z_dim=12, w_dim=10, mapping_layers=3, c_dim=c_dim
    )
    g = StyleGAN2Generator(cfg)
    with torch.no_grad():  # move everything off its init value so every term matters
        for name, p in g.named_parameters():
            p.add_(torch.randn_like(p) * (0.3 if "noise_strength" in name else 0.1 * (p.std() if p.numel() > 1 else 1)))
        g.w_avg.normal_()
    return g.eval()


def deltas(gen, layer: str, U: int, seed: int = 1) -> torch.Tensor:
    W = gen.layer_weight(layer).detach()
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(U, *W.shape, generator=g, dtype=torch.float64).to(W.dtype)
    return d * (0.3 * W.norm() / d[0].norm())  # shifts of 30 % of ||W||: the images change clearly


def patched_renders(gen, layer, z, delta, index, t, *, psi=1.0, classes=None) -> torch.Tensor:
    """Sample b rendered alone by a copy of ``gen`` whose ``layer`` weight is ``W + t[b] delta[index[b]]``."""
    out = []
    for b in range(z.shape[0]):
        g2 = copy.deepcopy(gen)
        with torch.no_grad():
            g2.layer_weight(layer).add_(t[b] * delta[index[b]])
            cls = None if classes is None else classes[b : b + 1]
            out.append(g2.decode(z[b : b + 1], "z", psi=psi, classes=cls))
    return torch.cat(out)


def check_against_patched(gen, layer, *, psi, classes=None, atol):
    """Plain and shared-prefix forms against patched copies; returns the largest error."""
    z = torch.randn(3, gen.z_dim, generator=torch.Generator().manual_seed(2)).to(gen.w_avg.dtype)
    D = deltas(gen, layer, 3)
    source = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    index = torch.tensor([0, 1, 2, 2, 0, 1, 1])
    t = torch.tensor([0.5, -1.0, 2.0, 0.0, 1.5, 0.7, -0.3], dtype=z.dtype)
    cls = None if classes is None else torch.as_tensor(classes)
    ref = patched_renders(gen, layer, z[source], D, index, t, psi=psi, classes=None if cls is None else cls[source])
    with torch.no_grad():
        unedited = gen.decode(z[source], "z", psi=psi, classes=None if cls is None else cls[source])
        plain = gen.decode(
            z[source], "z", psi=psi, edit=ParamEdit(layer, D, index, t), classes=None if cls is None else cls[source]
        )
        shared = gen.decode(z, "z", psi=psi, edit=ParamEdit(layer, D, index, t, source), classes=cls)
    assert float((ref - unedited).abs().amax(dim=(1, 2, 3))[t != 0].min()) > 1e-2  # the edits change the images
    errors = [float((x - ref).abs().max()) for x in (plain, shared)]
    assert max(errors) < atol, errors
    return max(errors)


@pytest.mark.parametrize("layer", ["mapping.fc0", "mapping.fc2"])
@pytest.mark.parametrize("psi", [1.0, 0.7])
def test_tiny_mapping_edit_equals_patched_weight_float64(layer, psi):
    gen = tiny().double()
    check_against_patched(gen, layer, psi=psi, atol=1e-12)


def test_conditional_mapping_edit_keeps_each_rows_class():
    """The class embedding comes before the FC layers: shared rows keep their classes."""
    gen = tiny(c_dim=4).double()
    check_against_patched(gen, "mapping.fc0", psi=0.8, classes=[3, 0, 2], atol=1e-12)
    check_against_patched(gen, "mapping.fc1", psi=1.0, classes=[1, 1, 2], atol=1e-12)


def test_procedural_mapping_edit_equals_patched_weight():
    gen = load_generator("procedural-stylegan2-32", device="cpu")
    # float32: this model's own batch-vs-single rounding is ~1.5e-5 (8 mapping layers amplify it)
    check_against_patched(gen, "mapping.fc3", psi=0.7, atol=1e-4)
    check_against_patched(gen.double(), "mapping.fc3", psi=0.7, atol=1e-9)


@pytest.mark.usefixtures("shared_fixtures")
@pytest.mark.parametrize(
    "name, classes",
    [
        ("stylegan3/sg3t_res32.pkl", None),
        ("nvada_skip_res64_fp16.pkl", None),
        ("rosinality_s32_narrow.pt", None),
        ("stylegan3/sg2ada_cond_res32.pkl", [3, 0, 7]),
    ],
)
def test_fixture_mapping_edit_equals_patched_weight(name, classes):
    """Float32: within a few times the model's own batch-vs-single rounding (measured 1e-6 .. 6e-6)."""
    gen = load_generator(FIXTURES / name, device="cpu")
    layers = [i.name for i in gen.mapping_layers()]
    assert layers and layers[0] == "mapping.fc0" and all(i.kind == "linear" for i in gen.mapping_layers())
    check_against_patched(gen, layers[0], psi=1.0, classes=classes, atol=3e-5)
    check_against_patched(gen, layers[-1], psi=0.7, classes=classes, atol=3e-5)


def test_mapping_layers_are_listed_and_default_layer_unchanged(capsys):
    gen = tiny()
    infos = gen.editable_layers()
    assert [i.name for i in infos[:3]] == ["mapping.fc0", "mapping.fc1", "mapping.fc2"]
    assert infos[0].shape == (10, 12) and infos[0].mapping and infos[0].kind == "linear" and infos[0].resolution == 0
    assert not any(i.mapping for i in infos[3:]) and gen.default_edit_layer == "synthesis.b8.conv0"
    assert gen.layer_weight("mapping.fc1") is gen.mapping_net.fcs[1].weight
    assert main(["info", "procedural-stylegan2-32"]) == 0
    out = capsys.readouterr().out
    assert "mapping.fc0" in out and "reads z" in out and "reads mapping.fc6" in out
    assert "synthesis.b8.conv0" in out.split("(default)")[0].splitlines()[-1]


def test_mapping_edits_need_z_codes():
    gen = tiny()
    z = torch.randn(2, 12)
    edit = ParamEdit.single("mapping.fc1", deltas(gen, "mapping.fc1", 1)[0], 2)
    ws = gen.encode(z, "w+")
    with pytest.raises(AtlasError, match="mapping.fc1 .*acts on z codes; these codes are in w\\+"):
        gen.decode(ws, "w+", edit=edit)
    with pytest.raises(AtlasError, match="mapping-network layer acts on z codes"):
        gen.synthesis(ws, edit=edit)
    with pytest.raises(AtlasError, match="not a layer of the mapping network"):
        gen.mapping(z, edit=ParamEdit.single("synthesis.b4.conv1", torch.zeros(16, 16, 3, 3), 2))
    d = Direction("param", layer="mapping.fc1", delta=edit.delta[0])
    assert applicable(d, "z", gen) and not applicable(d, "w", gen) and applicable(d, "w")


def test_render_batch_applies_mapping_shifts_before_w_shifts():
    """A mapping shift with a w direction: the mapping edit acts while z becomes w, then w moves."""
    gen = tiny().double()
    z = torch.randn(4, 12, dtype=torch.float64)
    D = deltas(gen, "mapping.fc2", 2).float().double()  # render_batch stacks deltas in float32
    dp = [Direction("param", layer="mapping.fc2", delta=D[i]) for i in range(2)]
    dw = Direction("latent", space="w", vector=torch.randn(10, dtype=torch.float64))
    rows = [[(dp[0], 1.0), (dw, 2.0)], [(dp[1], -0.5)], [(dw, -1.0)], []]
    with torch.no_grad():
        got = render_batch(gen, z, rows, space="z", psi=0.7)
        for b, row in enumerate(rows):
            g2 = copy.deepcopy(gen)
            w_shift = 0.0
            for d, t in row:
                if d.kind == "param":
                    g2.layer_weight(d.layer).add_(t * d.delta)
                else:
                    w_shift = w_shift + t * d.vector
            w = g2.encode(z[b : b + 1], "w", psi=0.7) + w_shift
            assert float((got[b : b + 1] - g2.decode(w, "w")).abs().max()) < 1e-12
    with pytest.raises(AtlasError, match="acts on z codes"):
        render_batch(gen, gen.encode(z, "w"), [[(dp[0], 1.0)]] * 4, space="w")


def test_param_pair_on_a_mapping_layer_decodes_from_z():
    gen = tiny().double()
    z = torch.randn(3, 12, dtype=torch.float64)
    D = deltas(gen, "mapping.fc1", 2)
    k, t = torch.tensor([0, 1, 1]), torch.tensor([1.0, 0.5, -2.0], dtype=torch.float64)
    with torch.no_grad():
        for mode in ("one", "two"):
            x0, x1 = param_pair(gen, z, "mapping.fc1", D, k, t, psi=0.8, mode=mode)
            assert float((x0 - gen.decode(z, "z", psi=0.8)).abs().max()) < 1e-12
            ref = patched_renders(gen, "mapping.fc1", z, D, k, t, psi=0.8)
            assert float((x1 - ref).abs().max()) < 1e-12


def test_hessian_of_a_mapping_layer_equals_explicit_hessian():
    """The shared-primal, vmapped Hessian products on a mapping layer equal the literal double backward."""
    gen = tiny(seed=3).double()
    layer = "mapping.fc1"  # 10 x 10 weights
    z = torch.randn(3, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    op = LayerHessian(gen, layer, load_distance("pixel"), z, block=4, pass_seconds=None)
    n = op.n
    a = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    f = op.value(a.reshape(op.shape))
    (g,) = torch.autograd.grad(f, a, create_graph=True)
    H = torch.stack([torch.autograd.grad(g, a, grad_outputs=e, retain_graph=True)[0] for e in torch.eye(n).double()])
    V = torch.randn(n, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    HV = op.matvec(V)
    assert float(H.abs().max()) > 0
    assert torch.allclose(HV, H @ V, rtol=1e-8, atol=1e-10 * float(H.abs().max()))


def test_param_methods_run_on_a_mapping_layer():
    gen = tiny()
    layer = "mapping.fc1"
    check_param_methods_on_layer(gen, layer, steps=2, batch_size=2, rca_samples=4, spectrum=(2, 3), hybrid=(1, 2))


@pytest.mark.parametrize(
    "method, extra", [("param-svd", []), ("param-spectrum", ["--set", "distance=pixel", "--set", "samples=2"])]
)
def test_discover_and_render_on_a_procedural_mapping_layer(tmp_path, method, extra):
    out = tmp_path / f"{method}.json"
    args = ["--method", method, "--k", "3", "--set", "layer=mapping.fc4", *extra, "--out", str(out)]
    assert discover("procedural-stylegan2-32", tmp_path, *args) == 0
    dset = DirectionSet.load(out)
    assert dset.metrics["layer"] == "mapping.fc4" and len(dset) == 3
    grid = tmp_path / "grid.npy"
    render = ["render", "--model", "procedural-stylegan2-32", "--directions", str(out), "--index", "0"]
    assert main([*render, "--seeds", "0", "--out", str(grid)]) == 0
    images = np.load(grid)
    assert np.isfinite(images).all() and np.abs(images[0] - images[-1]).max() > 1e-3


def test_pivotal_tuning_leaves_the_mapping_layers_alone():
    """The tuned code is held in w / w+, past the mapping network: tuning's layers are the synthesis ones."""
    from engine.projection import TuneParams

    gen = tiny()
    layers = TuneParams().check(gen)
    assert layers == [i.name for i in gen.editable_layers() if not i.mapping] and "synthesis.b4.conv1" in layers
    with pytest.raises(AtlasError, match="mapping.fc0 is in the mapping network"):
        TuneParams(layers=("mapping.fc0",)).check(gen)


def test_a_latent_tuned_on_a_mapping_layer_is_refused():
    from engine.latents import Latent, LatentFileError

    gen = tiny()
    lat = Latent(torch.randn(1, 10), "w", {"name": gen.name}, tuning={"mapping.fc1": torch.zeros(10, 10)})
    with pytest.raises(LatentFileError, match="mapping.fc1, a mapping-network layer, cannot act on a code in w"):
        lat.check_fits(gen)


def test_reproduce_compares_a_mapping_edit_with_w_shifts():
    """The edit of a mapping layer is rendered from z; the best constant w shift explains part of it
    (the edit moves w by an amount that depends on z, so not all of it)."""
    from engine.analysis import reproduce

    gen = tiny()
    dset = run_job(get_method("param-svd").run(gen, get_method("param-svd").make_params(k=2, layer="mapping.fc2")))
    r = run_job(reproduce.run(gen, dset, [0], reproduce.Params(t=0.5, steps=60, batch_size=16, eval_samples=64)))
    assert r.space == "w" and np.isfinite(r.residual).all()
    assert 0.0 < r.residual[0] < 0.99 and r.edit_size[0] > 0
