"""Ground-truth score: how cleanly each direction moves one known factor.

On a model whose images come from known factors (the built-in procedural StyleGAN2) a factor
regressor reads the factors back from every image. For direction k, each of ``seeds`` latents
z_m is rendered at ``steps`` shifts t_s over the direction's range, and the response of factor
f is ``r_mfs = f(G_t(z_m)) - f(G(z_m))``. Then:

* **effect** ``E[k, f] = mean_m |slope_mf| * (t_max - t_min) / scale_f``: the least-squares slope
  of the response against t (through the points (t_s, r_s) and (0, 0)), i.e. the mean
  ``|d factor / d t|``, times the width of the range: how far the factor moves across the range,
  in units of ``scale_f``. ``scale_f`` is the factor's standard deviation in the training data
  when the factor model gives it (procedural factors are uniform on [0, 1]: 1/sqrt(12)),
  otherwise its standard deviation over the model's unedited samples.
* **purity** ``P[k] = max_f E[k, f] / sum_f E[k, f]``: the share of the direction's effect that
  falls on its main factor (1 = moves only that factor; 1/F = spreads evenly over F factors).
* a direction is **clean** when ``P >= purity_threshold`` (default 0.7: the main factor moves at
  least 2.3 times as much as all the others together, so an even mix of two factors, P ~ 0.5,
  is not clean) and its main effect is ``>= min_effect`` (default 0.25 standard
  deviations: the noise floor, several times the regressor's own error on generated images, so
  regressor noise and jitter alone do not count as an effect).
* a set's **coverage** is the number of factors that some clean direction has as its main factor.

A slope ignores responses that go up at both ends of the range; such edits are not clean
controls of a factor, so this is intended.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.analysis.factors import FactorModel, procedural_factors
from engine.analysis.registry import AnalysisSpec, register_analysis
from engine.analysis.results import AnalysisResult, register_result
from engine.analysis.sampling import (
    check_fits,
    directions_of,
    latents,
    render_pieces,
    shift_grid,
    shift_range,
    shift_rows,
    unedited_rows,
)
from engine.directions import DirectionSet
from engine.errors import AtlasError
from engine.jobs import Pacer, Progress
from engine.params import validate_params


@dataclass(frozen=True)
class Params:
    seeds: int = field(
        default=64, metadata={"help": "latents z each direction is measured on", "min": 1, "max": 1_000_000}
    )
    steps: int = field(default=9, metadata={"help": "shifts t across each direction's range", "min": 2, "max": 1001})
    t_max: float | None = field(
        default=None, metadata={"help": "use [-t_max, t_max] instead of each direction's range", "min": 0.0}
    )
    purity_threshold: float = field(
        default=0.7,
        metadata={
            "help": "a clean direction puts at least this share of its effect on one factor",
            "min": 0.0,
            "max": 1.0,
        },
    )
    min_effect: float = field(
        default=0.25,
        metadata={
            "help": "noise floor: a clean direction moves its factor by at least this many standard deviations",
            "min": 0.0,
        },
    )
    psi: float = field(default=1.0, metadata={"help": "truncation (style models)"})
    batch_size: int = field(default=64, metadata={"help": "images per forward pass", "min": 1, "max": 4096})
    seed: int = field(default=0, metadata={"help": "seed of the latents"})

    def __post_init__(self) -> None:
        validate_params(self)


@register_result
@dataclass
class ScoreResult(AnalysisResult):
    """Effects ``[K, F]`` of K directions on F factors, purity, main factor and coverage."""

    kind = "score"
    method: str
    model: str
    set_title: str
    factor_names: list[str]
    indices: list[int]
    labels: list[str]
    effect: np.ndarray  # [K, F] in factor standard deviations across the range
    purity: np.ndarray  # [K]
    main_factor: np.ndarray  # [K] index into factor_names
    clean: np.ndarray  # [K] bool
    shifts: np.ndarray  # [K, S]
    response: np.ndarray  # [K, S, F] mean over seeds of (f(t) - f(0)) / scale_f
    factor_scale: np.ndarray  # [F]
    purity_threshold: float
    min_effect: float
    seeds: int
    regressor: str = ""

    @property
    def covered(self) -> list[str]:
        """Factors that some clean direction moves (its main factor), in factor order."""
        hit = {int(f) for f, c in zip(self.main_factor, self.clean) if c}
        return [n for i, n in enumerate(self.factor_names) if i in hit]

    @property
    def coverage(self) -> int:
        return len(self.covered)

    def best_per_factor(self) -> list[tuple[str, int | None, float, float]]:
        """Per factor: (name, best clean direction index or None, its purity, its effect on the factor)."""
        out = []
        for f, name in enumerate(self.factor_names):
            cands = [i for i in range(len(self.indices)) if self.clean[i] and self.main_factor[i] == f]
            if not cands:
                out.append((name, None, 0.0, 0.0))
                continue
            i = max(cands, key=lambda j: (self.purity[j], self.effect[j, f]))
            out.append((name, self.indices[i], float(self.purity[i]), float(self.effect[i, f])))
        return out

    def summary(self) -> dict:
        """Plain numbers for a per-method comparison table."""
        return {
            "method": self.method,
            "directions": len(self.indices),
            "clean": int(np.sum(self.clean)),
            "coverage": self.coverage,
            "factors": len(self.factor_names),
            "mean_purity": float(np.mean(self.purity)) if len(self.purity) else 0.0,
            "covered": self.covered,
        }

    def draw(self, path: Path) -> Path:
        """The PNG figure of this result at ``path``."""
        from engine.analysis import plots

        K, F = self.effect.shape
        fig = plots.figure(1.2 + 0.75 * F, 1.4 + 0.32 * K)
        ax = fig.add_subplot()
        im = ax.imshow(self.effect, cmap="viridis", aspect="auto", interpolation="nearest")
        ax.set_xticks(range(F), self.factor_names, rotation=40, ha="right", fontsize=8)
        ax.set_yticks(
            range(K),
            [
                f"{plots.direction_name(self, i)}  p={self.purity[i]:.2f}" + (" *" if self.clean[i] else "")
                for i in range(K)
            ],
            fontsize=7,
        )
        fig.colorbar(im, ax=ax, label="effect (factor std across the range)")
        ax.set_title(
            f"Ground truth: {self.set_title} ({self.method}); coverage {self.coverage}/{F}  (* clean)", fontsize=9
        )
        return plots.save_figure(fig, path)


def slopes(t: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Least-squares slopes of ``r [..., S, F]`` against ``t [S]`` through the points and (0, 0)."""
    tt = np.concatenate([[0.0], t])
    rr = np.concatenate([np.zeros_like(r[..., :1, :]), r], axis=-2)
    tc = tt - tt.mean()
    rc = rr - rr.mean(axis=-2, keepdims=True)
    return np.einsum("s,...sf->...f", tc, rc) / float(np.sum(tc**2))


