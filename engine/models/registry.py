"""Registries of built-in models and checkpoint formats, and the one loader the app uses.

A built-in model registers a factory under its name::

    @register_model("digiface-dcgan-64", description="...")
    def digiface() -> Generator: ...

A checkpoint format registers how to recognise and load a file::

    register_format(CheckpointFormat("rosinality-stylegan2", (".pt", ".pth"), probe, load))

A format whose checkpoints are folders (several files) sets ``folders=True``; its probe then also
sees folder paths. ``load_generator(spec)`` accepts a built-in name, a checkpoint path, a model
folder or an adapter ``.py`` file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.device import pick_device
from engine.errors import AtlasError, CheckpointError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[[], Generator]  # noqa: F821 - engine.models.base.Generator
    description: str = ""


@dataclass(frozen=True)
class CheckpointFormat:
    """``probe(path) -> bool`` must be cheap and must not execute code from the file.

    ``folders``: the format's checkpoints may also be given as a folder (``probe`` decides).
    """

    name: str
    suffixes: tuple[str, ...]
    probe: Callable[[Path], bool]
    load: Callable[[Path], Generator]  # noqa: F821
    folders: bool = False


_MODELS: dict[str, ModelEntry] = {}
_FORMATS: list[CheckpointFormat] = []


def register_model(name: str, description: str = ""):
    def deco(factory):
        if name in _MODELS:
            raise ValueError(f"model '{name}' registered twice")
        _MODELS[name] = ModelEntry(name, factory, description)
        return factory

    return deco


def register_format(fmt: CheckpointFormat) -> None:
    if any(f.name == fmt.name for f in _FORMATS):
        raise ValueError(f"checkpoint format '{fmt.name}' registered twice")
    _FORMATS.append(fmt)


def _catalog() -> None:
    """Register every built-in model and format (``engine.catalog``), once."""
    import engine.catalog  # noqa: F401


def builtin_models() -> list[ModelEntry]:
    _catalog()
    return list(_MODELS.values())


def checkpoint_formats() -> list[CheckpointFormat]:
    _catalog()
    return list(_FORMATS)


DEFAULT_MODEL = "digiface-dcgan-64"


def load_generator(spec: str | Path | None = None, device: str | torch.device = "auto"):
    """A ready, eval-mode generator on ``device`` from a built-in name or a file path.

    Raises ``AtlasError`` naming the model or file and what is wrong.
    """
    _catalog()
    spec = str(spec) if spec else DEFAULT_MODEL
    dev = pick_device(device)
    if spec in _MODELS:
        gen = _MODELS[spec].factory()
        gen.source = spec
        return gen.to(dev).eval()
    path = Path(spec).expanduser()
    if not path.exists():
        names = ", ".join(sorted(_MODELS)) or "none"
        raise AtlasError(f"'{spec}' is neither a built-in model ({names}) nor an existing file")
    if path.is_dir():
        folder_formats = [f for f in _FORMATS if f.folders]
        for fmt in folder_formats:
            if fmt.probe(path):
                gen = fmt.load(path)
                gen.source = str(path)
                return gen.to(dev).eval()
        kinds = "; ".join(f.name for f in folder_formats) or "none"
        raise AtlasError(
            f"{path}: is a folder that holds no model this program reads (model folders: {kinds}); "
            "give a checkpoint file (.pt, .pkl, .bin) or an adapter (.py)"
        )
    if path.suffix == ".py":
        from engine.models.adapter import load_adapter

        return load_adapter(path).to(dev).eval()
    candidates = [f for f in _FORMATS if path.suffix.lower() in f.suffixes]
    for fmt in candidates:
        if fmt.probe(path):
            gen = fmt.load(path)
            gen.source = str(path)
            return gen.to(dev).eval()
    if candidates:
        from engine.checkpoints.torchfile import refusal  # lazy: the checkpoint modules import this one

        why = refusal(path)  # e.g. a torch archive with compressed records: say so, not "unrecognised"
        if why is not None:
            raise CheckpointError(f"{path}: {why}")
    known = "; ".join(f"{f.name} ({', '.join(f.suffixes)})" for f in _FORMATS)
    if not candidates:
        raise CheckpointError(
            f"{path}: unsupported file type '{path.suffix}'; supported formats: {known}, adapter (.py)"
        )
    raise CheckpointError(f"{path}: not recognised as any supported checkpoint format ({known})")
