"""Writing images, grids and morph videos to disk."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.errors import AtlasError


def save_image(image: np.ndarray, path: str | Path) -> Path:
    """Save a ``[H, W, 3]`` uint8 image (PNG/JPEG by suffix)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        Image.fromarray(np.ascontiguousarray(image)).save(path)
    except (OSError, ValueError) as exc:
        raise AtlasError(f"{path}: cannot write image ({exc})") from None
    return path


def seed_mosaic(images: np.ndarray, columns: int | None = None, pad: int = 2) -> np.ndarray:
    """``[N, H, W, 3]`` -> one image with ``columns`` columns (default: about square)."""
    from engine.render import compose_grid

    n = images.shape[0]
    cols = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    cells = np.full((rows * cols, *images.shape[1:]), 255, np.uint8)
    cells[:n] = images
    return compose_grid(cells.reshape(rows, cols, *images.shape[1:]), pad=pad)
