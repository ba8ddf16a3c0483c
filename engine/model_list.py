"""What ``main.py models`` lists, readable without importing torch.

The registries (``engine.models.registry``) are filled by importing the model modules
(``engine.catalog``), which import torch (about a second and 0.5 GB before the first line is
printed). This catalogue names the same built-in models and checkpoint formats as plain data, so
the listing starts at once;
``tests/engine/test_startup.py`` checks that it matches the registries, so a new model or format
adds its line here beside its registration.
"""

from __future__ import annotations

# (name, description) of each built-in model
BUILTIN_MODELS: tuple[tuple[str, str], ...] = (
    ("digiface-dcgan-64", "64x64 faces, DCGAN (latent 100, 3.6M params), from the gan-face-generate wheel"),
    (
        "procedural-stylegan2-32",
        "32x32 procedural cartoon faces with 8 known factors; our StyleGAN2 (z = w = 128, 8 mapping layers), "
        "trained on a CPU",
    ),
)

# (name, suffixes, whether a folder is accepted) of each checkpoint format
CHECKPOINT_FORMATS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("proggan", (".pth", ".pt"), False),
    ("gan-atlas-stylegan2", (".pt", ".pth"), False),
    ("pytorch-pretrained-biggan", (".bin",), True),
    ("rosinality-stylegan2", (".pt", ".pth"), False),
    ("nvidia-stylegan2-ada-pytorch", (".pkl", ".pickle"), False),
    ("dcgan-tutorial", (".pt", ".pth", ".tar"), False),
)