def purity_of(effect: np.ndarray) -> np.ndarray:
    """``max_f E / sum_f E`` per row of ``effect [K, F]`` (0 for a direction with no effect)."""
    total = effect.sum(axis=1)
    return np.where(total > 0, effect.max(axis=1) / np.maximum(total, 1e-30), 0.0)


def run(
    gen,
    dirset: DirectionSet,
    indices: Sequence[int] | None,
    params: Params = Params(),
    *,
    factors: FactorModel | None = None,
) -> Iterator[Progress]:
    """Job: the ground-truth score of the directions ``indices`` (all when None) of ``dirset``.

    ``factors`` defaults to the procedural factor regressor. Returns a ``ScoreResult``.
    """
    if params.seeds < 2:
        raise AtlasError(f"score needs at least 2 seeds, got {params.seeds}")
    if params.steps < 2:
        raise AtlasError(f"score needs at least 2 shifts per direction, got {params.steps}")
    check_fits(gen, dirset)
    dirs = directions_of(dirset, indices)
    z = latents(gen, params.seeds, params.seed, param="seeds")
    factors = factors or procedural_factors(device=gen.device)
    F = len(factors.names)
    M = z.shape[0]
    pacer = Pacer(params.batch_size, device=gen.device)
    total = M * (1 + len(dirs) * params.steps)  # images
    done = 0
    yield Progress(done, total, stage="unedited samples")
    parts = []
    for _, imgs in render_pieces(gen, M, unedited_rows(z), pacer, psi=params.psi):
        parts.append(_predict(factors, imgs))
        done += imgs.shape[0]
        yield Progress(done, total, stage="unedited samples")
    base = np.concatenate(parts)  # [M, F]
    if base.shape[1] != F:
        raise AtlasError(f"the factor model predicts {base.shape[1]} factors but names {F}")
    fixed = getattr(factors, "scale", None)
    scale = np.asarray(fixed, dtype=np.float64) if fixed is not None else base.std(axis=0, ddof=1)
    scale = np.maximum(scale, 1e-6)

    effects, responses, grids = [], [], []
    for k, d in dirs:
        lo, hi = shift_range(d, params.t_max)
        ts = shift_grid(d, params.steps, params.t_max)
        parts = []
        for _, imgs in render_pieces(gen, M * len(ts), shift_rows(z, d, ts), pacer, psi=params.psi):
            parts.append(_predict(factors, imgs))
            done += imgs.shape[0]
            yield Progress(done, total, stage="directions", message=f"direction {k}")
        pred = np.concatenate(parts).reshape(M, len(ts), F)
        r = (pred - base[:, None, :]) / scale  # [M, S, F]
        eff = np.abs(slopes(ts, r)).mean(axis=0) * (hi - lo)  # [F]
        effects.append(eff)
        responses.append(r.mean(axis=0))
        grids.append(ts)
        pur = purity_of(eff[None])[0]
        yield Progress(
            done,
            total,
            stage="directions",
            metrics={"purity": float(pur), "effect": float(eff.max())},
            message=f"direction {k}: purity {pur:.2f} on {factors.names[int(eff.argmax())]}",
        )

    effect = np.stack(effects)
    purity = purity_of(effect)
    main = effect.argmax(axis=1)
    clean = (purity >= params.purity_threshold) & (effect.max(axis=1) >= params.min_effect)
    return ScoreResult(
        method=dirset.method,
        model=str(dirset.model.get("name", gen.name)),
        set_title=dirset.title,
        factor_names=list(factors.names),
        indices=[k for k, _ in dirs],
        labels=[dirset.directions[k].label for k, _ in dirs],
        effect=effect,
        purity=purity,
        main_factor=main.astype(np.int64),
        clean=clean,
        shifts=np.stack(grids),
        response=np.stack(responses),
        factor_scale=scale,
        purity_threshold=params.purity_threshold,
        min_effect=params.min_effect,
        seeds=params.seeds,
        regressor=factors.label,
    )


def _predict(factors: FactorModel, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return factors.predict(images).detach().double().cpu().numpy()


register_analysis(
    AnalysisSpec("score", Params, run, "ground-truth purity and coverage", ScoreResult, needs_factors=True)
)
