"""Realism vs shift: the Fréchet distance between edited and unedited samples, as t grows.

For each shift t of a direction's range, ``samples`` latents are rendered edited by t and
compared with ``reference`` *other* latents rendered unedited, by the Fréchet distance of
Gaussians fitted to their features (Heusel et al. 2017):
``FD = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1^1/2 S_2 S_1^1/2)^1/2)``.
Because the two sets use different latents, the value at t = 0 is the sampling floor of that
sample size, not 0: compare other shifts with it. Small-sample FID is biased upwards (the paper
used 50 000 images); compare values computed with the same sizes only.

Feature networks:

* ``inception``: the FID Inception network of ``pytorch-fid`` (pool3, 2048-d), i.e. real FID.
  Its weights file ``pt_inception-2015-12-05-6726825d.pth`` must already be in the torch hub
  cache (``<torch hub dir>/checkpoints``); it is read by ``torchfile.read_torch_file`` (weights only)
  and never downloaded here. Without it the job stops with a message naming file and folder.
* ``regressor``: the penultimate activations of the procedural factor regressor, a feature
  distance for the procedural model that needs no download (not comparable with FID values).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
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
    shift_rows,
    unedited_rows,
)
from engine.checkpoints.torchfile import read_torch_file
from engine.directions import DirectionSet
from engine.errors import AtlasError
from engine.jobs import Pacer, Progress, wait_for
from engine.params import validate_params

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FEATURES = ("inception", "regressor")

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Params:
    samples: int = field(
        default=1000, metadata={"help": "edited samples per shift (paper: 50000)", "min": 2, "max": 1_000_000}
    )
    reference: int = field(
        default=1000, metadata={"help": "unedited samples of other latents", "min": 2, "max": 1_000_000}
    )
    steps: int = field(
        default=7, metadata={"help": "shifts t over each direction's range (odd: includes 0)", "min": 2, "max": 1001}
    )
    t_max: float | None = field(
        default=None, metadata={"help": "use [-t_max, t_max] instead of each direction's range", "min": 0.0}
    )
    features: str = field(default="inception", metadata={"help": "feature network", "choices": FEATURES})
    psi: float = field(default=1.0, metadata={"help": "truncation (style models)"})
    batch_size: int = field(default=50, metadata={"help": "images per forward pass", "min": 1, "max": 4096})
    seed: int = field(default=0, metadata={"help": "seed of the latents"})

    def __post_init__(self) -> None:
        validate_params(self)


@register_result
@dataclass
class RealismResult(AnalysisResult):
    """``distance[k, s]``: Fréchet distance of direction k's samples edited by ``shifts[k, s]``."""

    kind = "realism"
    method: str
    model: str
    set_title: str
    indices: list[int]
    labels: list[str]
    features: str
    features_label: str
    samples: int
    reference: int
    shifts: np.ndarray  # [K, S]
    distance: np.ndarray  # [K, S]

    def draw(self, path: Path) -> Path:
        """The PNG figure of this result at ``path``."""
        from engine.analysis import plots

        fig = plots.figure(6.4, 4.2)
        ax = fig.add_subplot()
        for i in range(len(self.indices)):
            ax.plot(self.shifts[i], self.distance[i], marker="o", ms=3, label=plots.direction_name(self, i))
        ax.set_xlabel("shift t")
        ax.set_ylabel("FID" if self.features == "inception" else "Fréchet distance")
        ax.set_title(
            f"Realism vs shift: {self.features_label}\n{self.samples} edited vs {self.reference} unedited samples; "
            f"t = 0 is the sampling floor",
            fontsize=8,
        )
        ax.grid(alpha=0.3)
        if len(self.indices) <= 12:
            ax.legend(title="direction", fontsize=7)
        return plots.save_figure(fig, path)

    def report_lines(self) -> list[str]:
        """The numbers worth printing, one line per direction."""
        lines = []
        for i, k in enumerate(self.indices):
            name = f"direction {k}" + (f" ({self.labels[i]})" if self.labels[i] else "")
            pts = ", ".join(f"{t:+.3g}: {v:.4g}" for t, v in zip(self.shifts[i], self.distance[i]))
            lines.append(f"{name}: {self.features_label} by t  {pts}")
        return lines


