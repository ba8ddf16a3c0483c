"""``main.py project``, then ``render`` / ``export --latent`` of the result, on a tiny checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cli.main import main
from engine.directions import DirectionSet, model_ref
from engine.latents import load_latent
from engine.models import load_generator
from engine.models.dcgan import DCGANGenerator


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    g = DCGANGenerator(nz=8, ngf=4, nc=3, n_up=2)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.ConvTranspose2d):
                m.weight.normal_(0.0, 0.35)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save({"netG_state_dict": g.state_dict()}, path)
    return path


def test_project_then_render_and_export_the_latent(tmp_path, tiny_checkpoint, capsys):
    photo = tmp_path / "photo.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 70, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "photo.latent"
    assert (
        main(
            [
                "project",
                "--model",
                str(tiny_checkpoint),
                "--image",
                str(photo),
                "--steps",
                "15",
                "--starts",
                "2",
                "--distance",
                "pixel",
                "--tune",
                "--tune-steps",
                "5",
                "--threads",
                "1",
                "--compare",
                str(tmp_path / "cmp.png"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "reconstruction: pixel MSE" in text and "PSNR" in text and "after tuning" in text
    gen = load_generator(str(tiny_checkpoint), device="cpu")
    lat = load_latent(out, gen)
    assert lat.space == "z" and lat.tuned and lat.image["size"] == [70, 40]
    assert np.asarray(Image.open(tmp_path / "cmp.png")).shape == (16, 32, 3)

    # render: the stored reconstruction, tuned weights included
    raw = tmp_path / "r.npy"
    assert main(["render", "--model", str(tiny_checkpoint), "--latent", str(out), "--out", str(raw)]) == 0
    from engine.projection import render_latent

    np.testing.assert_allclose(np.load(raw), render_latent(gen, lat, raw=True).numpy(), atol=1e-5)

    # a direction grid and a morph video of the projected image
    dset = DirectionSet.latent("test", model_ref(gen), torch.eye(8)[:2], range_=(-3.0, 3.0))
    dset.save(tmp_path / "dirs.json")
    grid = tmp_path / "grid.npy"
    assert (
        main(
            [
                "render",
                "--model",
                str(tiny_checkpoint),
                "--latent",
                str(out),
                "--directions",
                str(tmp_path / "dirs.json"),
                "--index",
                "0",
                "--shifts",
                "-2:2:3",
                "--out",
                str(grid),
            ]
        )
        == 0
    )
    g = np.load(grid)
    assert g.shape == (3, 3, 16, 16)
    np.testing.assert_allclose(g[1], np.load(raw)[0], atol=1e-5)  # t = 0 is the reconstruction
    gif = tmp_path / "edit.gif"
    assert (
        main(
            [
                "export",
                "--model",
                str(tiny_checkpoint),
                "--latent",
                str(out),
                "--directions",
                str(tmp_path / "dirs.json"),
                "--index",
                "1",
                "--frames",
                "4",
                "--size",
                "16",
                "--out",
                str(gif),
            ]
        )
        == 0
    )
    assert gif.stat().st_size > 0


def test_project_errors_are_one_line(tmp_path, tiny_checkpoint, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert (
        main(["project", "--model", str(tiny_checkpoint), "--image", str(bad), "--out", str(tmp_path / "x.latent")])
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "broken.png: not a readable image" in err and "\n" not in err
    assert (
        main(["project", "--model", str(tiny_checkpoint), "--image", str(bad), "--out", str(tmp_path / "x.npy")]) == 2
    )
    assert "must end with one of .latent" in capsys.readouterr().err
    # a latent of another model is refused by render
    other = tmp_path / "other.pt"
    torch.manual_seed(5)
    torch.save({"netG_state_dict": DCGANGenerator(nz=8, ngf=4, nc=3, n_up=2).state_dict()}, other)
    photo = tmp_path / "p.png"
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(photo)
    lat = tmp_path / "p.latent"
    assert (
        main(
            [
                "project",
                "--model",
                str(other),
                "--image",
                str(photo),
                "--steps",
                "2",
                "--starts",
                "1",
                "--distance",
                "pixel",
                "--out",
                str(lat),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(["render", "--model", str(tiny_checkpoint), "--latent", str(lat), "--out", str(tmp_path / "r.png")]) == 1
    )
    assert "p.latent was projected on model 'other'" in capsys.readouterr().err


def test_render_a_w_latent_in_its_space_or_says_why_not(tmp_path, capsys):
    from engine.checkpoints.atlas import save_stylegan2
    from engine.latents import Latent, save_latent
    from tests.engine.tiny_generators import tiny_stylegan2

    ckpt = save_stylegan2(tiny_stylegan2(), tmp_path / "sg2.pt")
    gen = load_generator(str(ckpt), device="cpu")
    w = gen.encode(torch.randn(1, gen.z_dim), "w")
    lat_path = save_latent(Latent(w.detach(), "w", model_ref(gen)), tmp_path / "x.latent")
    own, plus = tmp_path / "own.npy", tmp_path / "plus.npy"
    assert main(["render", "--model", str(ckpt), "--latent", str(lat_path), "--out", str(own)]) == 0
    assert main(["render", "--model", str(ckpt), "--latent", str(lat_path), "--space", "w+", "--out", str(plus)]) == 0
    np.testing.assert_allclose(np.load(own), np.load(plus), atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(np.load(own), gen.decode(w, "w", noise="const").numpy(), atol=1e-5)
    capsys.readouterr()
    assert main(["render", "--model", str(ckpt), "--latent", str(lat_path), "--space", "z", "--out", str(own)]) == 1
    assert "projected into w" in capsys.readouterr().err
