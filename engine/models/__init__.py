"""Generators: the protocol (``base``), the registries (``registry``) and the models.

Importing this package registers every built-in model and checkpoint format.
"""

from engine.checkpoints import atlas as _atlas  # noqa: F401  (registers our own StyleGAN2 file format)
from engine.checkpoints import nvidia_pkl as _nvidia_pkl  # noqa: F401  (NVIDIA stylegan2-ada-pytorch .pkl)
from engine.checkpoints import rosinality as _rosinality  # noqa: F401  (rosinality stylegan2-pytorch .pt)
from engine.models import dcgan as _dcgan  # noqa: F401  (registers digiface-dcgan-64 and the DCGAN format)
from engine.models import procedural as _procedural  # noqa: F401  (registers procedural-stylegan2-32)
from engine.models.base import Generator, LayerInfo, ParamEdit
from engine.models.registry import (
    DEFAULT_MODEL,
    builtin_models,
    checkpoint_formats,
    load_generator,
    register_format,
    register_model,
)

__all__ = [
    "DEFAULT_MODEL",
    "Generator",
    "LayerInfo",
    "ParamEdit",
    "builtin_models",
    "checkpoint_formats",
    "load_generator",
    "register_format",
    "register_model",
]
