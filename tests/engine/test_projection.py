"""Projection of images into tiny generators, pivotal tuning, and the .latent file."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.directions import Direction
from engine.errors import AtlasError
from engine.jobs import run_job
from engine.latents import Latent, LatentFileError, load_latent, read_latent, save_latent
from engine.models.base import Generator
from engine.models.dcgan import DCGANGenerator
from engine.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from engine.projection import (
    ProjectParams,
    TuneParams,
    learning_rate,
    load_image,
    noise_regularization,
    project,
    project_image,
    psnr,
    render_latent,
    shell_prior,
    tune,
)
from engine.render import Item, render_batch, render_items, to_uint8


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: per-op overhead dominates, and a second thread only adds contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class TinyInjective(Generator):
    """z [B, 4] -> tanh(A z + b) as an 8 x 8 RGB image: injective (A has full column rank)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.z_dim, self.resolution, self.img_channels = 4, 8, 3
        self.fc = torch.nn.Linear(4, 3 * 8 * 8)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(self.fc.weight.shape, generator=g) * 0.35)
            self.fc.bias.copy_(torch.randn(self.fc.bias.shape, generator=g) * 0.2)
        self.name, self.identity = "tiny-injective", "tiny-injective-id"

    def synthesis(self, ws, *, noise="const", edit=None, noise_generator=None, cond=None):
        return torch.tanh(self.fc(ws)).reshape(-1, 3, 8, 8)


def tiny_dcgan(seed: int = 0) -> DCGANGenerator:
    torch.manual_seed(seed)
    g = DCGANGenerator(nz=8, ngf=4, nc=3, n_up=2)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.ConvTranspose2d):
                m.weight.normal_(0.0, 0.35)
    g.name, g.identity, g.source = "tiny-dcgan", f"tiny-dcgan-{seed}", "tiny-dcgan"
    return g.eval()


def tiny_stylegan2(seed: int = 0) -> StyleGAN2Generator:
    torch.manual_seed(seed)
    cfg = StyleGAN2Config.standard(8, channel_base=64, channel_max=16, z_dim=8, w_dim=8, mapping_layers=2)
    g = StyleGAN2Generator(cfg, name="tiny-sg2")
    with torch.no_grad():
        for name, p in g.named_parameters():
            p.add_(
                torch.randn_like(p) * (0.03 if "noise_strength" in name else 0.1 * (p.std() if p.numel() > 1 else 1))
            )
        g.w_avg.copy_(g.mapping(torch.randn(256, 8))[:, 0].mean(0))
    g.identity = f"tiny-sg2-{seed}"
    return g.eval()


def image_of(gen, code, space="z") -> np.ndarray:
    with torch.no_grad():
        return to_uint8(gen.decode(code, space))[0]


# ---- the latent fit ---------------------------------------------------------------------------
def test_recovers_the_true_latent_of_an_injective_generator():
    gen = TinyInjective()
    z_true = gen.seed_latents([5])
    target = image_of(gen, z_true)
    params = ProjectParams(steps=250, candidates=32, starts=2, prior_weight=0.0, preview_every=50)
    records = []
    lat = run_job(project(gen, target, params, distance="pixel"), records.append)
    assert lat.space == "z" and lat.code.shape == (1, 4)
    assert torch.linalg.vector_norm(lat.code - z_true) < 0.05 * torch.linalg.vector_norm(z_true)
    assert lat.metrics["psnr"] > 40 and lat.metrics["distance_name"].startswith("pixel")
    # progress: every step, loss metrics, uint8 previews now and then
    steps = [r.step for r in records if r.stage == "project"]
    assert steps[-1] == 250 and max(steps) == 250
    previews = [r.partial for r in records if r.partial is not None]
    assert len(previews) >= 5 and previews[-1].dtype == np.uint8 and previews[-1].shape == (8, 8, 3)
    assert all("loss" in r.metrics for r in records if 0 < r.step < 250)


