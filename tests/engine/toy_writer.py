"""Two toy export formats registered from outside the engine, as a plug-in would: one module each,
no edit to the CLI or the editor (``engine.writers``). Importing this module registers them."""

from __future__ import annotations

import numpy as np

from engine.writers import Writer, register_writer, writers

TOY_IMAGE, TOY_VIDEO = "toyimg", "toyvid"


def read_toy(path) -> np.ndarray:
    """What a toy writer wrote: the image ``[H, W, 3]`` or the frames ``[F, H, W, 3]``."""
    with open(path, "rb") as f:
        return np.load(f, allow_pickle=False)


def _save(image, path) -> None:
    with open(path, "wb") as f:
        np.save(f, np.asarray(image, np.uint8), allow_pickle=False)


class _Frames:
    def __init__(self, path, fps: float) -> None:
        self.path, self.frames = path, []

    def add(self, frame) -> None:
        self.frames.append(np.asarray(frame))

    def close(self) -> None:
        _save(np.stack(self.frames), self.path)

    def abort(self) -> None:
        self.frames = []


if TOY_IMAGE not in {w.name for w in writers()}:
    register_writer(Writer(TOY_IMAGE, (".toyimg",), "image", "toy image (numpy)", save=_save))
    register_writer(Writer(TOY_VIDEO, (".toyvid",), "video", "toy frames (numpy)", open=_Frames))
