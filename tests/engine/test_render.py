import copy

import numpy as np
import pytest
import torch

from engine.directions import Direction, DirectionSet
from engine.models.adapter import load_adapter
from engine.models.base import ParamEdit
from engine.render import (
    Item,
    grid_image,
    materialize,
    path_shifts,
    render_batch,
    render_grid,
    render_items,
    sweep,
    to_uint8,
)

REPO_EXAMPLE = "resources/examples/tiny_adapter.py"


def param_directions(gen, layer, k, seed=0):
    torch.manual_seed(seed)
    W = gen.layer_weight(layer)
    return [Direction("param", layer=layer, delta=torch.randn_like(W) * W.norm() / W.numel() ** 0.5) for _ in range(k)]


def patched_render(gen, z, direction, t):
    """The naive reference: copy the model, patch the weight, render."""
    g2 = copy.deepcopy(gen)
    with torch.no_grad():
        g2.layer_weight(direction.layer).add_(t * direction.delta)
        return g2(z)


@pytest.mark.parametrize("layer", ["main.0", "main.6", "main.12"])
def test_batched_param_edits_equal_patching_the_weights(digiface, layer):
    dirs = param_directions(digiface, layer, 3)
    z = digiface.seed_latents([0, 1])
    pairs = [(d, t) for d in dirs for t in (-0.3, 0.0, 0.5)]
    codes = torch.cat([z] * len(pairs))
    shifts = [[pair] for pair in pairs for _ in range(2)]
    with torch.no_grad():
        batched = render_batch(digiface, codes, shifts)
    expected = torch.cat([patched_render(digiface, z, d, t) for d, t in pairs])
    torch.testing.assert_close(batched, expected, atol=2e-5, rtol=0)


def test_param_edits_in_an_adapter_model_equal_patching():
    gen = load_adapter(REPO_EXAMPLE)
    for layer in [i.name for i in gen.editable_layers()]:
        dirs = param_directions(gen, layer, 2)
        z = gen.seed_latents([5, 6, 7])
        pairs = [(dirs[0], 0.7), (dirs[1], -0.4), (dirs[0], -1.0)]
        with torch.no_grad():
            batched = render_batch(gen, z, [[p] for p in pairs])
        expected = torch.cat([patched_render(gen, z[i : i + 1], d, t) for i, (d, t) in enumerate(pairs)])
        torch.testing.assert_close(batched, expected, atol=2e-5, rtol=0)


def test_two_edits_on_one_sample_add_up(tiny_dcgan):
    d1, d2 = param_directions(tiny_dcgan, "main.3", 2)
    z = tiny_dcgan.seed_latents([1])
    with torch.no_grad():
        both = render_batch(tiny_dcgan, z, [[(d1, 0.3), (d2, -0.2)]])
        g2 = copy.deepcopy(tiny_dcgan)
        g2.layer_weight("main.3").add_(0.3 * d1.delta - 0.2 * d2.delta)
        torch.testing.assert_close(both, g2(z), atol=2e-5, rtol=0)


def test_param_edit_is_differentiable_in_delta(tiny_dcgan):
    W = tiny_dcgan.layer_weight("main.3")
    a = torch.zeros_like(W, requires_grad=True)
    z = tiny_dcgan.seed_latents([0, 1])
    out = tiny_dcgan.synthesis(z, edit=ParamEdit.single("main.3", a, 2))
    (g,) = torch.autograd.grad(out.square().sum(), a, create_graph=True)
    v = torch.randn_like(W)
    (hv,) = torch.autograd.grad((g * v).sum(), a)
    assert g.shape == W.shape and hv.shape == W.shape and hv.abs().sum() > 0


def test_latent_edits_shift_z(tiny_dcgan):
    d = Direction("latent", vector=torch.randn(8), space="z")
    z = tiny_dcgan.seed_latents([0, 1, 2])
    ts = [-2.0, 0.0, 1.5]
    with torch.no_grad():
        out = render_batch(tiny_dcgan, z, [[(d, t)] for t in ts])
        ref = tiny_dcgan(z + torch.tensor(ts)[:, None] * d.vector)
    torch.testing.assert_close(out, ref)