def test_a_random_start_alone_is_far_from_the_target():
    # the fit above must have done the work: its first candidate is much worse
    gen = TinyInjective()
    target = torch.from_numpy(image_of(gen, gen.seed_latents([5]))).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        start = gen(torch.randn(1, 4, generator=torch.Generator().manual_seed(0)))
    assert psnr(start, target).item() < 25


def test_stylegan2_projection_in_w_and_w_plus_fits_and_keeps_noise_white():
    gen = tiny_stylegan2()
    with torch.no_grad():
        w_true = gen.mapping(gen.seed_latents([2]))[:, 0]
    target = image_of(gen, w_true, "w")
    before = copy.deepcopy(gen.state_dict())
    start = render_batch(gen, gen.w_avg[None], None, space="w")
    start_psnr = psnr(start, torch.from_numpy(target).permute(2, 0, 1)[None].float() / 127.5 - 1).item()
    for space in ("w", "w+"):
        lat = run_job(project(gen, target, ProjectParams(space=space, steps=80, stats_samples=300), distance="pixel"))
        assert lat.space == space
        assert lat.code.shape == ((1, 8) if space == "w" else (1, gen.num_ws, 8))
        assert lat.metrics["psnr"] > start_psnr + 8
        assert set(lat.noise) == set(gen.noise_maps())
        for v in lat.noise.values():  # renormalised every step
            assert abs(float(v.mean())) < 1e-4 and abs(float(v.square().mean()) - 1) < 1e-3
        # what the file will render is what was measured
        again = psnr(
            render_latent(gen, lat, raw=True), torch.from_numpy(target).permute(2, 0, 1)[None].float() / 127.5 - 1
        )
        assert abs(again.item() - lat.metrics["psnr"]) < 1e-3
    for k, v in gen.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_projected_noise_maps_are_used_when_rendering():
    gen = tiny_stylegan2()
    w = gen.w_avg[None]
    maps = {k: torch.randn(1, *v.shape) for k, v in gen.noise_maps().items()}
    lat = Latent(w, "w", {}, noise=maps)
    with torch.no_grad():
        own = render_latent(gen, lat, raw=True)
        const = render_batch(gen, w, None, space="w")
        direct = gen.synthesis(
            w.unsqueeze(1).expand(-1, gen.num_ws, -1), noise={k: v.unsqueeze(1) for k, v in maps.items()}
        )
    torch.testing.assert_close(own, direct)
    assert (own - const).abs().max() > 1e-3
    # in one batch with a plain seed, each row keeps its own noise
    with torch.no_grad():
        both = render_batch(gen, torch.cat([w, w]), None, space="w", bases=[lat.bases()[0], None])
    torch.testing.assert_close(both[0], own[0])
    torch.testing.assert_close(both[1], const[0])


def test_without_the_lpips_backbone_the_fit_uses_labelled_pixels():
    from engine.distances import PixelDistance
    from engine.projection import resolve_distance

    hub = Path(torch.hub.get_dir()) / "checkpoints"
    if hub.is_dir() and any(p.name.startswith("vgg16") for p in hub.iterdir()):
        pytest.skip("the VGG backbone is installed here")
    d = resolve_distance("lpips-vgg")
    assert isinstance(d, PixelDistance) and d.title == "pixel MSE (LPIPS unavailable)" and d.reason
    assert d.name == "pixel" and "NOT perceptual" in d.describe()["distance_label"]  # engine.distances' own
    gen = TinyInjective()
    lat = run_job(project(gen, image_of(gen, gen.seed_latents([1])), ProjectParams(steps=3, candidates=4, starts=1)))
    assert lat.metrics["distance_name"] == d.title and lat.metrics["distance_note"] == d.reason
    with pytest.raises(AtlasError, match="unknown distance 'lpips-foo'"):
        resolve_distance("lpips-foo")


