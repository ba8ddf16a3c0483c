"""MP4 videos (H.264, yuv420p) through imageio's ffmpeg plugin and the ffmpeg bundled in imageio-ffmpeg.

Frames stream into the encoder as they are rendered; yuv420p needs even sides (``engine.export``
makes every frame even).
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import AtlasError, describe_exception
from engine.writers import Writer, register_writer


class Mp4Sink:
    def __init__(self, path: Path, fps: float) -> None:
        import imageio.v2 as iio

        try:
            # macro_block_size=2: frames are already even, so imageio must not rescale them
            self.writer = iio.get_writer(
                path,
                format="FFMPEG",
                mode="I",
                fps=fps,
                codec="libx264",
                pixelformat="yuv420p",
                macro_block_size=2,
                quality=8,
            )
        except (OSError, RuntimeError, ValueError) as exc:
            raise AtlasError(f"{path}: cannot start the MP4 encoder ({describe_exception(exc)})") from None

    def add(self, frame) -> None:
        self.writer.append_data(frame)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - the file is being thrown away anyway
            pass


register_writer(Writer("mp4", (".mp4",), "video", "MP4 video", open=Mp4Sink))
