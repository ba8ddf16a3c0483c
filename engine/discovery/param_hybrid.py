"""``param-hybrid``: ``param-opt`` over the top Hessian eigenvectors (Cherepkov et al. 2021, "Hybrid").

First the top ``basis_k`` eigenvectors ``v_1..v_r`` of the layer Hessian of ``E_z d2(G_theta(z),
G_{theta+a}(z))`` are computed exactly as ``param-spectrum`` does (or taken from a saved
param-spectrum set, ``spectrum=SET.json``); then K unit coefficient vectors over them are trained
with a reconstructor exactly as ``param-opt`` does over the SVD basis. The optimisation thus runs
in the subspace that holds the largest perceptual changes; the paper reports it as its best
method. Paper settings: as param-opt (K = 64, lambda = 2.5e-3) with batch 16 and a smaller T;
here the range defaults to param-spectrum's (a fraction of ``||W||_F``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from engine.directions import DirectionSet
from engine.discovery.param_opt import TrainingParams, check_shift_memory, train_directions
from engine.discovery.param_space import dense_basis, resolve_layer
from engine.discovery.param_spectrum import SPECTRUM_RANGE, hessian_eigen
from engine.discovery.param_spectrum import Params as SpectrumParams
from engine.discovery.registry import register_method
from engine.distances import DISTANCES
from engine.errors import AtlasError
from engine.hashing import state_dict_sha256
from engine.jobs import Progress, relabel


def spectrum_identity(path: str) -> str:
    """What identifies a run over a saved spectrum set: a sha256 of the eigenvectors it holds (the
    file's integrity checked on loading), not its path: the same set moved or saved again is the
    same run, another set saved under that name is not. (Not the tensor file's own sha256: the
    safetensors writer orders its metadata arbitrarily, so one set saved twice hashes apart.)"""
    if not path:
        return ""
    dset = DirectionSet.load(Path(path))
    return "sha256:" + state_dict_sha256({f"delta.{i}": dset.param_delta(i) for i in range(len(dset))})


@dataclass(frozen=True)
class Params(TrainingParams):
    """param-opt's training fields (``TrainingParams``; batch 16 and param-spectrum's range here), then
    those of the Hessian eigenvectors the training runs over."""

    range: float = field(
        default=SPECTRUM_RANGE,
        metadata={
            "help": "shift range +-T as a fraction of the layer's weight norm (training and suggested)",
            "min": 0.0,
        },
    )
    batch_size: int = field(default=16, metadata={"help": "pairs per step and rank (paper: 16)", "min": 2, "max": 4096})
    seed: int = field(default=0, metadata={"help": "seed of the latents, the initialisation and all sampling"})
    spectrum: str = field(
        default="",
        metadata={
            "help": "a saved param-spectrum set whose eigenvectors form the basis (empty: compute them)",
            "key_of": spectrum_identity,
        },
    )
    basis_k: int = field(
        default=64, metadata={"help": "Hessian eigenvectors in the basis (when computed)", "min": 1, "max": 4096}
    )
    distance: str = field(
        default="lpips-alex",
        metadata={
            "help": "image distance of the Hessian (when computed); pixel is not perceptual",
            "choices": DISTANCES,
        },
    )
    samples: int = field(
        default=64, metadata={"help": "latents of the Hessian minibatch (paper: 512)", "min": 1, "max": 100_000}
    )
    tol: float = field(default=1e-3, metadata={"help": "eigen-residual tolerance (relative to lambda_1)", "min": 0.0})
    # part of the run's key: the eigensolver's stopping point decides the basis the training runs on
    spectrum_steps: int = field(default=40, metadata={"help": "most eigensolver iterations", "min": 1, "max": 10_000})

    def spectrum_params(self) -> SpectrumParams:
        return SpectrumParams(
            k=self.basis_k,
            layer=self.layer,
            distance=self.distance,
            samples=self.samples,
            tol=self.tol,
            steps=self.spectrum_steps,
            truncation=self.truncation,
            seed=self.seed,
        )


def basis_from_set(gen, path: str, layer: str):
    """Eigenvectors of a saved param-spectrum set as ``[r, *shape]`` (must shift ``layer`` of ``gen``)."""
    dset = DirectionSet.load(Path(path))
    if dset.method != "param-spectrum":
        raise AtlasError(f"{path}: a {dset.method} set; the hybrid basis must come from a param-spectrum set")
    if dset.model.get("identity") and gen.identity and dset.model["identity"] != gen.identity:
        raise AtlasError(f"{path}: was computed on model {dset.model.get('name')!r}, not on {gen.name!r}")
    if dset.directions[0].layer != layer:
        raise AtlasError(
            f"{path}: shifts layer {dset.directions[0].layer}, not {layer}; pass --layer "
            f"{dset.directions[0].layer} or another set"
        )
    return torch.stack([dset.param_delta(i).float() for i in range(len(dset))]), dset


def _spectrum_state(spectrum: dict | None) -> dict | None:
    if spectrum is None:
        return None
    return {"stage": "spectrum", "position": [0, int(spectrum.get("step", 0))], "spectrum": spectrum}


def _wrapped(snapshot, wrap):
    """``snapshot`` (a job's state-as-of-now function) with ``wrap`` applied to its state."""
    return None if snapshot is None else (lambda: wrap(snapshot()))


@register_method(
    "param-hybrid",
    Params,
    kind="param",
    resumable=True,
    summary="param-opt over the top Hessian eigenvectors (Cherepkov et al.'s hybrid); RCA",
)
def run(gen, params: Params, *, device="cpu", state: dict | None = None) -> Iterator[Progress]:
    """Job: eigenvectors (computed or loaded), then reconstructor training over them.

    The resumable state carries the eigenvector basis once it is known, so a resumed run skips
    the eigensolver. Returns the K directions (coefficients over the eigenvectors).
    """
    info = resolve_layer(gen, params.layer)
    check_shift_memory(params, info)
    extra = {}
    if state is not None and state.get("stage") == "train":
        vectors = state["basis"]
        extra = dict(state.get("basis_info", {}))
        train_state = state["trainer"]
    else:
        train_state = None
        if params.spectrum:
            vectors, sset = basis_from_set(gen, params.spectrum, info.name)
            extra = {"basis_from": params.spectrum, "basis_eigenvalues": sset.metrics.get("eigenvalues")}
        else:
            sstate = state.get("spectrum") if state is not None else None
            eig = hessian_eigen(
                gen, params.spectrum_params(), device=device, state=sstate, stage="spectrum", k_param="basis_k"
            )
            layer, result, _, distance, metrics = yield from relabel(
                eig,
                lambda rec: replace(
                    rec,
                    partial=None,  # the partial eigenvectors are not this method's directions
                    state=_spectrum_state(rec.state),
                    snapshot=_wrapped(rec.snapshot, _spectrum_state),
                ),
            )
            W = gen.layer_weight(layer)
            vectors = result.vectors.T.reshape(-1, *W.shape).cpu()
            extra = {
                "basis_eigenvalues": metrics["eigenvalues"],
                "basis_max_relative_residual": metrics["max_relative_residual"],
                **distance.describe(),
            }
    basis = dense_basis(gen, info.name, vectors)

    def wrap_trainer(trainer: dict | None) -> dict | None:
        if trainer is None:
            return None
        position = [1, int(trainer.get("step", 0))]  # after every spectrum state
        return {
            "stage": "train",
            "position": position,
            "basis": basis.tensors["vectors"],
            "basis_info": extra,
            "trainer": trainer,
        }

    job = train_directions(gen, params, basis, "param-hybrid", device=device, state=train_state, extra_params=extra)
    dset = yield from relabel(
        job,
        lambda rec: replace(rec, state=wrap_trainer(rec.state), snapshot=_wrapped(rec.snapshot, wrap_trainer)),
    )
    return dset
