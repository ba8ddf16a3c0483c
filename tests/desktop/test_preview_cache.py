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
