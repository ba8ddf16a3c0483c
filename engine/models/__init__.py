"""Generators: the protocol (``base``), the registries (``registry``) and the models.

The built-in models and checkpoint formats are registered by ``engine.catalog``, which the
registry imports the first time it is asked for one (so model and checkpoint modules can import
the registry without a cycle).
"""

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