def test_grid_layout_and_items_agree(tiny_dcgan):
    dirs = [Direction("latent", vector=torch.randn(8)) for _ in range(3)]
    z = tiny_dcgan.seed_latents([0, 1])
    shifts = [-1.0, 0.0, 2.0, 3.0]
    job = render_grid(tiny_dcgan, z, dirs, shifts, batch_size=5)
    grid = None
    steps = []
    try:
        while True:
            steps.append(next(job).step)
    except StopIteration as stop:
        grid = stop.value
    assert grid.shape == (3, 4, 2, 16, 16, 3) and grid.dtype == np.uint8
    assert steps[-1] == 24
    with torch.no_grad():
        one = to_uint8(tiny_dcgan(z[1:2] + 2.0 * dirs[2].vector))[0]
    np.testing.assert_array_equal(grid[2, 2, 1], one)
    img = grid_image(grid, pad=2)
    assert img.shape == (3 * 2 * 18 + 2, 4 * 18 + 2, 3)


def test_render_items_raw_returns_floats(tiny_dcgan):
    z = tiny_dcgan.seed_latents([4, 5])
    from engine.jobs import run_job

    raw = run_job(render_items(tiny_dcgan, [Item(c) for c in z], raw=True))
    with torch.no_grad():
        torch.testing.assert_close(raw, tiny_dcgan(z))


def test_materialize_expands_basis_directions(tiny_dcgan):
    from engine.directions import ParamBasis

    W = tiny_dcgan.layer_weight("main.3").detach()
    U, S, Vh = torch.linalg.svd(W.reshape(W.shape[0], -1), full_matrices=False)
    ds = DirectionSet(
        "m",
        {},
        [Direction("param", layer="main.3", basis="b", vector=torch.eye(len(S))[1])],
        bases={"b": ParamBasis("main.3", "svd", tuple(W.shape), float(W.norm()), {"U": U, "S": S, "V": Vh.T})},
    )
    d = materialize(ds, 0)
    assert d.delta.shape == W.shape and materialize(ds, 0) is d
    assert d.delta.norm().item() == pytest.approx(W.norm().item(), rel=1e-5)


def test_sweep_and_path_close_their_loops():
    s = sweep(2.0, 8)
    assert s[0] == pytest.approx(-2.0) and s.max() == pytest.approx(2.0) and len(s) == 8
    lin = sweep(3.0, 5, there_and_back=False)
    np.testing.assert_allclose(lin, [-3, -1.5, 0, 1.5, 3])
    a, b = Direction("latent", vector=torch.ones(2)), Direction("latent", vector=torch.ones(2))
    p = path_shifts([a, b], 1.0, 16)
    assert p[0] == [] and len(p) == 16
    peak = max(p, key=lambda row: sum(t for _, t in row))
    assert sorted(t for _, t in peak) == [1.0, 1.0]


def test_materialize_from_many_threads_expands_each_delta_once(tiny_dcgan, monkeypatch):
    """The preview and the grid expand the same set's directions from two worker threads: each
    delta is computed once and every thread gets the same Direction (no lost or doubled work)."""
    import threading
    import time

    import engine.render as render_mod
    from engine.directions import ParamBasis

    W = tiny_dcgan.layer_weight("main.3").detach()
    U, S, Vh = torch.linalg.svd(W.reshape(W.shape[0], -1), full_matrices=False)
    basis = ParamBasis("main.3", "svd", tuple(W.shape), float(W.norm()), {"U": U, "S": S, "V": Vh.T})
    ds = DirectionSet(
        "m", {}, [Direction("param", layer="main.3", basis="b", vector=torch.eye(len(S))[k]) for k in range(3)]
    )
    ds.bases = {"b": basis}
    calls = []
    real = render_mod.direction_delta

    def slow_delta(d, bases):
        calls.append(threading.get_ident())
        time.sleep(0.05)  # a dense basis takes this long and more: the window two threads race in
        return real(d, bases)

    monkeypatch.setattr(render_mod, "direction_delta", slow_delta)
    start = threading.Barrier(8)
    got: list = [None] * 8

    def worker(i):
        start.wait()
        got[i] = [materialize(ds, k) for k in ((0, 1, 2) if i % 2 else (2, 1, 0))]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 3  # one expansion per direction, however many threads asked at once
    for k in range(3):
        firsts = {id(g[k] if i % 2 else g[2 - k]) for i, g in enumerate(got)}
        assert len(firsts) == 1
    assert materialize(ds, 1).delta.shape == W.shape
