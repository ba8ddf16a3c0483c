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
