"""Adapters: Linear layers are editable, the first latent-consuming layer is found for SeFa / GANSpace,
and layers that cannot be edited say why."""

from __future__ import annotations

import copy
import textwrap

import pytest
import torch
from torch import nn

from cli.main import main
from engine.directions import DirectionSet
from engine.discovery.hessian import LayerHessian
from engine.discovery.registry import get_method
from engine.distances import load_distance
from engine.jobs import run_job
from engine.models import load_generator
from engine.models.adapter import AdapterGenerator
from engine.models.base import EARLY_ACTIVATION, FIRST_LATENT_LAYER, ParamEdit
from tests.engine.param_methods import check_param_methods_on_layer
from tests.engine.test_proggan import check_methods_run_and_sets_render
from tests.engine.tiny_generators import tiny_dcgan

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = "resources/examples/tiny_adapter.py"
MLP = "resources/examples/mlp_adapter.py"


def write_adapter(tmp_path, body: str, name: str = "adapter.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_mlp_linear_layers_are_editable_and_edits_equal_patched_weights():
    gen = load_generator(MLP, device="cpu")
    assert [(i.name, i.kind, i.shape, i.resolution) for i in gen.editable_layers()] == [
        ("net.0", "linear", (256, 64), 0),
        ("net.2", "linear", (512, 256), 0),
        ("net.4", "linear", (768, 512), 0),
    ]
    z = gen.seed_latents([3, 4, 5])
    g = torch.Generator().manual_seed(0)
    for layer in ("net.0", "net.4"):
        W = gen.layer_weight(layer)
        deltas = torch.randn(2, *W.shape, generator=g) * W.norm() / W.numel() ** 0.5
        edit = ParamEdit(layer, deltas, torch.tensor([0, 1, 0]), torch.tensor([0.5, -0.7, 0.0]))
        with torch.no_grad():
            got = gen.synthesis(z, edit=edit)
        for b, (u, t) in enumerate([(0, 0.5), (1, -0.7), (0, 0.0)]):
            g2 = copy.deepcopy(gen)
            with torch.no_grad():
                g2.layer_weight(layer).add_(t * deltas[u])
                torch.testing.assert_close(got[b : b + 1], g2(z[b : b + 1]), atol=2e-5, rtol=0)


def test_first_latent_layer_is_the_layer_that_receives_z():
    tiny, mlp = load_generator(TINY, device="cpu"), load_generator(MLP, device="cpu")
    for gen, layer in ((tiny, "fc"), (mlp, "net.0")):
        assert gen.supports(FIRST_LATENT_LAYER) and gen.supports(EARLY_ACTIVATION)
        first = gen.first_latent_layer()
        assert first.name == layer and first.normalize_rows
        torch.testing.assert_close(first.matrix, gen.layer_weight(layer).detach().double())
    # GANSpace's default activation: the first activation module after that layer
    assert tiny.default_activation_depth == 3 and mlp.default_activation_depth == 2
    z = tiny.seed_latents([0, 1])
    with torch.no_grad():
        fc = tiny.net.fc(z).reshape(-1, 64, 4, 4)
        torch.testing.assert_close(tiny.early_activation(z, 1), tiny.net.fc(z))
        torch.testing.assert_close(tiny.early_activation(z, 3), torch.relu(tiny.net.body[0](fc)))
        torch.testing.assert_close(mlp.early_activation(z.new_zeros(2, 64), 2), mlp.net.net[:2](z.new_zeros(2, 64)))


class _Reshape(nn.Module):
    def __init__(self, main: nn.Module) -> None:
        super().__init__()
        self.main = main

    def forward(self, z):
        return self.main(z.reshape(z.shape[0], -1, 1, 1))


def test_an_adapter_around_a_dcgan_folds_its_batchnorm_as_the_builtin_does():
    dc = tiny_dcgan(nz=8, ngf=4, n_up=2, seed=2)
    ad = AdapterGenerator(_Reshape(copy.deepcopy(dc.main)).eval(), 8, name="dcgan-adapter")
    mine, ref = ad.first_latent_layer(), dc.first_latent_layer()
    assert mine.name == "main.0" and not mine.normalize_rows and not ref.normalize_rows
    torch.testing.assert_close(mine.matrix, ref.matrix)
    spec = get_method("sefa")
    a, b = (run_job(spec.run(g, spec.make_params(k=4))) for g in (ad, dc))
    for da, db in zip(a.directions, b.directions, strict=True):
        assert abs(float(da.vector @ db.vector)) > 1 - 1e-5


def test_layers_that_cannot_be_edited_say_why(tmp_path, capsys):
    path = write_adapter(
        tmp_path,
        """
        import torch
        import torch.nn.functional as F
        from torch import nn

        class Odd(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(10, 16)
                self.fc = nn.Linear(16, 8 * 4 * 4)
                self.side = nn.Linear(16, 16)
                self.per_pixel = nn.Linear(8, 8)
                self.up = nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1)
                self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, padding_mode="reflect")
                self.to_rgb = nn.Conv2d(8, 3, 1)

            def forward(self, z):
                z = z / z.norm(dim=1, keepdim=True) + 0 * F.linear(z, self.side.weight)
                x = self.fc(z).reshape(-1, 8, 4, 4)
                x = self.per_pixel(x.permute(0, 2, 3, 1).reshape(-1, 8)).reshape(-1, 4, 4, 8).permute(0, 3, 1, 2)
                x = self.up(x, output_size=[8, 8])
                return torch.tanh(self.to_rgb(self.dw(x)))

        def load_generator():
            torch.manual_seed(0)
            return Odd(), 16
        """,
    )
    gen = load_generator(path, device="cpu")
    # a grouped conv with reflect padding is still linear in its weight: editable
    assert [i.name for i in gen.editable_layers()] == ["fc", "dw", "to_rgb"]
    why = {n: r for n, _, r in gen.uneditable_layers()}
    assert set(why) == {"embed", "side", "per_pixel", "up"}
    assert "embedding table" in why["embed"] and "never calls it as a module" in why["side"]
    assert "one row per latent" in why["per_pixel"] and "op(input, weight) + bias" in why["up"]
    # z is normalised before fc: no first latent layer, and the methods that need one say why
    assert not gen.supports(FIRST_LATENT_LAYER) and not gen.supports(EARLY_ACTIVATION)
    reason = get_method("sefa").unsupported_reason(gen)
    assert "does not receive z itself" in reason and "'fc'" in reason
    assert "does not receive z itself" in get_method("ganspace").unsupported_reason(gen)
    assert get_method("param-svd").unsupported_reason(gen) is None
    # edits on the grouped, reflect-padded conv equal patching its weight
    W = gen.layer_weight("dw")
    delta = torch.randn(W.shape, generator=torch.Generator().manual_seed(1))
    z = gen.seed_latents([0, 1])
    with torch.no_grad():
        got = gen.synthesis(z, edit=ParamEdit.single("dw", delta, 2, 0.3))
        W.add_(0.3 * delta)
        want = gen.synthesis(z)
        W.sub_(0.3 * delta)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=0)

    assert main(["info", path]) == 0
    out = capsys.readouterr().out
    assert "not editable:" in out and "embedding table" in out and "no first latent layer" in out
    assert "fc                           linear" in out


