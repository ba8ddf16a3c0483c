"""Our own StyleGAN2 trained on the procedural face set: the built-in ``procedural-stylegan2-32``.

It is the EMA generator of a CPU training run (``python main.py train --data procedural``; the
README gives the exact command), stored in GAN Atlas's own StyleGAN2 file format
(``engine.checkpoints.atlas``) with float16 weights. Because the images come from eight known
factors (``engine.data.procedural``), directions found on it can be scored against the ground
truth with the factor regressor (``engine.data.regressor``).
"""

from __future__ import annotations

from pathlib import Path

from engine.checkpoints.atlas import load_stylegan2
from engine.errors import CheckpointError
from engine.models.registry import register_model
from engine.models.stylegan2 import StyleGAN2Generator

RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "models"
BUILTIN_NAME = "procedural-stylegan2-32"
BUILTIN_FILE = RESOURCES / f"{BUILTIN_NAME}.pt"
# Edits of the first 8x8 conv move the face's layout and features (pose, size, eyes, mouth)
# without being whole-image colour shifts (toRGB, 4x4) or texture (16-32 px).
DEFAULT_EDIT_LAYER = "synthesis.b8.conv0"


@register_model(
    BUILTIN_NAME,
    description="32x32 procedural cartoon faces with 8 known factors; our StyleGAN2 "
    "(z = w = 128, 8 mapping layers), trained on a CPU",
)
def procedural_stylegan2_32() -> StyleGAN2Generator:
    if not BUILTIN_FILE.is_file():
        raise CheckpointError(
            f"{BUILTIN_FILE} is missing; retrain it with the command in the README "
            "(python main.py train --data procedural ...)"
        )
    gen = load_stylegan2(BUILTIN_FILE)
    gen.name = BUILTIN_NAME
    gen.default_edit_layer = DEFAULT_EDIT_LAYER
    return gen
