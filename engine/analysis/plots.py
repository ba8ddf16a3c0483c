"""PNG figures of analysis results (matplotlib's Agg canvas: no window, no Qt).

``plot_result(result, path)`` draws any result; the CLI writes it beside the JSON/NPZ numbers.
The desktop editor draws the same results live with pyqtgraph instead (desktop/analysis_views.py).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

HEATMAP_CMAP = "inferno"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _name(result, i: int) -> str:
    label = result.labels[i] if i < len(result.labels) and result.labels[i] else ""
    return f"{result.indices[i]}" + (f" {label}" if label else "")


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_curves(r, path: Path) -> Path:
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot()
    for i in range(len(r.indices)):
        t, m, s = r.shifts[i], r.mean[i], r.std[i]
        (line,) = ax.plot(t, m, marker="o", ms=3, label=_name(r, i))
        ax.fill_between(t, m - s, m + s, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("shift t")
    ax.set_ylabel(f"distance ({r.distance})")
    ax.set_title(
        f"Effect curves: {r.set_title} ({r.method}) on {r.model}, mean ± std over {r.seeds} latents\n"
        + textwrap.fill(r.distance_label, 90),
        fontsize=8,
    )
    ax.grid(alpha=0.3)
    if len(r.indices) <= 12:
        ax.legend(title="direction", fontsize=7)
    return _save(fig, path)


def plot_locality(r, path: Path) -> Path:
    K = len(r.indices)
    fig = _figure(8.4, 2.9 * K)
    for i in range(K):
        lo, hi = r.shift_range[i]
        ax0, ax1, ax2 = (fig.add_subplot(K, 3, 3 * i + j + 1) for j in range(3))
        ax0.imshow(r.example[i, 0], interpolation="nearest")
        ax0.set_title(f"direction {_name(r, i)}: original", fontsize=8)
        ax1.imshow(r.example[i, 1], interpolation="nearest")
        ax1.set_title(f"edited, t = {hi:+.3g}", fontsize=8)
        im = ax2.imshow(r.heatmap[i], cmap=HEATMAP_CMAP, interpolation="nearest")
        ax2.set_title(
            f"mean squared difference\n{r.samples} z x {r.shifts_per_sample} t ~ U[{lo:.3g}, {hi:.3g}]; "
            f"top-10% share {r.concentration[i]:.2f}",
            fontsize=7,
        )
        fig.colorbar(im, ax=ax2, fraction=0.046, pad=0.04)
        for ax in (ax0, ax1, ax2):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"Locality: {r.set_title} ({r.method}) on {r.model}", fontsize=9)
    return _save(fig, path)


def plot_realism(r, path: Path) -> Path:
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot()
    for i in range(len(r.indices)):
        ax.plot(r.shifts[i], r.distance[i], marker="o", ms=3, label=_name(r, i))
    ax.set_xlabel("shift t")
    ax.set_ylabel("FID" if r.features == "inception" else "Fréchet distance")
    ax.set_title(
        f"Realism vs shift: {r.features_label}\n{r.samples} edited vs {r.reference} unedited samples; "
        f"t = 0 is the sampling floor",
        fontsize=8,
    )
    ax.grid(alpha=0.3)
    if len(r.indices) <= 12:
        ax.legend(title="direction", fontsize=7)
    return _save(fig, path)


def plot_reproduce(r, path: Path) -> Path:
    K = len(r.indices)
    N = r.examples.shape[2]
    fig = _figure(10.0, 3.2 * K)
    sub = fig.subfigures(K, 1, squeeze=False)[:, 0]
    for i in range(K):
        left, right = sub[i].subfigures(1, 2, width_ratios=[1, 1.4])
        ax = left.add_subplot()
        ax.plot(np.arange(1, len(r.loss_curve[i]) + 1), r.loss_curve[i], lw=0.8)
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.axhline(r.residual[i], color="C3", lw=0.8, label=f"held-out residual {r.residual[i]:.3f}")
        ax.set_xlabel("Adam step")
        ax.set_ylabel("relative loss")
        ax.set_ylim(0, max(1.1, float(np.nanmax(r.loss_curve[i])) * 1.05))
        ax.legend(fontsize=7)
        ax.set_title(f"direction {_name(r, i)}, t = {r.t[i]:+.3g}, h in {r.space}", fontsize=8)
        axes = right.subplots(3, N, squeeze=False)
        for row, title in enumerate(("original", "param. edit", "G(z + h)")):
            for c in range(N):
                a = axes[row, c]
                a.imshow(r.examples[i, row, c], interpolation="nearest")
                a.set_xticks([])
                a.set_yticks([])
            axes[row, 0].set_ylabel(title, fontsize=7)
    fig.suptitle(
        f"Can a latent shift reproduce the edit? {r.set_title} ({r.method}) on {r.model} "
        f"(0 = exactly, 1 = no better than nothing)",
        fontsize=9,
    )
    return _save(fig, path)


def plot_score(r, path: Path) -> Path:
    K, F = r.effect.shape
    fig = _figure(1.2 + 0.75 * F, 1.4 + 0.32 * K)
    ax = fig.add_subplot()
    im = ax.imshow(r.effect, cmap="viridis", aspect="auto", interpolation="nearest")
    ax.set_xticks(range(F), r.factor_names, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(
        range(K), [f"{_name(r, i)}  p={r.purity[i]:.2f}" + (" *" if r.clean[i] else "") for i in range(K)], fontsize=7
    )
    fig.colorbar(im, ax=ax, label="effect (factor std across the range)")
    ax.set_title(f"Ground truth: {r.set_title} ({r.method}); coverage {r.coverage}/{F}  (* clean)", fontsize=9)
    return _save(fig, path)


def plot_result(result, path: Path) -> Path:
    """Draw any analysis result as a PNG at ``path``."""
    fn = {
        "curves": plot_curves,
        "locality": plot_locality,
        "realism": plot_realism,
        "reproduce": plot_reproduce,
        "score": plot_score,
    }[result.kind]
    return fn(result, path)
