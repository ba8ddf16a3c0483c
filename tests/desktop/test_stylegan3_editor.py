"""The preview's StyleGAN3 input-transform controls (translate x / y, rotate), driven through the widgets."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def wait_preview(qtbot, win):
    qtbot.waitUntil(lambda: win.preview.image() is not None and not win.preview.renderer.busy, timeout=20000)


@pytest.fixture()
def sg3t(shared_fixtures):
    from engine.models import load_generator

    path = shared_fixtures / "stylegan3" / "sg3t_res32.pkl"
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    return load_generator(str(path), device="cpu")


def test_transform_controls_only_for_models_with_an_input_transform(qtbot, make_window, tiny_gen, sg3t):
    win = make_window()
    assert tiny_gen.family == "dcgan"
    assert win.preview.transform.isHidden() and win.preview.current_request().transform is None
    win2 = make_window(gen=sg3t)
    assert win2.preview.transform.isVisible()
    assert win2.preview.current_request().transform == (0.0, 0.0, 0.0)


def test_translate_and_rotate_change_the_preview_exactly_as_the_engine_renders(qtbot, make_window, sg3t):
    from engine.models.base import input_transform
    from engine.render import to_uint8

    win = make_window(gen=sg3t)
    p = win.preview
    wait_preview(qtbot, win)
    plain = p.image().copy()

    p.transform.tx.setValue(0.1)
    qtbot.waitUntil(lambda: p.current_request().transform == (0.0, 0.1, 0.0))
    wait_preview(qtbot, win)
    moved = p.image().copy()
    assert not np.array_equal(moved, plain)

    p.transform.ty.setValue(-0.05)
    p.transform.rotate.setValue(10.0)
    qtbot.waitUntil(lambda: p.current_request().transform == (10.0, 0.1, -0.05))
    wait_preview(qtbot, win)
    qtbot.waitUntil(lambda: "rotate 10°" in p.canvas.caption, timeout=5000)
    turned = p.image().copy()
    assert not np.array_equal(turned, moved)
    # the canvas shows what the engine renders with gen_images.py's transform for seed 0
    z = sg3t.seed_latents([0])
    with torch.no_grad():
        want = to_uint8(sg3t.decode(z, transform=input_transform(10.0, (0.1, -0.05))))[0]
    h, w = want.shape[:2]
    assert turned.shape[:2] == (h, w)
    assert np.abs(turned.astype(int) - want).max() <= 1

    p.transform.reset_btn.click()
    qtbot.waitUntil(lambda: p.current_request().transform == (0.0, 0.0, 0.0))
    wait_preview(qtbot, win)
    assert np.array_equal(p.image(), plain)
