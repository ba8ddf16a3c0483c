"""The analyses on a synthetic generator whose answers are known (tests/engine/analysis_toys.py)."""

import json
import math

import numpy as np
import pytest
import torch

from engine.analysis import ANALYSES, curves, load_result, locality, realism, reproduce, score
from engine.analysis.factors import penultimate
from engine.errors import AtlasError
from engine.jobs import run_job
from tests.engine.analysis_toys import (
    AMP,
    QuadrantGenerator,
    exact_factors,
    latent_set,
    latent_shift_delta,
    param_set,
    quadrant_masks,
    scale_factor_delta,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def gen():
    return QuadrantGenerator().eval()


# ---- ground-truth score ------------------------------------------------------------------------
def test_score_axis_direction_is_pure_and_a_mixture_is_not(gen):
    diag = np.array([1.0, 1.0, 0, 0]) / math.sqrt(2)
    dset = latent_set(gen, [[1.0, 0, 0, 0], diag, [0, 0, 0, 1.0]])
    r = run_job(score.run(gen, dset, None, score.Params(seeds=32, steps=5), factors=exact_factors()))
    assert r.purity[0] == pytest.approx(1.0, abs=1e-4) and r.main_factor[0] == 0
    assert r.purity[2] == pytest.approx(1.0, abs=1e-4) and r.main_factor[2] == 3
    # factor 0 moves by 6 latent units across [-3, 3]; scale = its std over the 32 unedited samples
    std = gen.sample_latents(32, 0).std(0).numpy()
    assert r.effect[0, 0] == pytest.approx(6.0 / std[0], rel=1e-3)
    # the diagonal moves factors 0 and 1 alike (6 / sqrt 2): its purity is the larger of two near-equal shares
    e = 6 / math.sqrt(2) / std[:2]
    assert r.effect[1, :2] == pytest.approx(e, rel=1e-3)
    assert r.purity[1] == pytest.approx(e.max() / e.sum(), rel=1e-3) and r.purity[1] < 0.6
    assert r.effect[0, 1:].max() < 1e-4
    assert list(r.clean) == [True, False, True]
    assert r.covered == ["quadrant0", "quadrant3"] and r.coverage == 2
    fm = exact_factors()
    fm.scale = (1.0,) * 4  # a fixed yardstick: the diagonal is then exactly half on each factor
    r1 = run_job(score.run(gen, dset, [1], score.Params(seeds=4, steps=3), factors=fm))
    assert r1.purity[0] == pytest.approx(0.5, abs=1e-5)
    best = dict((n, (k, p)) for n, k, p, _ in r.best_per_factor())
    assert best["quadrant0"][0] == 0 and best["quadrant1"][0] is None


def test_score_of_a_parameter_direction_and_the_noise_floor(gen):
    # the bias-channel edit equal to the latent shift 0.5 * e_2 moves only quadrant 2
    dset = param_set(gen, [latent_shift_delta(gen, [0, 0, 0.5, 0]), latent_shift_delta(gen, [0, 0, 1e-4, 0])])
    fm = exact_factors()
    fm.scale = (1.0, 1.0, 1.0, 1.0)  # fixed yardstick: effect in latent units
    r = run_job(score.run(gen, dset, None, score.Params(seeds=8, steps=3), factors=fm))
    assert r.main_factor[0] == 2 and r.purity[0] == pytest.approx(1.0, abs=1e-4)
    assert r.effect[0, 2] == pytest.approx(1.0, rel=1e-3)  # 0.5 per unit t over a range of width 2
    assert not r.clean[1]  # pure, but far below the noise floor
    assert r.coverage == 1


def test_score_rejects_a_set_that_does_not_fit(gen):
    dset = latent_set(gen, [[1.0, 0, 0, 0, 0]])
    with pytest.raises(AtlasError, match="5 components"):
        run_job(score.run(gen, dset, None, score.Params(seeds=4), factors=exact_factors()))


# ---- effect curves ---------------------------------------------------------------------------
def test_curves_pixel_distance_is_exact_and_monotone_in_abs_t(gen):
    dset = latent_set(gen, [[0, 1.0, 0, 0], [0.6, 0.8, 0, 0]])
    pixel = lambda a, b: ((a - b) ** 2).flatten(1).mean(1)  # noqa: E731
    r = run_job(curves.run(gen, dset, None, curves.Params(seeds=3, steps=7), distance=pixel))
    t = r.shifts[0]
    assert np.allclose(t, np.linspace(-3, 3, 7))
    # e_1 shifts quadrant 1 (a quarter of the pixels) by t * AMP: mean squared difference t^2 AMP^2 / 4
    np.testing.assert_allclose(r.mean[0], t**2 * AMP**2 / 4, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(r.std[0], 0, atol=1e-7)
    for row in r.mean:
        for i in range(len(t)):
            for j in range(len(t)):
                if abs(t[i]) < abs(t[j]):
                    assert row[i] < row[j]


def test_curves_default_distance_and_unknown_distance(gen):
    dset = latent_set(gen, [[1.0, 0, 0, 0]])
    r = run_job(curves.run(gen, dset, [0], curves.Params(seeds=2, steps=3, distance="pixel")))
    assert "NOT perceptual" in r.distance_label and r.mean[0, 1] == 0
    with pytest.raises(AtlasError, match="no-such"):
        run_job(curves.run(gen, dset, [0], curves.Params(seeds=2, steps=3, distance="no-such")))


def test_curves_with_lpips_and_without_its_backbone(gen, tmp_path, monkeypatch):
    from engine.distances import load_distance

    dset = latent_set(gen, [[1.0, 0, 0, 0]])
    lp = load_distance("lpips-alex", pnet_rand=True)  # random backbone: no weights file read
    r = run_job(curves.run(gen, dset, None, curves.Params(seeds=2, steps=5), distance=lp))
    assert r.distance == "lpips-alex" and "RANDOM" in r.distance_label
    assert r.mean[0, 2] == pytest.approx(0, abs=1e-7) and r.mean[0, 0] > 0 and r.mean[0, 4] > 0
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(AtlasError, match="pixel"):  # names the missing file and offers the pixel distance
        run_job(curves.run(gen, dset, None, curves.Params(seeds=2, steps=3)))


# ---- locality --------------------------------------------------------------------------------
def test_locality_of_a_latent_edit_is_confined_to_its_quadrant(gen):
    dset = latent_set(gen, [[0, 1.0, 0, 0]], range_=(-2.0, 2.0))
    r = run_job(locality.run(gen, dset, None, locality.Params(samples=40, shifts=20, batch_size=64)))
    heat = r.heatmap[0]
    mask = quadrant_masks()[1].numpy().astype(bool)
    assert heat[~mask].max() == 0
    # 3 channels x (t AMP)^2 with E[t^2] = T^2 / 3 for t ~ U[-T, T]: AMP^2 T^2 (up to sampling of t)
    assert heat[mask].mean() == pytest.approx(AMP**2 * 4.0, rel=0.15)
    assert np.ptp(heat[mask]) < 1e-6  # every pixel of the quadrant moves alike
    assert r.concentration[0] == pytest.approx(0.4, abs=0.01)  # the top 10 % are 40 % of a uniform quadrant
    assert r.example.shape == (1, 2, 16, 16, 3) and r.example.dtype == np.uint8


def test_locality_of_a_parameter_edit_confined_to_a_region(gen):
    delta = torch.zeros_like(gen.weight.detach())
    delta[:, :, 2:6, 9:14] = 1.0  # only this patch of every input channel's kernel
    dset = param_set(gen, [delta])
    r = run_job(locality.run(gen, dset, None, locality.Params(samples=24, shifts=5)))
    heat = r.heatmap[0]
    inside = np.zeros_like(heat, dtype=bool)
    inside[2:6, 9:14] = True
    assert heat[~inside].max() == 0 and heat[inside].min() > 0


# ---- realism ---------------------------------------------------------------------------------
def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    s1 = a @ a.T + np.eye(6)
    b = rng.normal(size=(6, 6))
    s2 = b @ b.T + 0.5 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    assert realism.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-8)
    # against the textbook formula with scipy's matrix square root
    from scipy.linalg import sqrtm

    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(sqrtm(s1 @ s2)))
    assert realism.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)
    # 1-D: (m1 - m2)^2 + (sigma1 - sigma2)^2
    assert realism.frechet_distance([1.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(4 + 1)


def test_realism_grows_with_the_shift_with_a_random_feature_network(gen):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.Tanh(), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten()
    )
    dset = latent_set(gen, [[1.0, 0, 0, 0]])
    r = run_job(
        realism.run(
            gen,
            dset,
            None,
            realism.Params(samples=400, reference=400, steps=5, batch_size=100),
            features=net,
            features_label="random net",
        )
    )
    d = r.distance[0]
    assert r.features_label == "random net" and r.shifts[0].tolist() == [-3, -1.5, 0, 1.5, 3]
    assert d[2] < 0.2 * min(d[1], d[3])  # t = 0: two unedited sets, only the sampling floor
    assert d[0] > d[1] and d[4] > d[3]


def test_inception_weights_missing_names_file_and_folder(tmp_path, monkeypatch, gen):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(AtlasError) as info:
        realism.inception_features()
    msg = str(info.value)
    assert realism.FID_WEIGHTS_FILE in msg and str(tmp_path / "hub" / "checkpoints") in msg
    assert "regressor" in msg
    dset = latent_set(gen, [[1.0, 0, 0, 0]])
    with pytest.raises(AtlasError, match="pt_inception"):
        run_job(realism.run(gen, dset, None, realism.Params(samples=4, reference=4)))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / realism.FID_WEIGHTS_FILE).write_bytes(b"not a torch file")
    with pytest.raises(AtlasError, match="cannot read"):
        realism.inception_features()


