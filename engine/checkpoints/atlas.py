"""GAN Atlas's own StyleGAN2 checkpoint: configuration + state dict in one torch file.

Layout (``torch.save`` of plain data, read by ``torchfile.open_torch_file``: no code run)::

    {"format": "gan-atlas-stylegan2", "version": 1,
     "config": StyleGAN2Config.to_dict(), "state_dict": StyleGAN2Generator.state_dict(),
     "w_avg_source": str, "meta": {...plain data: training command, dataset, steps...}}

This is what the project's own trained generators are saved as (``save_stylegan2``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from engine.checkpoints.torchfile import (
    StateMismatch,
    check_model_size,
    load_into,
    open_torch_file,
    pickle_strings,
    short_reason,
    show,
)
from engine.errors import AtlasError, CheckpointError
from engine.hashing import file_sha256
from engine.models.registry import CheckpointFormat, register_format
from engine.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator

FORMAT = "gan-atlas-stylegan2"
VERSION = 1


def save_stylegan2(
    gen: StyleGAN2Generator, path: str | Path, *, meta: dict | None = None, dtype: torch.dtype | None = None
) -> Path:
    """Write ``gen`` (config, weights, w_avg) to ``path`` atomically; ``meta`` must be plain data.

    ``dtype`` (e.g. ``torch.float16``) stores the floating-point weights compactly; ``w_avg``
    stays float32 and loading casts everything back to float32.
    """
    path = Path(path)
    state = {k: v.detach().to("cpu").clone() for k, v in gen.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() and k != "w_avg" else v for k, v in state.items()}
    blob = {
        "format": FORMAT,
        "version": VERSION,
        "config": gen.config.to_dict(),
        "state_dict": state,
        "w_avg_source": gen.w_avg_source,
        "meta": dict(meta or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return path


def load_stylegan2(path: str | Path) -> StyleGAN2Generator:
    """A ``StyleGAN2Generator`` (eval mode, CPU) from a file written by ``save_stylegan2``."""
    path = Path(path)
    tf = open_torch_file(path, what="GAN Atlas StyleGAN2 checkpoint")
    blob, stats = tf.obj, tf.stats
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint")
    if blob.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: {FORMAT} version {show(blob.get('version'))} is not supported (this program reads {VERSION})"
        )
    try:
        cfg = StyleGAN2Config.from_dict(blob["config"])
    except (KeyError, TypeError, ValueError, AttributeError, AtlasError) as exc:
        raise CheckpointError(f"{path}: damaged configuration ({short_reason(exc)})") from None
    state = blob.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"{path}: 'state_dict' is not a dict of named tensors")
    check_model_size(cfg.state_numel(), stats, path, f"{cfg.resolution}px generator")
    w_avg_source, meta = blob.get("w_avg_source", "stored in the checkpoint"), blob.get("meta") or {}
    if not isinstance(w_avg_source, str) or not isinstance(meta, dict):
        raise CheckpointError(f"{path}: damaged description ('w_avg_source' must be text, 'meta' a dict)")
    gen = StyleGAN2Generator(cfg, name=path.stem)
    try:
        load_into(gen, state)  # one tensor at a time, each cast to float32 (files may store float16)
    except StateMismatch as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored configuration ({exc})") from None
    gen.w_avg_source = w_avg_source[:200]
    gen.meta = dict(meta)
    gen.format = FORMAT
    gen.identity = file_sha256(path)
    gen.source = str(path)
    return gen.eval()


def probe_atlas(path: Path) -> bool:
    strings = pickle_strings(path)
    return strings is not None and FORMAT in strings and "state_dict" in strings


register_format(CheckpointFormat(FORMAT, (".pt", ".pth"), probe_atlas, load_stylegan2))
