"""The headless CLI: render seeds / grids, raw .npy output, one-line errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cli.main import main
from engine.directions import DirectionSet
from engine.render import to_uint8

REPO = Path(__file__).resolve().parents[2]


def test_render_seed_mosaic_png(tmp_path, digiface):
    out = tmp_path / "grid.png"
    assert main(["render", "--seeds", "0-3", "--out", str(out)]) == 0
    im = np.asarray(Image.open(out))
    assert im.shape[:2] == (2 * 64 + 2, 2 * 64 + 2)  # padding between the tiles only, no outer frame
    with torch.no_grad():
        raw = to_uint8(digiface(digiface.seed_latents([0, 1, 2, 3])))
    assert np.array_equal(im[:64, :64], raw[0]) and np.array_equal(im[66:, 66:], raw[3])
    assert (im[64:66] == 255).all() and (im[:, 64:66] == 255).all()


def test_render_one_seed_is_exactly_the_generator_image(tmp_path, digiface):
    """``render --seeds 3 --out face.png`` writes the R x R render itself: no frame, no padding."""
    out = tmp_path / "face.png"
    assert main(["render", "--seeds", "3", "--out", str(out)]) == 0
    im = np.asarray(Image.open(out))
    with torch.no_grad():
        raw = to_uint8(digiface(digiface.seed_latents([3])))[0]
    assert im.shape == (64, 64, 3)
    assert np.array_equal(im, raw)


def test_render_npy_is_the_raw_generator_output(tmp_path, digiface):
    z = digiface.seed_latents([11, 12, 13])
    np.save(tmp_path / "z.npy", z.numpy())
    out = tmp_path / "x.npy"
    assert main(["render", "--latents", str(tmp_path / "z.npy"), "--out", str(out)]) == 0
    arr = np.load(out)
    assert arr.shape == (3, 3, 64, 64)
    with torch.no_grad():
        np.testing.assert_allclose(arr, digiface(z).numpy(), atol=1e-6)


def test_render_direction_grid(tmp_path, digiface):
    torch.manual_seed(0)
    ds = DirectionSet.latent("test", {"name": digiface.name, "identity": digiface.identity}, torch.randn(4, 100))
    ds.save(tmp_path / "set.json")
    out = tmp_path / "dir.png"
    assert (
        main(
            [
                "render",
                "--directions",
                str(tmp_path / "set.json"),
                "--index",
                "1,3",
                "--shifts",
                "-3:3:5",
                "--seeds",
                "0,1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert Image.open(out).size == (5 * 66 + 2, 4 * 66 + 2)
    raw = tmp_path / "dir.npy"
    assert (
        main(
            [
                "render",
                "--directions",
                str(tmp_path / "set.json"),
                "--index",
                "3",
                "--shifts",
                "-3:3:3",
                "--seeds",
                "0",
                "--out",
                str(raw),
            ]
        )
        == 0
    )
    arr = np.load(raw)
    with torch.no_grad():
        ref = digiface(digiface.seed_latents([0]) + 3.0 * ds.directions[3].vector)
    np.testing.assert_allclose(arr[2], ref[0].numpy(), atol=1e-5)


def test_errors_are_one_line_and_nonzero(tmp_path, capsys):
    # 2: a bad value on the command line; 1: a file or model problem
    assert main(["render", "--seeds", "x-y", "--out", str(tmp_path / "a.png")]) == 2
    assert main(["render", "--model", "no-such-model", "--out", str(tmp_path / "a.png")]) == 1
    assert main(["render", "--out", str(tmp_path / "a.bmp")]) == 2
    (tmp_path / "bad.json").write_text("{")
    assert main(["render", "--directions", str(tmp_path / "bad.json"), "--out", str(tmp_path / "a.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.startswith("error: ") for line in err] == [True] * 4
    assert "no-such-model" in err[1] and "bad.json" in err[3]


def test_process_exit_code_and_no_traceback(tmp_path):
    res = subprocess.run(
        [sys.executable, "main.py", "info", str(tmp_path / "missing.pkl")], cwd=REPO, capture_output=True, text=True
    )
    assert res.returncode == 1
    assert "Traceback" not in res.stderr and "missing.pkl" in res.stderr


def test_models_and_info(capsys):
    assert main(["models"]) == 0
    assert "digiface-dcgan-64" in capsys.readouterr().out
    assert main(["info", "digiface-dcgan-64"]) == 0
    out = capsys.readouterr().out
    assert "main.6" in out and "(default)" in out and "3576704" in out
