"""The procedural face set: determinism, and each factor moving the picture the way it says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.data.procedural import (
    FACTOR_NAMES,
    FACTORS,
    N_FACTORS,
    ProceduralFaces,
    default_factors,
    factors_for,
    hsv_to_rgb,
    random_batches,
    render,
)
from engine.errors import AtlasError

R = 32


def one(**values) -> np.ndarray:
    """A centred neutral face with some factors set (normalised values); face green, bg blue."""
    f = default_factors(1)
    f[0, FACTOR_NAMES.index("face_hue")] = 0.5
    f[0, FACTOR_NAMES.index("bg_hue")] = 1.0
    for k, v in values.items():
        f[0, FACTOR_NAMES.index(k)] = v
    return render(f, R)[0]


def face_mask(img: np.ndarray) -> np.ndarray:
    """Pixels more than half covered by the face (features included; background read at a corner)."""
    diff = np.abs(img - img[:, 0, 0][:, None, None]).sum(0)
    return diff > 0.5 * diff.max()


def dark_mask(img: np.ndarray) -> np.ndarray:
    """Eye and mouth pixels: near black (the face and background are never that dark)."""
    return img.max(0) < -0.5


def centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def test_deterministic_and_seeded():
    a = ProceduralFaces(100, seed=3)
    img1, f1 = a[17]
    img2, f2 = ProceduralFaces(100, seed=3)[17]
    assert torch.equal(img1, img2) and torch.equal(f1, f2)
    batch, fb = a.batch([16, 17, 18])
    assert torch.equal(batch[1], img1) and torch.equal(fb[1], f1)
    assert not torch.equal(ProceduralFaces(100, seed=4)[17][1], f1)
    assert img1.shape == (3, R, R) and img1.dtype == torch.float32
    assert f1.shape == (N_FACTORS,) and 0 <= f1.min() and f1.max() <= 1
    assert -1 <= img1.min() and img1.max() <= 1
    # the endless stream is reproducible from its seed
    s1, s2 = random_batches(4, seed=9), random_batches(4, seed=9)
    assert torch.equal(next(s1)[0], next(s2)[0])
    with pytest.raises(IndexError):
        a[100]


def test_factors_are_uniform_and_independent():
    f = factors_for(np.arange(4000), seed=0)
    assert np.allclose(f.mean(0), 0.5, atol=0.02)
    corr = np.corrcoef(f.T) - np.eye(N_FACTORS)
    assert np.abs(corr).max() < 0.06


def test_position_moves_the_centre_of_mass():
    span = (FACTORS[0].high - FACTORS[0].low) * R  # pixels between pos_x = 0 and 1
    x0, y0 = centroid(face_mask(one(pos_x=0.0)))
    x1, y1 = centroid(face_mask(one(pos_x=1.0)))
    assert x1 - x0 == pytest.approx(span, abs=0.5) and abs(y1 - y0) < 0.3
    x0, y0 = centroid(face_mask(one(pos_y=0.0)))
    x1, y1 = centroid(face_mask(one(pos_y=1.0)))
    assert y1 - y0 == pytest.approx(span, abs=0.5) and abs(x1 - x0) < 0.3


def test_scale_sets_the_face_area():
    for u in (0.0, 1.0):
        r = FACTORS[2].physical(u) * R
        area = face_mask(one(scale=u)).sum()
        assert area == pytest.approx(np.pi * 0.82 * r * r, rel=0.08)


def test_hues_set_the_colours():
    # face hue 0 / 120 / 240 degrees -> red / green / blue face pixels; background read at a corner
    for u, channel in ((0.0, 0), (0.5, 1), (1.0, 2)):
        img = one(face_hue=u)
        m = face_mask(img) & ~dark_mask(img)
        mean = img[:, m].mean(1)
        assert mean.argmax() == channel
    for u in (0.0, 0.3, 0.8):
        img = one(bg_hue=u)
        want = hsv_to_rgb(np.float32(u * 240 / 360), 0.55, 0.45) * 2 - 1
        assert np.allclose(img[:, 0, 0], want, atol=1e-5)


def test_rotation_is_clockwise_and_mirror_symmetric():
    pos, neg = one(rotation=1.0), one(rotation=0.0)
    # a centred face rotated by -40 degrees is the mirror image of one rotated by +40
    assert np.allclose(pos, neg[:, :, ::-1], atol=1e-5)
    dark = dark_mask(pos)
    cols = np.arange(R)[None, :]
    right = dark & (cols >= R // 2)
    left = dark & (cols < R // 2)
    # clockwise on screen: features on the right side go down
    assert centroid(right)[1] > centroid(left)[1] + 0.5


def test_eye_distance_and_mouth():
    def eye_spread(img):
        m = dark_mask(img)
        m[R // 2 :] = False  # eyes are in the upper half of a centred face
        xs = np.nonzero(m)[1]
        return xs.max() - xs.min()

    # 0.6 face half-widths of 0.82 x 8 px apart = 3.9 px more between the eye centres
    assert eye_spread(one(eye_distance=1.0)) >= eye_spread(one(eye_distance=0.0)) + 3

    def corner_lift(img):
        m = dark_mask(img)
        m[: R // 2 + 1] = False  # the mouth is in the lower half
        ys, xs = np.nonzero(m)
        mid = np.abs(xs - R / 2) < 2
        return ys[mid].mean() - ys[~mid].mean()  # > 0 when the corners are higher (smile)

    assert corner_lift(one(mouth_curve=1.0)) > 1.0
    assert corner_lift(one(mouth_curve=0.0)) < -1.0
    assert abs(corner_lift(one(mouth_curve=0.5))) < 0.6


def test_resolution_independent_and_bad_input():
    f = factors_for([0, 1], seed=0)
    big = torch.from_numpy(render(f, 64))
    small = torch.nn.functional.avg_pool2d(big, 2).numpy()
    assert np.abs(small - render(f, 32)).mean() < 0.03
    with pytest.raises(AtlasError, match="shape"):
        render(np.zeros((2, 3)), 32)