def test_penultimate_features_are_the_input_of_the_last_linear():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    x = torch.randn(3, 3, 2, 2)
    feats = penultimate(net)(x)
    torch.testing.assert_close(feats, torch.relu(net[1](x.flatten(1))))


# ---- latent cannot reproduce -----------------------------------------------------------------
def test_an_edit_that_is_a_latent_shift_reproduces_and_a_scaling_does_not(gen):
    h = torch.tensor([0.8, -0.5, 0.3, 0.0])
    dset = param_set(gen, [latent_shift_delta(gen, h), scale_factor_delta(gen, 1)], range_=(-1.0, 1.0))
    r = run_job(reproduce.run(gen, dset, None, reproduce.Params(steps=150, batch_size=16, lr=0.05, eval_samples=128)))
    assert r.space == "z"
    assert r.residual[0] < 1e-3  # G_{theta + xi}(z) = G(z + h) exactly
    assert r.residual[1] > 0.97  # (1 + t) z_1: the best latent shift is h = 0
    assert r.h_norm[0] == pytest.approx(float(h.norm()), rel=0.02)
    assert r.loss_curve.shape == (2, 150) and r.loss_curve[0, -1] < 0.01
    assert r.examples.shape == (2, 3, 4, 16, 16, 3)


def test_reproduce_refuses_a_latent_direction(gen):
    with pytest.raises(AtlasError, match="latent direction"):
        run_job(reproduce.run(gen, latent_set(gen, [[1.0, 0, 0, 0]]), None, reproduce.Params(steps=1)))


