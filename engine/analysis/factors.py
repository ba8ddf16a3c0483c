"""What the ground-truth analyses need from a factor regressor, and the procedural one.

A ``FactorModel`` reads known generative factors back from images: ``predict(images [B, C, H, W]
in [-1, 1]) -> [B, F]`` in the order of ``names``; optionally ``features(images) -> [B, D]``,
the regressor's penultimate activations, which the realism analysis uses as a feature space
that needs no downloaded network; ``scale`` (optional) is each factor's standard deviation in
the data, the yardstick of the ground-truth score. ``procedural_factors()`` wraps the shipped regressor of the
procedural face set (``engine.data.regressor``); tests build exact ones for synthetic generators.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from engine.errors import AtlasError


@dataclass
class FactorModel:
    """Factor names, a predictor ``[B, C, H, W] -> [B, F]`` and optionally a feature map ``-> [B, D]``."""

    names: tuple[str, ...]
    predict: Callable[[torch.Tensor], torch.Tensor]
    features: Callable[[torch.Tensor], torch.Tensor] | None = None
    label: str = ""
    scale: tuple[float, ...] | None = None  # each factor's standard deviation in the training data, if known


def penultimate(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> the input of module's last nn.Linear`` (the regressor's penultimate features), flattened."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise AtlasError(f"{type(module).__name__} has no linear layer whose input could serve as features")
    last = linears[-1]

    @torch.no_grad()
    def features(x: torch.Tensor) -> torch.Tensor:
        seen: list[torch.Tensor] = []
        handle = last.register_forward_hook(lambda _m, inp, _out: seen.append(inp[0]))
        try:
            module(x)
        finally:
            handle.remove()
        return seen[-1].flatten(1)

    return features


def procedural_factors(path: str | Path | None = None, device: str | torch.device = "cpu") -> FactorModel:
    """The shipped factor regressor of the procedural face set (or the one at ``path``)."""
    try:
        from engine.data.procedural import FACTOR_NAMES
        from engine.data.regressor import load_regressor, predict_factors
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("engine.data"):
            raise AtlasError(
                "this build has no procedural factor regressor (engine.data.regressor); ground-truth scores need it"
            ) from None
        raise
    reg = load_regressor(path, device)
    metrics = getattr(reg, "metrics", {}) or {}
    label = f"factor regressor {Path(path).name if path else 'procedural (built-in)'}"
    if metrics:
        label += " (held-out metrics recorded)"
    # the procedural factors are stored normalised and drawn uniformly on [0, 1]: std 1/sqrt(12)
    scale = (1.0 / 12**0.5,) * len(FACTOR_NAMES)
    return FactorModel(tuple(FACTOR_NAMES), lambda x: predict_factors(x, reg), penultimate(reg), label, scale)