def test_fits_with_an_lpips_distance_and_tunes_with_locality():
    from engine.distances import load_distance

    lpips = load_distance("lpips-alex", size=256, pnet_rand=True)  # random backbone: no download
    gen = tiny_dcgan()
    target = image_of(gen, gen.seed_latents([2]))
    lat = run_job(project(gen, target, ProjectParams(steps=6, candidates=4, starts=2), distance=lpips))
    assert lat.metrics["distance_name"] == "lpips-alex" and lat.metrics["distance"] >= 0
    tuned = run_job(
        tune(gen, lat, target, TuneParams(steps=3, locality_weight=0.1, locality_alpha=2.0), distance=lpips)
    )
    assert tuned.tuned and tuned.metrics["tuned_distance_name"] == "lpips-alex"


def test_schedule_and_regularisers():
    lrs = [learning_rate(s, 100, 0.1, 0.05, 0.25) for s in range(100)]
    assert lrs[0] == 0 and max(lrs) == pytest.approx(0.1) and lrs[-1] < 0.002
    assert np.argmax(lrs) >= 5

    def unit(v):
        v = v - v.mean()
        return v / v.square().mean().sqrt()

    g = torch.Generator().manual_seed(0)
    white = [unit(torch.randn(1, 1, 32, 32, generator=g))]
    smooth = [unit(torch.nn.functional.interpolate(torch.randn(1, 1, 8, 8, generator=g), size=32, mode="bilinear"))]
    assert noise_regularization(smooth) > 100 * noise_regularization(white)  # 200x or more over 30 seeds
    d = 100
    r = torch.linspace(5, 15, 201)
    z = r[:, None] * torch.nn.functional.normalize(torch.ones(1, d), dim=1)
    assert r[shell_prior(z).argmin()].item() == pytest.approx((d - 1) ** 0.5, abs=0.06)


def test_cancel_mid_projection_leaves_the_model_untouched():
    gen = tiny_stylegan2()
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    grads_before = {n: p.requires_grad for n, p in gen.named_parameters()}
    target = image_of(gen, gen.w_avg[None], "w")
    seen = []

    def stop_after_three(rec):
        seen.append(rec.step)
        return rec.step < 3

    assert (
        run_job(project(gen, target, ProjectParams(steps=200, stats_samples=200), distance="pixel"), stop_after_three)
        is None
    )
    assert max(seen) == 3
    for k, v in gen.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert {n: p.requires_grad for n, p in gen.named_parameters()} == grads_before
    assert all(p.grad is None for p in gen.parameters())


