"""PNG figures of analysis results (matplotlib's Agg canvas: no window, no Qt).

Shared helpers for the ``draw`` methods of the result classes (each analysis module draws its own
result); ``plot_result(result, path)`` draws any result. The CLI writes the PNG beside the JSON/NPZ.
The desktop editor draws the same results live with pyqtgraph instead (desktop/analysis_views.py).
"""

from __future__ import annotations

from pathlib import Path

HEATMAP_CMAP = "inferno"


def figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def direction_name(result, i: int) -> str:
    label = result.labels[i] if i < len(result.labels) and result.labels[i] else ""
    return f"{result.indices[i]}" + (f" {label}" if label else "")


def save_figure(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_result(result, path: Path) -> Path:
    """Draw any analysis result as a PNG at ``path`` (its own ``draw``)."""
    return result.draw(Path(path))
