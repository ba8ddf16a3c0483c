"""PNG and JPEG stills through Pillow."""

from __future__ import annotations

from pathlib import Path

from engine.errors import AtlasError, describe_exception
from engine.writers import Writer, register_writer


def save_pillow(image, path: Path) -> None:
    """Save a uint8 ``[H, W, 3]`` image; the suffix picks Pillow's encoder."""
    import numpy as np
    from PIL import Image

    try:
        Image.fromarray(np.ascontiguousarray(image)).save(path)
    except (OSError, ValueError) as exc:
        raise AtlasError(f"{path}: cannot write image ({describe_exception(exc)})") from None


register_writer(Writer("png", (".png",), "image", "PNG image", save=save_pillow))
register_writer(Writer("jpg", (".jpg", ".jpeg"), "image", "JPEG image", save=save_pillow))
