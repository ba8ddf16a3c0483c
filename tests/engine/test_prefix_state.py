"""Resuming a synthesis from a cached prefix (``PREFIX_STATE``): ``synthesis_prefix`` stops before
an editable layer, ``resume_synthesis`` runs the layers from there on with parameter edits. The
images must be the very ones of a whole forward, for every layer, with rows cached one by one."""

from __future__ import annotations

import pytest
import torch

from engine.directions import Direction
from engine.errors import AtlasError
from engine.models.base import PREFIX_STATE, ParamEdit, SynthesisState
from engine.render import Prefix, render_batch, render_prefix, render_resumed, resume_layer
from tests.engine.tiny_generators import tiny_dcgan, tiny_stylegan2


def _resnet_stylegan2():
    from engine.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator

    cfg = StyleGAN2Config.standard(16, channel_base=128, channel_max=16, z_dim=12, w_dim=10, mapping_layers=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        gen = StyleGAN2Generator(StyleGAN2Config(**{**cfg.__dict__, "architecture": "resnet"}))
        with torch.no_grad():
            for p in gen.parameters():
                p.add_(torch.randn_like(p) * 0.1)
    return gen.eval()


IDS = ["dcgan", "stylegan2-skip", "stylegan2-resnet"]


def _generators():
    return [tiny_dcgan(), tiny_stylegan2(seed=1), _resnet_stylegan2()]


@pytest.mark.parametrize("gen", _generators(), ids=IDS)
def test_a_resumed_synthesis_equals_the_whole_forward_at_every_layer(gen):
    assert gen.supports(PREFIX_STATE)
    z = gen.seed_latents([1, 2, 3])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        ws = gen.codes_to_ws(z, "z")
        for info in gen.editable_layers():
            if info.mapping:  # before the synthesis: test_a_mapping_layer_has_no_synthesis_prefix
                continue
            delta = torch.randn((2, *info.shape), generator=g) * 0.3
            edit = ParamEdit(info.name, delta, torch.tensor([0, 1, 0]), torch.tensor([0.5, -1.0, 0.0]))
            whole = gen.synthesis(ws, edit=edit)
            state = gen.synthesis_prefix(ws, info.name)
            assert state.layer == info.name
            # rows kept one by one (a preview caches one per seed) and joined again
            rows = SynthesisState.cat([state.select([i]) for i in range(3)])
            assert torch.equal(gen.resume_synthesis(rows, ws, edit=edit), whole), info.name
            assert torch.equal(gen.resume_synthesis(state, ws), gen.synthesis(ws)), info.name


@pytest.mark.parametrize("gen", _generators(), ids=IDS)
def test_an_edit_before_the_prefix_is_refused(gen):
    layers = [i.name for i in gen.editable_layers() if not i.mapping]
    z = gen.seed_latents([4])
    with torch.no_grad():
        ws = gen.codes_to_ws(z, "z")
        state = gen.synthesis_prefix(ws, layers[2])
        early = ParamEdit.single(layers[1], torch.zeros(gen.layer_info(layers[1]).shape), 1)
        with pytest.raises(AtlasError, match=f"edit of {layers[1]} lies before"):
            gen.resume_synthesis(state, ws, edit=early)
        with pytest.raises(AtlasError, match="2 codes"):
            gen.resume_synthesis(state, torch.cat([ws, ws]))


def test_a_stylegan2_prefix_needs_fixed_noise():
    gen = tiny_stylegan2()
    ws = gen.codes_to_ws(gen.seed_latents([0]), "z")
    with pytest.raises(AtlasError, match="fixed noise"):
        gen.synthesis_prefix(ws, gen.default_edit_layer, noise="random")


@pytest.mark.parametrize("gen", _generators(), ids=IDS)
def test_render_resumed_matches_render_batch(gen):
    layers = [i.name for i in gen.editable_layers() if not i.mapping]
    g = torch.Generator().manual_seed(3)

    def direction(layer):
        return Direction("param", layer=layer, delta=torch.randn(gen.layer_info(layer).shape, generator=g) * 0.2)

    a, b = direction(layers[1]), direction(layers[-1])
    assert resume_layer(gen, [b, a]) == layers[1]  # the first edited layer, whatever the order
    assert resume_layer(gen, [a, Direction("latent", vector=torch.ones(gen.z_dim), space="z")]) is None
    space = "w" if gen.num_ws else "z"
    codes = gen.encode(gen.seed_latents([5, 6]), space)
    shifts = [[(a, 0.7), (b, -0.4)], []]
    with torch.no_grad():
        prefix = render_prefix(gen, codes, layers[1], space=space)
        joined = Prefix.cat([prefix.select([0]), prefix.select([1])])
        got = render_resumed(gen, joined, shifts)
        want = render_batch(gen, codes, shifts, space=space)
    # equal up to float rounding (the cached rows of ws are contiguous copies of render_batch's
    # expanded view, and the affine layers may sum in another order)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_a_mapping_layer_has_no_synthesis_prefix():
    """A StyleGAN2 mapping layer's edit changes ws itself: renders of it never resume a cached
    synthesis prefix, and asking for a prefix there is refused in one line."""
    gen = tiny_stylegan2()
    fc = next(i for i in gen.editable_layers() if i.mapping)
    conv = next(i for i in gen.editable_layers() if not i.mapping)
    mapped = Direction("param", layer=fc.name, delta=torch.randn(fc.shape))
    synth = Direction("param", layer=conv.name, delta=torch.randn(conv.shape))
    assert resume_layer(gen, [synth]) == conv.name
    assert resume_layer(gen, [synth, mapped]) is None
    with pytest.raises(AtlasError, match="mapping"):
        gen.synthesis_prefix(gen.encode(gen.seed_latents([0]), "w"), fc.name)
