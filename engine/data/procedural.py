"""A procedural image set with known generative factors: cartoon faces on a plain background.

Every image is drawn, with anti-aliased edges, from eight continuous factors, each stored
normalised to ``[0, 1]`` (uniform in the training distribution). ``FACTORS`` lists them with
their physical ranges; lengths are fractions of the image width, so one factor vector renders
the same picture at any resolution.

=================  =============================  ===============================================
factor             range (value at 0 .. at 1)     what it moves
=================  =============================  ===============================================
``pos_x``          0.33 .. 0.67 image widths      horizontal centre of the face
``pos_y``          0.33 .. 0.67 image widths      vertical centre of the face (0 = top)
``scale``          0.19 .. 0.31 image widths      face half-height (the face is an upright ellipse)
``rotation``       -40 .. +40 degrees             in-plane rotation of the face (positive turns
                                                  it clockwise on screen)
``face_hue``       0 .. 240 degrees HSV hue       skin colour (red, yellow, green, cyan, blue)
``bg_hue``         0 .. 240 degrees HSV hue       background colour (darker and less saturated)
``eye_distance``   0.55 .. 1.15 face half-widths  distance between the eye centres
``mouth_curve``    -1 (frown) .. +1 (smile)       mouth curvature: corners down at 0, up at 1
=================  =============================  ===============================================

Hues cover 240 of the 360 degrees so that the factor is not circular (a regressor and a
purity score need a linear quantity). Faces are bright (HSV value 0.95) and backgrounds dark
(0.45), so a face is visible whatever the two hues.

Rendering is vectorised over the batch with numpy (signed distances, 1-pixel coverage ramps):
``render(factors, resolution)`` is the single drawing function; ``ProceduralFaces`` is a
deterministic map-style ``Dataset`` (item i of seed s is always the same image) and
``random_batches`` an endless stream for GAN training.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from engine.errors import AtlasError


@dataclass(frozen=True)
class Factor:
    """One generative factor: the normalised value ``u`` in [0, 1] means ``low + u * (high - low)``."""

    name: str
    low: float
    high: float
    unit: str
    description: str

    def physical(self, u: np.ndarray | float) -> np.ndarray | float:
        return self.low + np.asarray(u) * (self.high - self.low)


FACTORS: tuple[Factor, ...] = (
    Factor("pos_x", 0.33, 0.67, "image widths", "horizontal centre of the face"),
    Factor("pos_y", 0.33, 0.67, "image widths", "vertical centre of the face (0 = top)"),
    Factor("scale", 0.19, 0.31, "image widths", "face half-height"),
    Factor("rotation", -40.0, 40.0, "degrees", "in-plane rotation, clockwise on screen"),
    Factor("face_hue", 0.0, 240.0, "degrees", "HSV hue of the face"),
    Factor("bg_hue", 0.0, 240.0, "degrees", "HSV hue of the background"),
    Factor("eye_distance", 0.55, 1.15, "face half-widths", "distance between the eye centres"),
    Factor("mouth_curve", -1.0, 1.0, "", "mouth curvature: -1 frown, +1 smile"),
)
FACTOR_NAMES: tuple[str, ...] = tuple(f.name for f in FACTORS)
N_FACTORS = len(FACTORS)

# Shape constants, in units of the face half-height r (face frame: u to the right, v down).
_ASPECT = 0.82  # half-width / half-height of the face ellipse
_EYE_V = -0.28  # eye centres' height
_EYE_R = 0.19  # eye radius
_MOUTH_V = 0.42  # mouth centre height
_MOUTH_HALF_W = 0.42  # half the mouth's width
_MOUTH_SAG = 0.26  # vertical distance between the mouth's centre and corners at |curve| = 1
_MOUTH_THICK = 0.17  # stroke width
_MOUTH_SAMPLES = 13
_FACE_SV = (0.75, 0.95)
_BG_SV = (0.55, 0.45)
_FEATURE_RGB = np.array([0.08, 0.05, 0.05], np.float32)


def hsv_to_rgb(h: np.ndarray, s: float, v: float) -> np.ndarray:
    """``h [...]`` in turns (0..1) -> ``[..., 3]`` RGB in [0, 1] (the standard hexcone model)."""
    k = (np.array([5.0, 3.0, 1.0], np.float32) + h[..., None] * 6.0) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _coverage(sdf_px: np.ndarray) -> np.ndarray:
    """Area coverage of a pixel from a signed distance in pixels (negative inside)."""
    return np.clip(0.5 - sdf_px, 0.0, 1.0)


def render(factors: np.ndarray | torch.Tensor, resolution: int = 32) -> np.ndarray:
    """Draw faces from normalised factors.

    ``factors``: ``[B, 8]`` in [0, 1] (columns in ``FACTOR_NAMES`` order; values outside are
    extrapolated). Returns float32 ``[B, 3, resolution, resolution]`` in [-1, 1].
    """
    f = np.asarray(factors.detach().cpu().numpy() if isinstance(factors, torch.Tensor) else factors, np.float32)
    if f.ndim != 2 or f.shape[1] != N_FACTORS:
        raise AtlasError(f"procedural factors must have shape [B, {N_FACTORS}], got {list(f.shape)}")
    if resolution < 8:
        raise AtlasError(f"procedural resolution {resolution} is too small (at least 8 pixels)")
    phys = [FACTORS[i].physical(f[:, i]).astype(np.float32) for i in range(N_FACTORS)]
    cx, cy, r, rot_deg, face_h, bg_h, eye_d, curve = phys
    R = float(resolution)
    B = f.shape[0]
    shape = (B, 1, 1)

    # pixel centres in image widths
    grid = (np.arange(resolution, dtype=np.float32) + 0.5) / R
    px = grid[None, None, :]
    py = grid[None, :, None]
    dx = px - cx.reshape(shape)
    dy = py - cy.reshape(shape)
    theta = np.deg2rad(rot_deg).reshape(shape)
    c, s = np.cos(theta), np.sin(theta)
    rr = r.reshape(shape)
    # face frame: rotate the offset back by theta, measure in face half-heights
    u = (c * dx + s * dy) / rr
    v = (-s * dx + c * dy) / rr
    px_per_r = rr * R  # pixels per face unit

    # ellipse distance (first-order: exact on the axes, close elsewhere for this mild aspect)
    q = np.sqrt((u / _ASPECT) ** 2 + v**2)
    grad = np.sqrt((u / _ASPECT**2) ** 2 + v**2) / np.maximum(q, 1e-6)
    face = _coverage((q - 1.0) / np.maximum(grad, 1e-6) * px_per_r)

    half = (eye_d * _ASPECT / 2.0).reshape(shape)
    d_left = np.sqrt((u + half) ** 2 + (v - _EYE_V) ** 2)
    d_right = np.sqrt((u - half) ** 2 + (v - _EYE_V) ** 2)
    eyes = _coverage((np.minimum(d_left, d_right) - _EYE_R) * px_per_r)

    # mouth: a parabola v = MOUTH_V + sag * curve * (1 - 2 (u / half_w)^2) / 1, stroked; distance
    # to a dense polyline of sample points is within a small fraction of a pixel
    t = np.linspace(-1.0, 1.0, _MOUTH_SAMPLES, dtype=np.float32)
    mu = (t * _MOUTH_HALF_W)[None, :]
    mv = _MOUTH_V + _MOUTH_SAG * curve[:, None] * (0.5 - t**2)[None, :]
    d2 = (u[:, None] - mu[:, :, None, None]) ** 2 + (v[:, None] - mv[:, :, None, None]) ** 2
    d_mouth = np.sqrt(d2.min(axis=1))
    mouth = _coverage((d_mouth - _MOUTH_THICK / 2) * px_per_r)

    features = np.maximum(eyes, mouth) * face
    face_rgb = hsv_to_rgb(face_h / 360.0, *_FACE_SV).reshape(B, 3, 1, 1)
    bg_rgb = hsv_to_rgb(bg_h / 360.0, *_BG_SV).reshape(B, 3, 1, 1)
    face = face[:, None]
    features = features[:, None]
    img = bg_rgb * (1 - face) + face_rgb * face
    img = img * (1 - features) + _FEATURE_RGB.reshape(1, 3, 1, 1) * features
    return (img * 2.0 - 1.0).astype(np.float32)


def factors_for(indices: np.ndarray | list[int], seed: int = 0) -> np.ndarray:
    """``[N, 8]`` float32 factors of items ``indices`` of the set with ``seed``.

    Item i depends only on (seed, i): a counter-based Philox stream keyed by the seed, at
    counter i, so any subset is cheap and reproducible.
    """
    idx = np.asarray(indices, dtype=np.uint64).reshape(-1)
    out = np.empty((idx.size, N_FACTORS), np.float32)
    for row, i in enumerate(idx):
        bitgen = np.random.Philox(key=int(seed) % (2**64), counter=[int(i), 0, 0, 0])
        out[row] = np.random.Generator(bitgen).random(N_FACTORS, dtype=np.float32)
    return out


class ProceduralFaces(Dataset):
    """A deterministic map-style data set of ``size`` faces: item i -> ``(image, factors)``.

    ``image``: float32 ``[3, resolution, resolution]`` in [-1, 1]; ``factors``: float32 ``[8]``
    in [0, 1] (``FACTOR_NAMES`` order). ``batch(indices)`` renders many items at once, which is
    much faster than item by item.
    """

    def __init__(self, size: int = 50_000, *, seed: int = 0, resolution: int = 32) -> None:
        if size <= 0:
            raise AtlasError(f"procedural data set size must be positive, got {size}")
        self.size = int(size)
        self.seed = int(seed)
        self.resolution = int(resolution)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -self.size <= i < self.size:
            raise IndexError(f"index {i} out of range for a set of {self.size}")
        imgs, f = self.batch([i % self.size])
        return imgs[0], f[0]

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images [N, 3, R, R], factors [N, 8])`` of the given items."""
        f = factors_for(indices, self.seed)
        return torch.from_numpy(render(f, self.resolution)), torch.from_numpy(f)


def random_batches(
    batch_size: int, *, resolution: int = 32, seed: int = 0, generator: np.random.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless stream of fresh ``(images [B, 3, R, R], factors [B, 8])`` batches.

    Factors are i.i.d. uniform; the stream is reproducible from ``seed`` (or continues the
    state of ``generator``, which a resumed training run restores).
    """
    rng = generator if generator is not None else np.random.default_rng(seed)
    while True:
        f = rng.random((batch_size, N_FACTORS), dtype=np.float32)
        yield torch.from_numpy(render(f, resolution)), torch.from_numpy(f)


def factor_table() -> list[dict]:
    """The factors as plain data (name, low, high, unit, description) for reports and the GUI."""
    return [dict(name=f.name, low=f.low, high=f.high, unit=f.unit, description=f.description) for f in FACTORS]


def default_factors(n: int = 1) -> np.ndarray:
    """``[n, 8]`` the middle of every range (a centred, upright, neutral face)."""
    return np.full((n, N_FACTORS), 0.5, np.float32)


__all__ = [
    "FACTORS",
    "FACTOR_NAMES",
    "N_FACTORS",
    "Factor",
    "ProceduralFaces",
    "default_factors",
    "factor_table",
    "factors_for",
    "random_batches",
    "render",
]
