"""Animated GIFs through imageio's Pillow plugin.

GIF needs every frame at once (its palette and frame deltas are computed over the whole clip), so
the frames are collected and written at the end: stopping a GIF export costs nothing. Frame delays
are whole centiseconds, so the real frame rate is ``100 / round(100 / fps)``; the clip loops.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import AtlasError, describe_exception
from engine.writers import Writer, register_writer


class GifSink:
    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps, self.frames = path, fps, []

    def add(self, frame) -> None:
        self.frames.append(frame)

    def close(self) -> None:
        import imageio.v3 as iio3
        import numpy as np

        try:
            iio3.imwrite(self.path, np.stack(self.frames), extension=".gif", duration=1000.0 / self.fps, loop=0)
        except (OSError, ValueError) as exc:
            raise AtlasError(f"{self.path}: cannot write the GIF ({describe_exception(exc)})") from None

    def abort(self) -> None:
        self.frames = []


register_writer(Writer("gif", (".gif",), "video", "GIF animation", open=GifSink, holds_frames=True))
