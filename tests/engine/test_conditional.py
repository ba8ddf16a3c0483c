"""Class-conditional generators: the conditional StyleGAN2-ADA pickle against the reference, classes on
the command line, per-row classes through rendering, discovery pairs, sets and projected latents."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cli.main import main
from engine.directions import DirectionSet, model_ref
from engine.discovery.hessian import LayerHessian
from engine.discovery.shifts import LatentShifts, param_pair
from engine.distances import load_distance
from engine.errors import AtlasError, DirectionSetError
from engine.jobs import run_job
from engine.latents import load_latent, save_latent
from engine.models import load_generator
from engine.models.base import CLASSES
from engine.projection import ProjectParams, project
from engine.render import Base, render_batch, with_classes
from tests.engine.cli_runs import CLASS_METHODS, check_discover_on_a_class
from tests.engine.tiny_generators import tiny_cond_stylegan2, tiny_dcgan

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "stylegan3"
PKL = FIXTURES / "sg2ada_cond_res32.pkl"
needs_fixture = pytest.mark.skipif(not PKL.is_file(), reason=f"{PKL} not found")


@pytest.fixture(scope="module")
def expected():
    return np.load(FIXTURES / "sg2ada_cond_res32_expected.npz")


@pytest.fixture(scope="module")
def cond():
    return load_generator(str(PKL), device="cpu")


# ---- the conditional StyleGAN2-ADA pickle ------------------------------------------------------
@needs_fixture
def test_conditional_pickle_ws_are_exact(cond, expected):
    assert cond.supports(CLASSES) and cond.num_classes == 10 and cond.config.embed_dim == 48
    z = torch.from_numpy(expected["z"])
    labels = torch.from_numpy(expected["c_index"])
    with torch.no_grad():
        torch.testing.assert_close(
            cond.mapping_net.embed(torch.from_numpy(expected["c"])), torch.from_numpy(expected["c_embed"])
        )
        for key, psi, cutoff, cls in (
            ("ws_psi1", 1.0, None, labels),
            ("ws_psi07", 0.7, None, labels),
            ("ws_psi07_cutoff", 0.7, 4, labels),
            ("ws_class5", 1.0, None, 5),
            ("ws_class5_psi07", 0.7, None, 5),
        ):
            ws = cond.encode(z, "w+", psi=psi, cutoff=cutoff, classes=cls)
            assert np.array_equal(ws.numpy(), expected[key]), key
        mixed = cond.mix(z, torch.from_numpy(expected["mix_z2"]), int(expected["mix_index"]), classes=labels)
        assert np.array_equal(mixed.numpy(), expected["ws_mix"])
        assert np.abs(cond.synthesis(mixed).numpy() - expected["img_mix"]).max() < 1e-4
        cut = cond.decode(z, psi=0.7, cutoff=4, classes=labels)
        assert np.abs(cut.numpy() - expected["img_psi07_cutoff"]).max() < 1e-4
    assert np.array_equal(cond.w_avg.numpy(), expected["w_avg"])  # one centre for every class


@needs_fixture
@pytest.mark.parametrize(
    "key, classes, psi, noise",
    [
        ("img_psi1", "0,3,7,9", 1.0, "const"),
        ("img_psi07", "0,3,7,9", 0.7, "const"),
        ("img_psi1_noise_none", "0,3,7,9", 1.0, "none"),
        ("img_class5", "5", 1.0, "const"),
        ("img_class5_psi07", "5", 0.7, "const"),
    ],
)
def test_conditional_pickle_renders_through_the_cli(tmp_path, expected, key, classes, psi, noise):
    np.save(tmp_path / "z.npy", expected["z"])
    out = tmp_path / "x.npy"
    args = ["render", "--model", str(PKL), "--latents", str(tmp_path / "z.npy"), "--class", classes]
    assert main([*args, "--truncation", str(psi), "--noise", noise, "--out", str(out)]) == 0
    assert np.abs(np.load(out) - expected[key]).max() < 1e-4


@needs_fixture
def test_conditional_seeds_in_w_use_their_class(tmp_path, cond, expected):
    """Seeds 0-3 are the fixture's z; --space w+ maps each with its own class."""
    out = tmp_path / "x.npy"
    assert main(["render", "--model", str(PKL), "--seeds", "0-3", "--class", "0,3,7,9", "--space", "w+"]
                + ["--truncation", "0.7", "--out", str(out)]) == 0  # fmt: skip
    assert np.abs(np.load(out) - expected["img_psi07"]).max() < 1e-4


