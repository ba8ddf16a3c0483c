"""``main.py render`` / ``info`` on the StyleGAN2 reference fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.main import main

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
pytestmark = pytest.mark.usefixtures("shared_fixtures")
ROS = str(FIXTURES / "rosinality_s32_narrow.pt")


def test_render_seeds_png_in_w_with_truncation_and_without_noise(tmp_path):
    out = tmp_path / "x.png"
    assert (
        main(["render", "--model", ROS, "--seeds", "0-3", "--truncation", "0.7", "--space", "w", "--out", str(out)])
        == 0
    )
    assert Image.open(out).size == (2 * 32 + 2, 2 * 32 + 2)  # 2 px between the tiles, no frame
    raw = tmp_path / "x.npy"
    assert (
        main(["render", "--model", ROS, "--seeds", "0-3", "--truncation", "0.7", "--space", "w", "--out", str(raw)])
        == 0
    )
    e = np.load(FIXTURES / "rosinality_s32_narrow_expected.npz")
    assert np.abs(np.load(raw) - e["img_psi07"]).max() < 1e-4
    none = tmp_path / "none.npy"
    assert main(["render", "--model", ROS, "--seeds", "0-3", "--noise", "none", "--out", str(none)]) == 0
    assert np.abs(np.load(none) - e["img_psi1"]).max() > 1e-3


def test_render_latents_npy_to_raw_npy(tmp_path):
    e = np.load(FIXTURES / "nvada_resnet_res32_expected.npz")
    np.save(tmp_path / "z.npy", e["z"])
    out = tmp_path / "x.npy"
    model = str(FIXTURES / "nvada_resnet_res32.pkl")
    assert main(["render", "--model", model, "--latents", str(tmp_path / "z.npy"), "--out", str(out)]) == 0
    assert np.abs(np.load(out) - e["img_psi1"]).max() < 1e-4
    np.save(tmp_path / "ws.npy", e["ws_mix"])  # mixed styles, given in w+
    assert (
        main(["render", "--model", model, "--latents", str(tmp_path / "ws.npy"), "--space", "w+", "--out", str(out)])
        == 0
    )
    assert np.abs(np.load(out) - e["img_mix"]).max() < 1e-4