def test_hessian_products_on_a_linear_layer_equal_finite_differences():
    gen = load_generator(MLP, device="cpu").double()
    layer = "net.2"
    g = torch.Generator().manual_seed(0)
    op = LayerHessian(gen, layer, load_distance("pixel"), torch.randn(3, 64, generator=g, dtype=torch.float64))
    v = torch.randn(op.n, dtype=torch.float64, generator=g)
    v /= v.norm()
    eps = 1e-5 * float(gen.layer_weight(layer).norm())
    a = (eps * v).reshape(op.shape)
    fd = (op.gradient(a) - op.gradient(-a)).flatten() / (2 * eps)
    hv = op.matvec(v[:, None])[:, 0]
    assert float((fd - hv).norm() / hv.norm()) < 1e-5


@pytest.mark.parametrize("model, activation", [(MLP, "the output of net.1"), (TINY, "the output of body.1")])
def test_discover_methods_run_on_adapters(tmp_path, model, activation):
    check_methods_run_and_sets_render(model, tmp_path)
    assert DirectionSet.load(tmp_path / "ganspace.json").metrics["pca_space"] == activation


@pytest.mark.parametrize("model", [TINY, MLP])
def test_parameter_methods_run_on_linear_layers(model):
    gen = load_generator(model, device="cpu")
    layer = "fc" if model == TINY else "net.0"
    check_param_methods_on_layer(gen, layer, steps=4, batch_size=4, rca_samples=8, spectrum=(2, 5), hybrid=(2, 3))