def fid_weights_path() -> Path:
    """Where the FID Inception weights must be: ``<torch hub dir>/checkpoints/pt_inception-...pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILE


def missing_inception_message(path: Path) -> str:
    try:
        from pytorch_fid.inception import FID_WEIGHTS_URL as url
    except ImportError:
        url = "the pytorch-fid project's releases"
    return (
        f"FID needs the Inception weights file {path.name} in the folder {path.parent}, and it is not there. "
        f"Copy it there from {url} (it is pytorch-fid's FID Inception network); or use "
        f"features 'regressor' on the procedural model (a feature distance that needs no download), "
        f"e.g. --features regressor"
    )


def inception_features(device: torch.device | str = "cpu", path: Path | None = None) -> FeatureFn:
    """``images [B, C, H, W] in [-1, 1] -> [B, 2048]`` pool3 features of the FID Inception network.

    Reads the weights from ``path`` (default ``fid_weights_path()``) without running code from it;
    raises ``AtlasError`` naming the missing file and where it goes.
    """
    path = Path(path) if path is not None else fid_weights_path()
    if not path.is_file():
        raise AtlasError(missing_inception_message(path))
    try:
        state = read_torch_file(path, what="FID Inception weights file")  # weights only, no code run
    except AtlasError as exc:  # a damaged file is the user's to replace
        raise AtlasError(
            f"{path}: cannot read the FID Inception weights ({str(exc).removeprefix(f'{path}: ')})"
        ) from None
    import pytorch_fid.inception as fid_inception

    # pytorch-fid fetches its weights by URL inside fid_inception_v3(); hand it the file read above
    original = fid_inception.load_state_dict_from_url
    fid_inception.load_state_dict_from_url = lambda *_a, **_k: state
    try:
        net = fid_inception.InceptionV3(
            [fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]],
            resize_input=True,
            normalize_input=False,
            use_fid_inception=True,
        )
    finally:
        fid_inception.load_state_dict_from_url = original
    net = net.to(device).eval()

    @torch.no_grad()
    def features(x: torch.Tensor) -> torch.Tensor:
        x = x.clamp(-1, 1)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return net(x.to(device))[0].flatten(1)

    features.label = f"FID (Inception pool3, {path.name})"
    return features


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """Fréchet distance of N(mu1, s1) and N(mu2, s2) (float64; symmetric square roots via eigh)."""
    s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
    lam, vec = np.linalg.eigh((s1 + s1.T) / 2)
    root1 = (vec * np.sqrt(np.clip(lam, 0, None))) @ vec.T
    mid = root1 @ s2 @ root1
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((mid + mid.T) / 2), 0, None)).sum()
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * cross)


class _Moments:
    """Running mean and covariance of feature rows (float64)."""

    def __init__(self) -> None:
        self.n, self.sum, self.outer = 0, None, None

    def add(self, f: torch.Tensor) -> None:
        f = f.detach().double().cpu()
        if self.sum is None:
            self.sum, self.outer = (
                torch.zeros(f.shape[1], dtype=torch.float64),
                torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64),
            )
        self.n += f.shape[0]
        self.sum += f.sum(0)
        self.outer += f.T @ f

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        mu = self.sum / self.n
        cov = (self.outer - self.n * torch.outer(mu, mu)) / max(1, self.n - 1)
        return mu.numpy(), cov.numpy()


def resolve_features(name: str, device, factors: FactorModel | None = None) -> tuple[FeatureFn, str]:
    if name == "inception":
        fn = inception_features(device)
        return fn, fn.label
    if name == "regressor":
        factors = factors or procedural_factors(device=device)
        if factors.features is None:
            raise AtlasError("the factor model has no penultimate features to compare")
        return factors.features, f"Fréchet distance in the penultimate features of the {factors.label} (not FID)"
    raise AtlasError(f"unknown feature network '{name}'; choose one of {', '.join(FEATURES)}")


def run(
    gen,
    dirset: DirectionSet,
    indices: Sequence[int] | None,
    params: Params = Params(),
    *,
    features: FeatureFn | None = None,
    features_label: str = "",
    factors: FactorModel | None = None,
) -> Iterator[Progress]:
    """Job: realism vs shift for directions ``indices`` (all when None). Returns a ``RealismResult``.

    ``features`` (``images -> [B, D]``) overrides ``params.features`` (tests, other networks).
    """
    if params.samples < 2 or params.reference < 2:
        raise AtlasError(
            f"realism needs at least 2 samples and 2 reference samples, got {params.samples}, {params.reference}"
        )
    check_fits(gen, dirset)
    dirs = directions_of(dirset, indices)
    z = latents(gen, params.samples, params.seed)
    z_ref = latents(gen, params.reference, params.seed + 1_000_003, param="reference")
    if features is None:
        loading = Progress(0, 0, stage="loading the feature network")
        yield loading
        features, features_label = yield from wait_for(
            resolve_features, params.features, gen.device, factors, record=loading
        )
        name = params.features
    else:
        name = getattr(features, "name", "custom")
        features_label = features_label or getattr(features, "label", name)
    grids = [shift_grid(d, params.steps, params.t_max) for _, d in dirs]
    pacer = Pacer(params.batch_size, device=gen.device)
    total = params.reference + params.samples * sum(len(g) for g in grids)  # images
    done = 0
    yield Progress(done, total, stage="reference samples")
    ref = _Moments()
    for _, imgs in render_pieces(gen, params.reference, unedited_rows(z_ref), pacer, psi=params.psi):
        ref.add(features(imgs))
        done += imgs.shape[0]
        yield Progress(done, total, stage="reference samples")
    mu_r, cov_r = ref.stats()
    out = []
    for (k, d), ts in zip(dirs, grids):
        row = []
        for t in ts:
            mom = _Moments()
            for _, imgs in render_pieces(gen, params.samples, shift_rows(z, d, [t]), pacer, psi=params.psi):
                mom.add(features(imgs))
                done += imgs.shape[0]
                yield Progress(done, total, stage=f"direction {k}", message=f"t = {t:+.3g}")
            # eigendecompositions of D x D covariances (2048 for Inception): seconds, in one call
            waiting = Progress(done, total, stage=f"direction {k}", message=f"t = {t:+.3g}: Fréchet distance")
            row.append((yield from wait_for(frechet_distance, *mom.stats(), mu_r, cov_r, record=waiting)))
            yield Progress(
                done,
                total,
                stage=f"direction {k}",
                metrics={"distance": row[-1]},
                message=f"t = {t:+.3g}: {row[-1]:.3f}",
            )
        out.append(row)
    return RealismResult(
        method=dirset.method,
        model=str(dirset.model.get("name", gen.name)),
        set_title=dirset.title,
        indices=[k for k, _ in dirs],
        labels=[dirset.directions[k].label for k, _ in dirs],
        features=name,
        features_label=features_label,
        samples=params.samples,
        reference=params.reference,
        shifts=np.stack(grids),
        distance=np.asarray(out, dtype=np.float64),
    )


register_analysis(AnalysisSpec("fid", Params, run, "realism (Fréchet distance) vs shift t", RealismResult))
