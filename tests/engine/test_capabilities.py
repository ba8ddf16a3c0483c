"""Methods ask generators for declared capabilities; conditioning views never change the shared generator."""

import pytest
import torch

from engine.discovery.registry import get_method
from engine.errors import AtlasError
from engine.models.base import EARLY_ACTIVATION, FIRST_LATENT_LAYER, MAPPING, STYLE_AFFINES
from tests.engine.tiny_generators import tiny_dcgan, tiny_stylegan2


def test_families_declare_their_capabilities():
    dc, sg = tiny_dcgan(), tiny_stylegan2()
    assert dc.family == "dcgan" and dc.supports(FIRST_LATENT_LAYER) and dc.supports(EARLY_ACTIVATION)
    assert not dc.supports(STYLE_AFFINES) and not dc.supports(MAPPING)
    assert sg.family == "stylegan2" and sg.supports(STYLE_AFFINES) and sg.supports(MAPPING)
    with pytest.raises(AtlasError, match="style affines"):
        dc.style_affines()
    assert dc.describe()["family"] == "dcgan" and "first_latent_layer" in dc.describe()["capabilities"]


def test_methods_say_why_they_do_not_apply():
    dc = tiny_dcgan()
    assert get_method("sefa").unsupported_reason(dc) is None
    assert get_method("param-svd").unsupported_reason(dc) is None
    dc.capabilities = frozenset()  # an instance that declares nothing
    reason = get_method("sefa").unsupported_reason(dc)
    assert reason and "style affines or first latent layer" in reason


def test_unconditional_models_refuse_a_class_and_views_share_weights():
    gen = tiny_dcgan()
    z = gen.seed_latents([0, 1])
    with pytest.raises(AtlasError, match="not class-conditional"):
        gen.decode(z, "z", classes=3)
    with pytest.raises(AtlasError, match="input transform"):
        gen.decode(z, "z", transform=torch.eye(3))
    view = gen.conditioned()
    assert view is not gen and view.main is gen.main
    torch.testing.assert_close(view.decode(z), gen.decode(z))


@pytest.mark.parametrize("family", ["dcgan", "stylegan2", "biggan", "proggan"])
def test_every_model_checks_its_edits_the_same_way(family):
    """``Generator.checked_edits``: one check of a synthesis call's edits for every family (before,
    DCGAN and ProGAN checked only the layer name and let a misfit delta reach torch)."""
    from engine.models.base import ParamEdit
    from tests.engine.tiny_generators import tiny_biggan

    if family == "proggan":
        from engine.models.proggan import ProGANConfig, ProGANGenerator

        torch.manual_seed(0)
        gen = ProGANGenerator(ProGANConfig(z_dim=8, widths=(8, 4))).eval()
    else:
        gen = {"dcgan": tiny_dcgan, "stylegan2": tiny_stylegan2, "biggan": tiny_biggan}[family]()
    layer = gen.default_edit_layer
    shape = tuple(gen.layer_weight(layer).shape)
    z = gen.seed_latents([0, 1])
    kw = {"classes": 0} if gen.num_classes else {}
    wrong = torch.zeros(1, *shape[:-1], shape[-1] + 1)
    with pytest.raises(AtlasError, match=rf"edit of layer '{layer}': delta has shape .*the layer's weight is"):
        gen.decode(z, "z", edit=ParamEdit.single(layer, wrong[0], 2), **kw)
    short = ParamEdit(layer, torch.zeros(1, *shape), torch.zeros(3, dtype=torch.long), torch.ones(3))
    with pytest.raises(AtlasError, match=r"index and t must have shape \[2\]"):
        gen.decode(z, "z", edit=short, **kw)
    with pytest.raises(AtlasError, match="has no editable layer 'nope'; its layers are"):
        gen.decode(z, "z", edit=ParamEdit.single("nope", torch.zeros(shape), 2), **kw)
    ok = gen.decode(z, "z", edit=ParamEdit.single(layer, torch.zeros(shape), 2), **kw)
    torch.testing.assert_close(ok, gen.decode(z, "z", **kw))
