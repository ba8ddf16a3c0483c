"""A small CNN that reads the procedural factors back from an image.

``predict_factors(images)`` is the API the analyses use to score directions against the ground
truth: images ``[B, 3, H, W]`` in [-1, 1] (any H = W; resized to the regressor's resolution)
-> ``[B, 8]`` normalised factors in ``FACTOR_NAMES`` order (0..1 over the training range; a
generator may push them slightly outside).

Weights are a plain ``torch.save`` dict (``format``, ``version``, ``config``, ``state_dict`` in
float16, ``metrics``) read by ``torchfile.read_torch_file`` (weights only): loading never runs code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.checkpoints.torchfile import read_torch_file
from engine.data.procedural import FACTOR_NAMES, N_FACTORS, ProceduralFaces
from engine.errors import CheckpointError, describe_exception

REGRESSOR_FORMAT = "gan-atlas-procedural-regressor"
REGRESSOR_VERSION = 1
BUILTIN_REGRESSOR = Path(__file__).resolve().parents[2] / "resources" / "models" / "procedural_regressor.pt"
HELD_OUT_SEED = 1_000_003  # the evaluation set; training streams never use this seed


@dataclass(frozen=True)
class RegressorConfig:
    """Architecture: ``len(widths)`` stride-2 stages (two 3x3 convs each) then a linear head."""

    resolution: int = 32
    widths: tuple[int, ...] = (16, 32, 64, 128)
    n_factors: int = N_FACTORS

    @staticmethod
    def from_dict(d: dict) -> RegressorConfig:
        return RegressorConfig(int(d["resolution"]), tuple(int(w) for w in d["widths"]), int(d["n_factors"]))


class FactorRegressor(nn.Module):
    """``images [B, 3, R, R]`` in [-1, 1] -> ``[B, n_factors]`` normalised factors."""

    def __init__(self, cfg: RegressorConfig = RegressorConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        cin = 3
        for w in cfg.widths:
            layers += [
                nn.Conv2d(cin, w, 3, 1, 1),
                nn.BatchNorm2d(w),
                nn.SiLU(),
                nn.Conv2d(w, w, 3, 2, 1),
                nn.BatchNorm2d(w),
                nn.SiLU(),
            ]
            cin = w
        self.features = nn.Sequential(*layers)
        side = cfg.resolution // 2 ** len(cfg.widths)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(cin * side * side, 256), nn.SiLU(), nn.Linear(256, cfg.n_factors)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        R = self.cfg.resolution
        if images.shape[-1] != R or images.shape[-2] != R:
            images = F.interpolate(
                images,
                size=(R, R),
                mode="area" if images.shape[-1] > R else "bilinear",
                align_corners=None if images.shape[-1] > R else False,
            )
        return self.head(self.features(images))


def regressor_payload(model: FactorRegressor, metrics: dict | None = None) -> dict:
    """The dict ``save`` writes: config, float16 weights, factor names and held-out metrics."""
    state = {
        k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
        for k, v in model.state_dict().items()
    }
    return {
        "format": REGRESSOR_FORMAT,
        "version": REGRESSOR_VERSION,
        "config": asdict(model.cfg),
        "factor_names": list(FACTOR_NAMES),
        "state_dict": state,
        "metrics": metrics or {},
    }


def load_regressor(path: str | Path | None = None, device: str | torch.device = "cpu") -> FactorRegressor:
    """The regressor in ``path`` (default: the shipped one), in eval mode on ``device``."""
    path = Path(path) if path is not None else BUILTIN_REGRESSOR
    if not path.is_file():
        raise CheckpointError(
            f"{path}: factor regressor weights not found (train them with "
            "'python main.py train --data procedural --regressor --out PATH')"
        )
    ckpt = read_torch_file(path, what="factor regressor file")  # weights only: no code from the file runs
    if not isinstance(ckpt, dict) or ckpt.get("format") != REGRESSOR_FORMAT:
        raise CheckpointError(f"{path}: not a GAN Atlas factor regressor (no format '{REGRESSOR_FORMAT}')")
    if ckpt.get("version") != REGRESSOR_VERSION:
        raise CheckpointError(
            f"{path}: regressor format version {ckpt.get('version')} is not supported "
            f"(this program reads version {REGRESSOR_VERSION})"
        )
    if list(ckpt.get("factor_names", [])) != list(FACTOR_NAMES):
        raise CheckpointError(
            f"{path}: the regressor predicts factors {ckpt.get('factor_names')}, "
            f"not this program's {list(FACTOR_NAMES)}"
        )
    try:
        model = FactorRegressor(RegressorConfig.from_dict(ckpt["config"]))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: regressor weights do not fit their config ({describe_exception(exc)})"
        ) from None
    model.metrics = dict(ckpt.get("metrics", {}))
    return model.to(device).eval()


_CACHE: dict[tuple[str, str], FactorRegressor] = {}


@torch.no_grad()
def predict_factors(
    images: torch.Tensor, regressor: FactorRegressor | None = None, batch_size: int = 256
) -> torch.Tensor:
    """Normalised factors ``[B, 8]`` (``FACTOR_NAMES`` order) of images ``[B, 3, H, W]`` in [-1, 1].

    Uses the shipped regressor unless one is given; runs on the images' device.
    """
    if regressor is None:
        key = (str(BUILTIN_REGRESSOR), str(images.device))
        if key not in _CACHE:
            _CACHE[key] = load_regressor(BUILTIN_REGRESSOR, images.device)
        regressor = _CACHE[key]
    regressor.eval()
    dev = next(regressor.parameters()).device
    outs = [
        regressor(images[i : i + batch_size].to(dev, torch.float32)).to(images.device)
        for i in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(outs) if outs else torch.zeros(0, N_FACTORS, device=images.device)


def factor_scores(pred: np.ndarray, true: np.ndarray) -> dict[str, dict[str, float]]:
    """Per-factor ``r2`` (1 - SSE / SST) and ``mae`` (in normalised units) of ``pred`` vs ``true [N, 8]``."""
    out = {}
    for k, name in enumerate(FACTOR_NAMES):
        err = pred[:, k] - true[:, k]
        sst = float(((true[:, k] - true[:, k].mean()) ** 2).sum())
        out[name] = {"r2": 1.0 - float((err**2).sum()) / max(sst, 1e-12), "mae": float(np.abs(err).mean())}
    return out


def held_out_set(n: int = 4096, resolution: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, factors)`` of the evaluation set: items 0..n-1 of the held-out seed."""
    return ProceduralFaces(n, seed=HELD_OUT_SEED, resolution=resolution).batch(np.arange(n))


def evaluate(
    model: FactorRegressor, n: int = 4096, resolution: int | None = None, data: Iterable | None = None
) -> dict[str, dict[str, float]]:
    """Held-out R^2 and MAE per factor (``factor_scores``) on ``n`` images never trained on."""
    images, factors = data if data is not None else held_out_set(n, resolution or model.cfg.resolution)
    pred = predict_factors(images, model)
    return factor_scores(pred.cpu().numpy(), factors.cpu().numpy())
