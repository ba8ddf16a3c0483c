"""The preview caches each seed's unedited 'before' image: a slider move renders one image per seed."""

from __future__ import annotations

import numpy as np
import torch

import desktop.rendering as rendering
from desktop.rendering import BeforeCache, PreviewRequest, render_preview


def _counting(monkeypatch):
    rows: list[int] = []
    real = rendering.render_batch

    def spy(gen, codes, *args, **kw):
        rows.append(codes.shape[0])
        return real(gen, codes, *args, **kw)

    monkeypatch.setattr(rendering, "render_batch", spy)
    return rows


def test_slider_moves_render_only_the_edited_images(tiny_gen, dirset, monkeypatch):
    rows = _counting(monkeypatch)
    cache = BeforeCache()
    seeds = (3, 5)
    first = render_preview(tiny_gen, PreviewRequest(seeds, shifts=((dirset, 0, 1.0),)), cache)
    second = render_preview(tiny_gen, PreviewRequest(seeds, shifts=((dirset, 0, 2.5),)), cache)
    assert rows == [4, 2]  # edited + before, then edited only
    fresh = render_preview(tiny_gen, PreviewRequest(seeds, shifts=((dirset, 0, 2.5),)), None)
    assert np.array_equal(second.before, fresh.before) and np.array_equal(second.after, fresh.after)
    assert np.array_equal(first.before, second.before) and not np.array_equal(first.after, second.after)
    plain = render_preview(tiny_gen, PreviewRequest(seeds), None)
    assert np.array_equal(plain.after, second.before)


def test_before_cache_key_follows_what_the_image_depends_on(tiny_gen, dirset, monkeypatch):
    rows = _counting(monkeypatch)
    cache = BeforeCache()
    edit = ((dirset, 1, 1.0),)
    render_preview(tiny_gen, PreviewRequest((7,), shifts=edit), cache)
    render_preview(tiny_gen, PreviewRequest((7,), shifts=edit, noise="none"), cache)  # another noise mode
    render_preview(tiny_gen, PreviewRequest((8,), shifts=edit), cache)  # another seed
    render_preview(tiny_gen, PreviewRequest((7, 8), shifts=edit), cache)  # both cached
    assert rows == [2, 2, 2, 2]
    w = tiny_gen.layer_weight(tiny_gen.default_edit_layer)
    with torch.no_grad():
        w.mul_(1.5)  # an in-place weight change makes the old images stale
    try:
        res = render_preview(tiny_gen, PreviewRequest((7,), shifts=edit), cache)
        assert rows[-1] == 2
        assert np.array_equal(res.before, render_preview(tiny_gen, PreviewRequest((7,)), None).after)
    finally:
        with torch.no_grad():
            w.div_(1.5)


def _param_set(gen, layer: str, k: int = 2):
    from engine.directions import Direction, DirectionSet, model_ref

    g = torch.Generator().manual_seed(4)
    shape = gen.layer_info(layer).shape
    dirs = [Direction("param", layer=layer, delta=torch.randn(shape, generator=g) * 0.1) for _ in range(k)]
    return DirectionSet("params", model_ref(gen), dirs)


def test_a_parameter_slider_runs_only_the_layers_from_the_edit(tiny_gen, monkeypatch):
    """While a slider of a parameter direction moves, each seed's code and its activations up to
    the edited layer come from the cache: the layers before it and the seed's latent are not
    computed again, and the images are those of a whole render."""
    layer = tiny_gen.default_edit_layer
    first_edited = int(layer.split(".")[1])
    assert first_edited > 0
    pset = _param_set(tiny_gen, layer)
    calls = {"first layer": 0, "latents": 0}
    tiny_gen.main[0].register_forward_hook(lambda *_: calls.__setitem__("first layer", calls["first layer"] + 1))
    real_latents = tiny_gen.seed_latents

    def latents(*a, **kw):
        calls["latents"] += 1
        return real_latents(*a, **kw)

    monkeypatch.setattr(tiny_gen, "seed_latents", latents)
    cache = BeforeCache()
    seeds = (3, 5)
    render_preview(tiny_gen, PreviewRequest(seeds), cache)  # the seeds' first render
    render_preview(tiny_gen, PreviewRequest(seeds, shifts=((pset, 0, 1.0),)), cache)  # the first move
    before = dict(calls)
    moved = [render_preview(tiny_gen, PreviewRequest(seeds, shifts=((pset, 0, t),)), cache) for t in (1.5, -2.0)]
    assert calls == before  # no layer before the edit ran, no latent was drawn
    # another direction of the same layer, and one of a later layer, resume from the same prefix
    later = _param_set(tiny_gen, f"main.{first_edited + 3}")
    both = render_preview(tiny_gen, PreviewRequest(seeds, shifts=((pset, 1, 0.5), (later, 0, 2.0))), cache)
    assert calls == before
    monkeypatch.undo()
    for res, shifts in zip([*moved, both], [((pset, 0, 1.5),), ((pset, 0, -2.0),), ((pset, 1, 0.5), (later, 0, 2.0))]):
        fresh = render_preview(tiny_gen, PreviewRequest(seeds, shifts=shifts), None)
        assert np.array_equal(res.after, fresh.after) and np.array_equal(res.before, fresh.before)
    # an edit of an earlier layer runs the whole forward again
    early = _param_set(tiny_gen, "main.0")
    render_preview(tiny_gen, PreviewRequest(seeds, shifts=((early, 0, 1.0),)), cache)
    assert calls["first layer"] > before["first layer"]


def test_a_stylegan2_parameter_slider_resumes_with_the_same_images():
    from tests.engine.tiny_generators import tiny_stylegan2

    gen = tiny_stylegan2(seed=3)
    layers = [i.name for i in gen.editable_layers() if not i.mapping]
    pset = _param_set(gen, layers[3])
    cache = BeforeCache()
    for space in ("w", "z"):
        for t in (0.0, 1.0, 2.0):
            req = PreviewRequest((1, 2), space=space, shifts=((pset, 0, t),))
            got = render_preview(gen, req, cache)
            fresh = render_preview(gen, req, None)
            # at most one level apart: float rounding differs between a batch with edited rows
            # (StyleGAN2's linear edit path) and a plain one, as for the cached 'before' images
            for a, b in ((got.after, fresh.after), (got.before, fresh.before)):
                assert np.abs(a.astype(int) - b).max() <= 1
    assert cache.prefix(gen, cache.key(gen, 1, PreviewRequest((1,), space="w")), layers[3]) is not None