# ---- the target image ----------------------------------------------------------------------
def _bands(path, w, h, horizontal=True):
    a = np.zeros((h, w, 3), np.uint8)
    if horizontal:  # left red, middle green, right blue
        a[:, : w // 3, 0] = 255
        a[:, w // 3 : 2 * w // 3, 1] = 255
        a[:, 2 * w // 3 :, 2] = 255
    else:
        a[: h // 3, :, 0] = 255
        a[h // 3 : 2 * h // 3, :, 1] = 255
        a[2 * h // 3 :, :, 2] = 255
    Image.fromarray(a).save(path)
    return path


@pytest.mark.parametrize("size,horizontal", [((300, 100), True), ((101, 333), False)])
def test_odd_aspect_ratios_are_centre_cropped_and_resized(tmp_path, size, horizontal):
    path = _bands(tmp_path / "bands.png", *size, horizontal=horizontal)
    x, info = load_image(path, 16)
    assert x.shape == (1, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    green = torch.tensor([-1.0, 1.0, -1.0])[:, None, None]
    assert (x[0] - green).abs().max() < 0.05  # only the middle third survives the crop
    W, H = size
    side = min(W, H)
    assert info["size"] == [W, H] and info["crop"][2] - info["crop"][0] == side
    assert info["crop"][0] == (W - side) // 2 and info["crop"][1] == (H - side) // 2
    assert len(info["sha256"]) == 64
    grey, _ = load_image(path, 8, channels=1)
    assert grey.shape == (1, 1, 8, 8)


def test_unreadable_images_name_the_file(tmp_path):
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"this is text, not a PNG")
    with pytest.raises(AtlasError, match="not-an-image.png: not a readable image"):
        load_image(bad, 16)
    good = _bands(tmp_path / "cut.png", 64, 64)
    cut = tmp_path / "truncated.png"
    cut.write_bytes(good.read_bytes()[:80])
    with pytest.raises(AtlasError, match="truncated.png"):
        load_image(cut, 16)
    with pytest.raises(AtlasError, match="missing.jpg: no such image file"):
        load_image(tmp_path / "missing.jpg", 16)
    with pytest.raises(AtlasError, match="not-an-image.png"):
        run_job(project(TinyInjective(), bad, ProjectParams(steps=2), distance="pixel"))


# ---- pivotal tuning --------------------------------------------------------------------------
def test_tuning_improves_the_fit_and_renders_with_edits_on_top():
    gen = tiny_dcgan()
    photo = (np.indices((16, 16)).sum(0) * 8 % 256).astype(np.uint8)[..., None].repeat(3, 2)
    photo[..., 1] = 90
    before = copy.deepcopy(gen.state_dict())
    lat = run_job(
        project_image(
            gen,
            photo,
            ProjectParams(steps=60, candidates=16, starts=2),
            tune_params=TuneParams(steps=60, lr=3e-3),
            distance="pixel",
            tune_distance="pixel",
        )
    )
    assert lat.tuned and set(lat.tuning) == {i.name for i in gen.editable_layers()}
    assert lat.metrics["tuned_psnr"] > lat.metrics["psnr"] + 1.0
    for k, v in gen.state_dict().items():
        assert torch.equal(v, before[k]), k
    # the tuned image = the model with its weights shifted by the deltas
    patched = copy.deepcopy(gen)
    with torch.no_grad():
        for layer, delta in lat.tuning.items():
            patched.layer_weight(layer).add_(delta)
        torch.testing.assert_close(render_latent(gen, lat, raw=True), patched(lat.code), atol=2e-5, rtol=0)
    # a parameter direction applies on top of the tuned weights, in a batch with a plain seed
    layer = gen.default_edit_layer
    W = gen.layer_weight(layer)
    d = Direction("param", layer=layer, delta=torch.randn_like(W) * W.norm() / W.numel() ** 0.5)
    z = gen.seed_latents([1])
    items = [Item(lat.code[0], ((d, 0.3),), lat.bases()[0]), Item(z[0], ((d, 0.3),))]
    out = run_job(render_items(gen, items, raw=True))
    with torch.no_grad():
        patched.layer_weight(layer).add_(0.3 * d.delta)
        torch.testing.assert_close(out[:1], patched(lat.code), atol=2e-5, rtol=0)
        plain = copy.deepcopy(gen)
        plain.layer_weight(layer).add_(0.3 * d.delta)
        torch.testing.assert_close(out[1:], plain(z), atol=2e-5, rtol=0)


def test_tune_checks_its_layers():
    gen = tiny_dcgan()
    lat = Latent(gen.seed_latents([0]), "z", {})
    with pytest.raises(AtlasError, match="no editable layer 'main.99'"):
        run_job(tune(gen, lat, np.zeros((16, 16, 3), np.uint8), TuneParams(layers=("main.99",))))


# ---- the .latent file ------------------------------------------------------------------------
def _latent_for(gen, tuned=True) -> Latent:
    code = gen.seed_latents([4])
    tuning = {"main.3": torch.randn(gen.layer_weight("main.3").shape)} if tuned else {}
    return Latent(
        code,
        "z",
        {"name": gen.name, "identity": gen.identity, "source": gen.source},
        image={"path": "/photos/face.png", "size": [640, 480]},
        metrics={"distance": 0.01, "distance_name": "pixel MSE", "psnr": 30.0},
        tuning=tuning,
    )


def test_latent_file_round_trip(tmp_path):
    gen = tiny_dcgan()
    lat = _latent_for(gen)
    path = save_latent(lat, tmp_path / "face.latent")
    back = load_latent(path, gen)
    assert back.space == "z" and torch.equal(back.code, lat.code)
    assert torch.equal(back.tuning["main.3"], lat.tuning["main.3"])
    assert back.image["path"] == "/photos/face.png" and back.metrics["psnr"] == 30.0
    assert back.model["identity"] == gen.identity and back.name == "face"
    tuned_files = list(tmp_path.glob("face.tuned.*.safetensors"))
    assert len(tuned_files) == 1
    # saving again without tuning removes the old tuned-weights file; no temporary files are left
    lat.tuning = {}
    save_latent(lat, path)
    assert not list(tmp_path.glob("face.tuned.*")) and not read_latent(path).tuned
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.latent"]
    # stylegan2: w code with noise maps
    sg = tiny_stylegan2()
    maps = {k: torch.randn(1, *v.shape) for k, v in sg.noise_maps().items()}
    wl = Latent(sg.w_avg[None].clone(), "w", {"identity": sg.identity}, noise=maps)
    back = load_latent(save_latent(wl, tmp_path / "w.latent"), sg)
    assert set(back.noise) == set(maps) and all(torch.equal(back.noise[k], maps[k]) for k in maps)
    assert back.codes_in(sg, "w+").shape == (1, sg.num_ws, 8)
    with pytest.raises(AtlasError, match="projected into w; it can be shown and edited in w or w\\+, not in z"):
        back.codes_in(sg, "z")


def test_latent_model_mismatch_and_damage(tmp_path):
    gen = tiny_dcgan(0)
    path = save_latent(_latent_for(gen), tmp_path / "face.latent")
    other = tiny_dcgan(1)  # same shapes, other weights
    with pytest.raises(LatentFileError, match="face.latent was projected on model 'tiny-dcgan' .*not on 'tiny-dcgan'"):
        load_latent(path, other)
    lat = load_latent(path, other, strict=False)
    assert lat.warnings and "would not reproduce" in lat.warnings[0]
    wrong = DCGANGenerator(nz=6, ngf=4, nc=3, n_up=2)
    wrong.name, wrong.identity = "narrow", "narrow-id"
    with pytest.raises(LatentFileError, match="code of shape \\[1, 8\\] does not fit space z of model 'narrow'"):
        load_latent(path, wrong, strict=False)
    sg = tiny_stylegan2()
    with pytest.raises(LatentFileError, match="do(es)? not fit"):
        load_latent(path, sg, strict=False)
    # damaged files
    (tmp_path / "junk.latent").write_bytes(b"\x00" * 40)
    with pytest.raises(LatentFileError, match="junk.latent: not a readable .latent file"):
        load_latent(tmp_path / "junk.latent", gen)
    cut = tmp_path / "cut.latent"
    cut.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(LatentFileError, match="cut.latent"):
        load_latent(cut, gen)
    tuned = next(tmp_path.glob("face.tuned.*.safetensors"))
    tuned.write_bytes(tuned.read_bytes()[:-4] + b"\x00\x00\x00\x01")
    with pytest.raises(LatentFileError, match="tuned weights do not match face.latent"):
        load_latent(path, gen)
    tuned.unlink()
    with pytest.raises(LatentFileError, match="tuned weights .* are missing"):
        load_latent(path, gen)
    with pytest.raises(LatentFileError, match="nothing.latent: no such latent file"):
        load_latent(tmp_path / "nothing.latent", gen)
    with pytest.raises(AtlasError, match="must end with .latent"):
        save_latent(_latent_for(gen), tmp_path / "face.npz")


def test_projection_scores_its_candidates_in_pieces_that_yield(monkeypatch):
    """0.05 s per image on the pacers' fake clock: the 256 candidates of a fit in z were scored in
    batches of 64 (3.2 s) without a yield; now the job yields at least once a second throughout."""
    from tests.engine.fake_clock import slow_generator

    clock = slow_generator(monkeypatch, DCGANGenerator, 0.05)
    gen = tiny_dcgan()
    image = to_uint8(render_batch(gen, gen.sample_latents(1, 7), None))[0]
    stamps = []
    lat = run_job(project(gen, image, ProjectParams(steps=3), distance="pixel"), lambda rec: stamps.append(clock.now))
    gaps = np.diff([0.0, *stamps, clock.now])
    assert gaps.max() <= 1.0, gaps.max()
    assert clock.images >= 256 and lat.code.shape == (1, 8)  # every candidate was scored