# ---- the command line ----------------------------------------------------------------------
@needs_fixture
@pytest.mark.parametrize(
    "model, cls, seeds, message",
    [
        ("pkl", None, "0-3", "class-conditional .*choose a class .*--class"),
        ("pkl", "10", "0-3", "class 10 is out of range"),
        ("pkl", "1,2", "0-3", "2 classes for 4 seeds"),
        ("pkl", "cat", "0-3", "'cat' is not a class name"),
        ("pkl", "2.5", "0-3", "not a class name"),
        ("pkl", " , ", "0-3", "no class given"),
        ("digiface-dcgan-64", "1", "0", "not class-conditional"),
    ],
)
def test_class_errors_are_one_line(tmp_path, capsys, model, cls, seeds, message):
    m = str(PKL) if model == "pkl" else model
    args = ["render", "--model", m, "--seeds", seeds, "--out", str(tmp_path / "x.png")]
    if cls is not None:
        args += ["--class", cls]
    assert main(args) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    import re

    assert re.search(message, err[0]), err[0]


def test_gui_takes_one_class(capsys):
    assert main(["gui", "--class", "1,2"]) != 0
    assert "one class at a time" in capsys.readouterr().err


# ---- per-row classes -----------------------------------------------------------------------
def test_rows_keep_their_class_through_render_batch_and_views():
    gen = tiny_cond_stylegan2()
    z = gen.seed_latents([0, 1, 2])
    with torch.no_grad():
        per_row = gen.decode(z, classes=[2, 0, 1])
        one_by_one = torch.cat([gen.decode(z[i : i + 1], classes=c) for i, c in enumerate([2, 0, 1])])
        via_bases = render_batch(gen, z, None, bases=with_classes(None, [2, 0, 1], 3))
        view = gen.conditioned(classes=[2, 0, 1])
        via_view = view.decode(z)
    torch.testing.assert_close(per_row, one_by_one, atol=1e-5, rtol=0)
    torch.testing.assert_close(via_bases, per_row, atol=1e-5, rtol=0)
    torch.testing.assert_close(via_view, per_row, atol=1e-5, rtol=0)
    assert gen.bound_classes is None and view.mapping_net is gen.mapping_net  # the view shares the weights
    # a view's classes are a pool: any batch size cycles through them; explicit lists must fit
    assert view.condition(4).classes.tolist() == [2, 0, 1, 2]
    with pytest.raises(AtlasError, match="3 classes do not fit a batch of 4"):
        gen.condition(4, classes=[2, 0, 1])
    # rows without a class in their base take the view's
    with torch.no_grad():
        mixed = render_batch(view, z, None, bases=[Base(class_index=1), None, None])
    torch.testing.assert_close(mixed[1:], per_row[1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[0], gen.decode(z[:1], classes=1)[0], atol=1e-5, rtol=0)


def test_discovery_pairs_keep_each_latent_class():
    """With a pool of 3 classes and 4 latents, both halves of every pair must use the latent's class."""
    gen = tiny_cond_stylegan2().conditioned(classes=[0, 1, 2])
    z = torch.randn(4, gen.z_dim, generator=torch.Generator().manual_seed(0))
    k = torch.zeros(4, dtype=torch.long)
    with torch.no_grad():
        for space in ("z", "w"):
            fam = LatentShifts(torch.eye(gen.z_dim if space == "z" else gen.w_dim)[:, :2], "fixed", space=space)
            for mode in ("one", "two"):
                fam.pair_mode = mode
                x0, x1 = fam.pair(gen, z, k, torch.zeros(4))  # eps = 0: the pair is one image twice
                torch.testing.assert_close(x0, x1, atol=1e-5, rtol=0)
                torch.testing.assert_close(x0, gen.decode(z, classes=[0, 1, 2, 0]), atol=1e-5, rtol=0)
        layer = gen.default_edit_layer
        delta = torch.randn((1, *gen.layer_info(layer).shape))
        for mode in ("one", "two"):
            x0, x1 = param_pair(gen, z, layer, delta, k, torch.zeros(4), mode=mode)
            torch.testing.assert_close(x0, x1, atol=1e-5, rtol=0)
    H = LayerHessian(gen, layer, load_distance("pixel"), z)
    assert H.classes.tolist() == [0, 1, 2, 0]
    assert float(H.value(torch.zeros(gen.layer_info(layer).shape))) < 1e-10  # G(z) vs itself, same classes


# ---- sets and projected latents ------------------------------------------------------------
def test_sets_record_their_classes_and_old_sets_still_load(tmp_path):
    gen = tiny_cond_stylegan2()
    view = gen.conditioned(classes=[3, 1])
    ref = model_ref(view)
    assert ref["classes"] == [3, 1] and ref["num_classes"] == 4
    s = DirectionSet.latent("test", ref, torch.randn(2, gen.w_dim), space="w")
    s.save(tmp_path / "a.json")
    assert DirectionSet.load(tmp_path / "a.json").classes == [3, 1]
    man = json.loads((tmp_path / "a.json").read_text())
    del man["model"]["classes"]  # written before classes were recorded
    (tmp_path / "a.json").write_text(json.dumps(man))
    assert DirectionSet.load(tmp_path / "a.json").classes is None
    man["model"]["classes"] = ["three"]
    (tmp_path / "a.json").write_text(json.dumps(man))
    with pytest.raises(DirectionSetError, match="class indices"):
        DirectionSet.load(tmp_path / "a.json")
    assert model_ref(tiny_dcgan()).get("classes") is None


def test_projection_fits_on_the_chosen_class_and_the_latent_keeps_it(tmp_path):
    gen = tiny_cond_stylegan2()
    with torch.no_grad():
        target = ((gen.decode(gen.seed_latents([7]), classes=2)[0].clamp(-1, 1) + 1) * 127.5).round()
    image = target.permute(1, 2, 0).to(torch.uint8).numpy()
    params = ProjectParams(space="z", steps=3, candidates=8, starts=2)  # in z the class decides the image
    with pytest.raises(AtlasError, match="choose a class"):
        run_job(project(gen, image, params, distance="pixel"))
    lat = run_job(project(gen.conditioned(classes=[2]), image, params, distance="pixel"))
    assert lat.classes == [2]
    path = save_latent(lat, tmp_path / "p.latent")
    back = load_latent(path, gen)
    assert back.classes == [2] and back.bases()[0].class_index == 2
    with torch.no_grad():
        a = render_batch(gen, back.code, None, space="z", bases=back.bases())
        b = gen.decode(back.code, "z", classes=2)
        other = gen.decode(back.code, "z", classes=0)
    torch.testing.assert_close(a, b)
    assert (a - other).abs().max() > 1e-2
    assert back.codes_in(gen, "w").shape == (1, gen.w_dim)  # mapped with its own class


# ---- discovery on the conditional pickle --------------------------------------------------------
@needs_fixture
@pytest.mark.slow
@pytest.mark.parametrize("method, extra", CLASS_METHODS, ids=[m for m, _ in CLASS_METHODS])
def test_discover_on_the_conditional_pickle_with_a_class(tmp_path, method, extra):
    check_discover_on_a_class(PKL, "3", "0,8", tmp_path, method, extra)  # 0,8: one class per seed