# ---- jobs, files, registry ---------------------------------------------------------------------
def test_jobs_cancel_at_a_yield(gen):
    dset = latent_set(gen, [[1.0, 0, 0, 0]])
    job = locality.run(gen, dset, None, locality.Params(samples=64, shifts=3, batch_size=4))
    seen = []
    assert run_job(job, lambda p: seen.append(p) or len(seen) < 3) is None
    assert len(seen) == 3 and seen[-1].total == 64 * 4  # images: each latent unedited and at its 3 shifts


def test_results_save_load_and_plot(gen, tmp_path):
    dset = latent_set(gen, [[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    res = [
        run_job(score.run(gen, dset, None, score.Params(seeds=4, steps=3), factors=exact_factors())),
        run_job(curves.run(gen, dset, None, curves.Params(seeds=2, steps=3, distance="pixel"))),
        run_job(locality.run(gen, dset, [1], locality.Params(samples=4, shifts=2))),
        run_job(
            realism.run(
                gen, dset, [0], realism.Params(samples=8, reference=8, steps=3), features=lambda x: x.mean((2, 3))
            )
        ),
        run_job(
            reproduce.run(
                gen,
                param_set(gen, [scale_factor_delta(gen, 0)]),
                None,
                reproduce.Params(steps=3, batch_size=4, eval_samples=8),
            )
        ),
    ]
    for r in res:
        jpath, npath = r.save(tmp_path / f"{r.kind}.png")
        assert jpath.name == f"{r.kind}.json" and npath.is_file()
        back = load_result(jpath)
        assert type(back) is type(r)
        for name, arr in r.arrays().items():
            np.testing.assert_array_equal(getattr(back, name), arr)
        assert back.plain() == json.loads(json.dumps(r.plain()))
        png = r.plot(tmp_path / f"{r.kind}.png")
        from PIL import Image

        assert Image.open(png).size[0] > 200
    (tmp_path / "bad.json").write_text('{"format": "gan-atlas-analysis", "version": 1, "kind": "nope"}')
    with pytest.raises(AtlasError, match="unknown analysis kind"):
        load_result(tmp_path / "bad.json")


def test_registry_lists_every_analysis():
    assert {"curves", "locality", "fid", "reproduce", "score"} <= set(ANALYSES)  # tests may register more
    with pytest.raises(AtlasError, match="no parameter"):
        ANALYSES["curves"].make_params(nope=1)


def test_reproduce_in_w_and_w_plus_of_a_style_model():
    from engine.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator

    torch.manual_seed(0)
    cfg = StyleGAN2Config.standard(16, channel_base=128, channel_max=16, z_dim=12, w_dim=10, mapping_layers=2)
    g = StyleGAN2Generator(cfg).eval()
    layer = g.default_edit_layer
    w = g.layer_weight(layer).detach()
    dset = param_set(g, [torch.randn(w.shape) * w.norm() / w.numel() ** 0.5])
    dset.directions[0].layer = layer
    p = reproduce.Params(t=0.5, steps=25, batch_size=8, eval_samples=16, lr=0.1)
    # a random edit of a random network: no latent shift imitates it, so the residual stays near 1
    # (optimisation noise may leave h slightly worse than h = 0 on held-out latents)
    r = run_job(reproduce.run(g, dset, None, p))
    assert r.space == "w" and 0.5 < r.residual[0] < 1.2 and np.isfinite(r.h_norm[0])
    r_plus = run_job(reproduce.run(g, dset, None, reproduce.Params(**{**p.__dict__, "space": "w+"})))
    assert r_plus.space == "w+" and 0.5 < r_plus.residual[0] < 1.2
    with pytest.raises(AtlasError, match="no latent space 'w'"):
        run_job(
            reproduce.run(
                QuadrantGenerator(),
                param_set(QuadrantGenerator(), [torch.zeros(5, 3, 16, 16)]),
                None,
                reproduce.Params(space="w", steps=1),
            )
        )


def test_inception_features_read_the_weights_file_without_a_download(tmp_path, monkeypatch):
    """A randomly initialised FID Inception saved under the expected name is what the features use."""
    import pytorch_fid.inception as fid_inception

    def refuse(*_a, **_k):
        raise AssertionError("tried to download")

    original = fid_inception.load_state_dict_from_url
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(fid_inception, "load_state_dict_from_url", lambda *_a, **_k: None)
    monkeypatch.setattr(torch.nn.Module, "load_state_dict", lambda self, *_a, **_k: None)
    net = fid_inception.fid_inception_v3()  # the FID architecture, random weights
    monkeypatch.undo()
    state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    path = tmp_path / "hub" / "checkpoints" / realism.FID_WEIGHTS_FILE
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    feats = realism.inception_features()
    assert "pt_inception" in feats.label
    out = feats(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert out.shape == (2, 2048) and torch.isfinite(out).all()
    assert fid_inception.load_state_dict_from_url is original  # the package's own loader is put back


# ---- every analysis yields at least once a second (issue 11) ------------------------------------
@pytest.mark.parametrize("name", ["curves", "locality", "fid", "reproduce", "score"])
def test_every_analysis_yields_within_a_second_of_a_slow_generator(name, monkeypatch):
    """A generator taking 0.2 s per image (on the pacers' fake clock): each analysis renders in
    pieces small enough to yield at least every second (they used to yield per direction, per
    batch of up to 64 images, or per Adam step of 32 latents rendered three times)."""
    from tests.engine.fake_clock import slow_generator

    clock = slow_generator(monkeypatch, QuadrantGenerator, 0.2)
    gen = QuadrantGenerator().eval()
    if name == "reproduce":
        dset = param_set(gen, [scale_factor_delta(gen, 0)])
    else:
        dset = latent_set(gen, [[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    small = {
        "curves": curves.Params(seeds=6, steps=5, distance="pixel"),
        "locality": locality.Params(samples=6, shifts=5),
        "fid": realism.Params(samples=8, reference=8, steps=3),
        "reproduce": reproduce.Params(steps=2, batch_size=8, eval_samples=8),
        "score": score.Params(seeds=6, steps=5),
    }[name]
    extra = {"fid": {"features": lambda x: x.flatten(1)[:, ::64]}, "score": {"factors": exact_factors()}}.get(name, {})
    stamps = []
    result = run_job(ANALYSES[name].run(gen, dset, None, small, **extra), lambda rec: stamps.append(clock.now))
    gaps = np.diff([0.0, *stamps, clock.now])
    assert gaps.max() <= 1.0, gaps.max()
    assert clock.images > 25 and len(stamps) > 5  # many images were rendered, in many pieces
    assert result.kind == ANALYSES[name].result.kind
