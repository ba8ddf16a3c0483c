"""Can a latent shift reproduce a parameter edit? (Cherepkov et al. 2021, "latent transformations
cannot produce these visual effects").

For a parameter direction xi at shift t, find the one latent shift h, shared by all latents, that
best imitates the edit::

    min_h  E_z || G_theta(z + h) - G_{theta + t xi}(z) ||^2

with Adam on fresh batches of z each step. h lives in z (models without an intermediate space)
or, for style models, in w (added after the mapping network and truncation) or w+. It is
optimised in units of the code's per-coordinate standard deviation (1 in z; measured on 2048
mapped samples in w), so one learning rate suits every model; the rate decays with a cosine.

The report is the **relative residual** on held-out latents::

    residual = E_z ||G(z + h) - G_{theta + t xi}(z)||^2 / E_z ||G(z) - G_{theta + t xi}(z)||^2

0 means the edit is exactly a latent translation; 1 means no latent shift does better than doing
nothing (h = 0 scores 1 by definition). An edit of a mapping-network layer is rendered from z
(it changes w itself); h is still a shift of the unedited code.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.analysis.registry import AnalysisSpec, register_analysis
from engine.analysis.results import AnalysisResult, register_result
from engine.analysis.sampling import check_fits, directions_of, latents
from engine.directions import DirectionSet
from engine.errors import AtlasError
from engine.jobs import Pacer, Progress, optimizers_ready
from engine.models.base import ParamEdit
from engine.params import validate_params
from engine.render import to_uint8

SPACES = ("auto", "z", "w", "w+")
N_EXAMPLES = 4


@dataclass(frozen=True)
class Params:
    t: float | None = field(
        default=None, metadata={"help": "shift of the parameter edit; default: the end of the direction's range"}
    )
    space: str = field(
        default="auto",
        metadata={"help": "where h lives: auto (w for style models, else z), z, w, w+", "choices": SPACES},
    )
    steps: int = field(
        default=300, metadata={"help": "Adam steps, a fresh batch of z each", "min": 1, "max": 1_000_000}
    )
    batch_size: int = field(default=32, metadata={"help": "latents per step", "min": 1, "max": 4096})
    lr: float = field(
        default=0.05, metadata={"help": "Adam learning rate, in code standard deviations (cosine decay)", "min": 0.0}
    )
    eval_samples: int = field(
        default=256, metadata={"help": "held-out latents the residual is measured on", "min": 1, "max": 1_000_000}
    )
    psi: float = field(default=1.0, metadata={"help": "truncation (style models)"})
    seed: int = field(default=0, metadata={"help": "seed of the latents"})

    def __post_init__(self) -> None:
        validate_params(self)


@register_result
@dataclass
class ReproduceResult(AnalysisResult):
    """Per direction: the relative residual of the best latent shift, and its training curve."""

    kind = "reproduce"
    method: str
    model: str
    set_title: str
    indices: list[int]
    labels: list[str]
    space: str
    steps: int
    t: np.ndarray  # [K] shift of each parameter edit
    residual: np.ndarray  # [K] held-out relative residual (0 = a latent shift reproduces it, 1 = none helps)
    edit_size: np.ndarray  # [K] E_z mean over pixels of (G'(z) - G(z))^2
    h_norm: np.ndarray  # [K] ||h|| in the code's own units
    loss_curve: np.ndarray  # [K, steps] relative loss of each training batch
    examples: np.ndarray  # [K, 3, N, H, W, 3] uint8: original, parameter edit, best latent shift

    def draw(self, path: Path) -> Path:
        """The PNG figure of this result at ``path``."""
        from engine.analysis import plots

        K = len(self.indices)
        N = self.examples.shape[2]
        fig = plots.figure(10.0, 3.2 * K)
        sub = fig.subfigures(K, 1, squeeze=False)[:, 0]
        for i in range(K):
            left, right = sub[i].subfigures(1, 2, width_ratios=[1, 1.4])
            ax = left.add_subplot()
            ax.plot(np.arange(1, len(self.loss_curve[i]) + 1), self.loss_curve[i], lw=0.8)
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax.axhline(self.residual[i], color="C3", lw=0.8, label=f"held-out residual {self.residual[i]:.3f}")
            ax.set_xlabel("Adam step")
            ax.set_ylabel("relative loss")
            ax.set_ylim(0, max(1.1, float(np.nanmax(self.loss_curve[i])) * 1.05))
            ax.legend(fontsize=7)
            ax.set_title(
                f"direction {plots.direction_name(self, i)}, t = {self.t[i]:+.3g}, h in {self.space}", fontsize=8
            )
            axes = right.subplots(3, N, squeeze=False)
            for row, title in enumerate(("original", "param. edit", "G(z + h)")):
                for c in range(N):
                    a = axes[row, c]
                    a.imshow(self.examples[i, row, c], interpolation="nearest")
                    a.set_xticks([])
                    a.set_yticks([])
                axes[row, 0].set_ylabel(title, fontsize=7)
        fig.suptitle(
            f"Can a latent shift reproduce the edit? {self.set_title} ({self.method}) on {self.model} "
            f"(0 = exactly, 1 = no better than nothing)",
            fontsize=9,
        )
        return plots.save_figure(fig, path)

    def report_lines(self) -> list[str]:
        """The numbers worth printing, one line per direction."""
        lines = []
        for i, k in enumerate(self.indices):
            name = f"direction {k}" + (f" ({self.labels[i]})" if self.labels[i] else "")
            lines.append(
                f"{name}: t = {self.t[i]:+.3g}, h in {self.space}: relative residual {self.residual[i]:.3f} "
                f"(0 = a latent shift reproduces the edit, 1 = none helps); edit size "
                f"{self.edit_size[i]:.4g} per pixel, |h| = {self.h_norm[i]:.3g} code std"
            )
        return lines


def resolve_space(gen, space: str) -> str:
    if space not in SPACES:
        raise AtlasError(f"unknown space '{space}' for h; choose one of {', '.join(SPACES)}")
    if space == "auto":
        return "w" if "w" in gen.spaces else "z"
    gen.check_space(space)
    return space


def _code_scale(gen, space: str, psi: float, seed: int) -> torch.Tensor:
    """Per-coordinate standard deviation of codes in ``space`` (1 in z)."""
    if space == "z":
        return torch.ones(gen.z_dim, device=gen.device)
    with torch.no_grad():
        ws = gen.encode(latents(gen, 2048, seed + 7), "w", psi=psi)  # [N, w_dim]
    std = ws.std(0).clamp_min(1e-6)
    return std if space == "w" else std.expand(gen.num_ws, -1)


def _decode(gen, code: torch.Tensor, space: str, psi: float, edit=None) -> torch.Tensor:
    return gen.decode(code, space, psi=psi, edit=edit).float()


def _edited(gen, z, code, space: str, psi: float, layer: str, delta, t: float) -> torch.Tensor:
    """``G_{theta + t xi}(z)``: from the code, or from z for a mapping-network layer (its edit acts before w)."""
    if gen.layer_info(layer).mapping:
        return _decode(gen, z, "z", psi, ParamEdit.single(layer, delta, z.shape[0], t))
    return _decode(gen, code, space, psi, ParamEdit.single(layer, delta, code.shape[0], t))


def run(gen, dirset: DirectionSet, indices: Sequence[int] | None, params: Params = Params()) -> Iterator[Progress]:
    """Job: the latent-reproduction residual of parameter directions ``indices``. Returns a ``ReproduceResult``."""
    if params.steps < 1 or params.batch_size < 1 or params.eval_samples < 1:
        raise AtlasError("reproduce needs steps, batch_size and eval_samples of at least 1")
    check_fits(gen, dirset)
    dirs = directions_of(dirset, indices)
    latent = [k for k, d in dirs if d.kind != "param"]
    if latent:
        raise AtlasError(
            f"{dirset.title}: direction {latent[0]} is a latent direction; reproduce compares a "
            "parameter edit with latent shifts (it needs a parameter direction)"
        )
    space = resolve_space(gen, params.space)
    dev = gen.device
    scale = _code_scale(gen, space, params.psi, params.seed)
    pacer = Pacer(params.batch_size, device=dev)
    z_eval = latents(gen, params.eval_samples, params.seed + 1_000_003, param="eval_samples")
    g = torch.Generator().manual_seed(params.seed)
    total = len(dirs) * params.steps
    yield Progress(0, total, stage="optimising h")
    yield from optimizers_ready(Progress(0, total, stage="optimising h"))
    ts, residuals, sizes, norms, curves, examples = [], [], [], [], [], []
    for j, (k, d) in enumerate(dirs):
        t = float(params.t) if params.t is not None else float(d.range[1])
        delta = d.delta.to(dev, torch.float32)
        u = torch.zeros_like(scale, requires_grad=True)  # h = u * scale
        opt = torch.optim.Adam([u], lr=params.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / params.steps)))
        curve = []
        for i in range(params.steps):
            z = torch.randn(params.batch_size, gen.z_dim, generator=g).to(dev)
            # the batch in paced pieces: the loss is a mean over the batch, so the pieces' gradients
            # add up to the batch's (to rounding)
            grad, loss_sum, base_sum = torch.zeros_like(u), 0.0, 0.0
            for sl in pacer.slices(z.shape[0]):
                code = _encode(gen, z[sl], space, params.psi)
                with torch.no_grad():
                    target = _edited(gen, z[sl], code, space, params.psi, d.layer, delta, t)
                    base_sum += float(((_decode(gen, code, space, params.psi) - target) ** 2).sum())
                out = _decode(gen, code + u * scale, space, params.psi)
                loss = ((out - target) ** 2).sum() / (target[0].numel() * z.shape[0])
                grad += torch.autograd.grad(loss, u)[0]
                loss_sum += float(loss.detach())
                yield Progress(j * params.steps + i, total, stage=f"direction {k}")
            base_err = base_sum / (target[0].numel() * z.shape[0])
            u.grad = grad
            opt.step()
            sched.step()
            curve.append(loss_sum / max(base_err, 1e-30))
            yield Progress(
                j * params.steps + i + 1, total, stage=f"direction {k}", metrics={"relative_loss": curve[-1]}
            )
        h = u.detach() * scale
        record = Progress((j + 1) * params.steps, total, stage=f"direction {k}", message="held-out residual")
        res, size, ex = yield from _evaluate(gen, z_eval, space, params.psi, d.layer, delta, t, h, pacer, record)
        ts.append(t)
        residuals.append(res)
        sizes.append(size)
        norms.append(float((h / scale).norm()))
        curves.append(curve)
        examples.append(ex)
        yield Progress(
            (j + 1) * params.steps,
            total,
            stage=f"direction {k}",
            metrics={"residual": res},
            message=f"direction {k}: relative residual {res:.3f}",
        )
    return ReproduceResult(
        method=dirset.method,
        model=str(dirset.model.get("name", gen.name)),
        set_title=dirset.title,
        indices=[k for k, _ in dirs],
        labels=[dirset.directions[k].label for k, _ in dirs],
        space=space,
        steps=params.steps,
        t=np.asarray(ts),
        residual=np.asarray(residuals),
        edit_size=np.asarray(sizes),
        h_norm=np.asarray(norms),
        loss_curve=np.asarray(curves),
        examples=np.stack(examples),
    )


def _encode(gen, z: torch.Tensor, space: str, psi: float) -> torch.Tensor:
    with torch.no_grad():
        return gen.encode(z, space, psi=psi)


def _evaluate(
    gen,
    z: torch.Tensor,
    space: str,
    psi: float,
    layer: str,
    delta: torch.Tensor,
    t: float,
    h: torch.Tensor,
    pacer: Pacer,
    record: Progress,
) -> Iterator[Progress]:
    """Job: held-out ``(relative residual, edit size per pixel, example images [3, N, H, W, 3])``;
    yields ``record`` after every paced piece of latents."""
    num = den = 0.0
    pixels = 0
    ex = None
    for sl in pacer.slices(z.shape[0]):
        with torch.no_grad():
            code = _encode(gen, z[sl], space, psi)
            base = _decode(gen, code, space, psi)
            target = _edited(gen, z[sl], code, space, psi, layer, delta, t)
            shifted = _decode(gen, code + h, space, psi)
        num += float(((shifted - target) ** 2).sum())
        den += float(((base - target) ** 2).sum())
        pixels += target.numel()
        if ex is None or ex[0].shape[0] < N_EXAMPLES:
            part = np.stack(
                [to_uint8(base[:N_EXAMPLES]), to_uint8(target[:N_EXAMPLES]), to_uint8(shifted[:N_EXAMPLES])]
            )
            ex = part if ex is None else np.concatenate([ex, part], axis=1)[:, :N_EXAMPLES]
        yield record
    if den <= 0:
        raise AtlasError(f"the parameter edit of {layer} at t = {t} does not change the images; nothing to reproduce")
    return num / den, den / pixels, ex


register_analysis(
    AnalysisSpec(
        "reproduce", Params, run, "can a latent shift reproduce a parameter edit?", ReproduceResult, param_only=True
    )
)
