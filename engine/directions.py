"""Directions and direction sets, and their file format.

A *latent direction* is a vector ``d`` in one space of the model (``z``, ``w`` or ``w+`` restricted
to layers ``[start, stop)``); the edit is ``code + t * d``. A *parameter direction* shifts one layer's
weight, ``W + t * delta``. Parameter directions are stored either densely (``delta`` with the
weight's shape) or as coefficients over a shared ``ParamBasis`` of the set (the SVD basis of the
layer, or Hessian eigenvectors), which keeps K directions of a large layer small on disk.

Units of ``t``: for latent directions, units of the latent (directions are unit vectors unless a
method says otherwise, e.g. GANSpace scales by the component's std); for parameter directions,
``delta`` has the Frobenius norm of the layer's weight, so ``t = 0.1`` shifts by 10 % of ``||W||``.

Files: ``NAME.json`` (manifest: method, model identity, parameters, per-direction metadata and
annotations) beside ``NAME.<sha8>.safetensors`` (tensors, named by the first 8 hex digits of
their sha256). Saving writes the new tensor file, then atomically replaces the manifest (temporary
file + rename), then removes the old tensor file: a crash at any moment leaves a complete,
consistent pair on disk. The manifest records the tensor file's sha256, so a damaged or
mismatched tensor file is detected on load.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.errors import DirectionSetError
from engine.files import atomic_write, remove_own_file

FORMAT = "gan-atlas-directions"
FORMAT_VERSION = 1
INTERPRETABLE = ("yes", "unsure", "no")
LATENT_SPACES = ("z", "w", "w+")


@dataclass
class Annotation:
    """What a person said about a direction."""

    name: str = ""
    interpretable: str | None = None  # "yes" | "unsure" | "no" | None (not looked at)
    rating: int | None = None  # 1..5
    notes: str = ""
    color: str = ""  # "#rrggbb" or ""
    tags: list[str] = field(default_factory=list)

    def validate(self, where: str = "annotation") -> None:
        if self.interpretable not in (None, *INTERPRETABLE):
            raise DirectionSetError(
                f"{where}: interpretable must be one of {INTERPRETABLE} or null, got {self.interpretable!r}"
            )
        if self.rating is not None and not (isinstance(self.rating, int) and 1 <= self.rating <= 5):
            raise DirectionSetError(f"{where}: rating must be an integer 1-5 or null, got {self.rating!r}")

    @classmethod
    def from_json(cls, d: dict, where: str) -> Annotation:
        if not isinstance(d, dict):
            raise DirectionSetError(f"{where}: annotation must be an object")
        a = cls(
            name=str(d.get("name", "")),
            interpretable=d.get("interpretable"),
            rating=d.get("rating"),
            notes=str(d.get("notes", "")),
            color=str(d.get("color", "")),
            tags=[str(t) for t in d.get("tags", [])],
        )
        a.validate(where)
        return a


@dataclass
class ParamBasis:
    """A basis of one layer's weight shifts shared by the directions of a set.

    ``kind == "svd"``: the weight flattened to ``[shape[0], prod(shape[1:])]`` is
    ``U diag(S) V^T``; coefficient vector ``xi`` (length r) gives ``U diag(xi) V^T``.
    ``kind == "dense"``: ``vectors [r, *shape]``; coefficients combine them linearly.
    Either way the expanded shift is rescaled to Frobenius norm ``weight_norm``.
    """

    layer: str
    kind: str
    shape: tuple[int, ...]
    weight_norm: float
    tensors: dict[str, torch.Tensor]

    @property
    def rank(self) -> int:
        return int(self.tensors["S"].numel() if self.kind == "svd" else self.tensors["vectors"].shape[0])

    def expand(self, coeffs: torch.Tensor) -> torch.Tensor:
        """``coeffs [r] -> delta [*shape]`` with ``||delta||_F = weight_norm`` (or 0)."""
        c = coeffs.to(torch.float32)
        if self.kind == "svd":
            U, V = self.tensors["U"], self.tensors["V"]
            delta = (U * c.to(U.device)) @ V.T
        elif self.kind == "dense":
            vec = self.tensors["vectors"]
            delta = torch.tensordot(c.to(vec.device), vec.reshape(vec.shape[0], -1), dims=1)
        else:
            raise DirectionSetError(f"unknown parameter basis kind '{self.kind}'")
        delta = delta.reshape(self.shape)
        n = delta.norm()
        return delta * (self.weight_norm / n) if n > 0 else delta


@dataclass
class Direction:
    """One direction. See the module docstring for the two kinds and the units of ``t``."""

    kind: str  # "latent" | "param"
    vector: torch.Tensor | None = None  # latent: [dim]; param with a basis: coefficients [r]
    space: str = "z"  # latent only
    layers: tuple[int, int] | None = None  # latent w+ only: [start, stop)
    layer: str | None = None  # param only
    delta: torch.Tensor | None = None  # param without a basis: [*weight_shape]
    basis: str | None = None  # param with a basis: its key in DirectionSet.bases
    score: float | None = None
    range: tuple[float, float] = (-3.0, 3.0)
    annotation: Annotation = field(default_factory=Annotation)
    info: dict[str, Any] = field(default_factory=dict)  # method-specific extras (plain JSON)

    @property
    def label(self) -> str:
        return self.annotation.name

    def describe(self) -> str:
        if self.kind == "latent":
            where = self.space if self.layers is None else f"w+ layers {self.layers[0]}-{self.layers[1] - 1}"
            return f"latent ({where})"
        return f"weights of {self.layer}"


@dataclass
class DirectionSet:
    """K directions found by one method on one model, with their annotations."""

    method: str
    model: dict[str, Any]  # {"name", "identity", "source", ...}
    directions: list[Direction] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    bases: dict[str, ParamBasis] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    notes: str = ""
    path: Path | None = None  # where it was loaded from / last saved to (not stored)
    tensor_sha256: str | None = None

    def __len__(self) -> int:
        return len(self.directions)

    def __getitem__(self, k: int) -> Direction:
        return self.directions[k]

    @property
    def title(self) -> str:
        return self.path.stem if self.path else f"{self.method} ({len(self)})"

    @property
    def classes(self) -> list[int] | None:
        """The classes the set was found on (class-conditional models), or ``None`` (unconditional,
        or a set written before classes were recorded). Rendering uses them unless told otherwise."""
        c = self.model.get("classes")
        return [int(x) for x in c] if c else None

    def param_delta(self, k: int) -> torch.Tensor:
        """The weight shift of parameter direction ``k`` (``[*weight_shape]``)."""
        d = self.directions[k]
        return direction_delta(d, self.bases)

    # ---- saving ---------------------------------------------------------------------------
    def save(self, path: str | Path | None = None) -> Path:
        """Write ``NAME.json`` and ``NAME.safetensors`` atomically; returns the manifest path."""
        path = Path(path) if path is not None else self.path
        if path is None:
            raise DirectionSetError("direction set has no file name yet; give one to save it")
        path = manifest_path(path)
        from safetensors.torch import save as st_save

        blob = st_save(self._tensor_dict(), metadata={"format": FORMAT, "version": str(FORMAT_VERSION)})
        sha = hashlib.sha256(blob).hexdigest()
        tpath = path.with_name(f"{path.stem}.{sha[:8]}.safetensors")
        old_name, old_sha = _stored_tensor_ref(path)
        _atomic_write(tpath, blob)
        self.tensor_sha256 = sha
        _atomic_write(path, json.dumps(self._manifest(tpath.name), indent=1).encode())
        if old_name != tpath.name:
            # only the tensor file an earlier save of this set wrote: same folder, own name, own hash
            remove_own_file(path.parent, old_name, _tensor_file_pattern(path.stem), old_sha)
        self.path = path
        return path

    def save_annotations(self) -> Path:
        """Rewrite only the manifest (annotations, names, notes); the tensors are unchanged."""
        tfile = _stored_tensor_file(self.path) if self.path is not None else None
        if tfile is None or self.tensor_sha256 is None or not tfile.exists():
            return self.save()
        _atomic_write(self.path, json.dumps(self._manifest(tfile.name), indent=1).encode())
        return self.path

    def _tensor_dict(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for i, d in enumerate(self.directions):
            if d.vector is not None:
                out[f"dir.{i}.vector"] = d.vector.detach().float().cpu().contiguous()
            if d.delta is not None:
                out[f"dir.{i}.delta"] = d.delta.detach().float().cpu().contiguous()
        for name, b in self.bases.items():
            for key, t in b.tensors.items():
                out[f"basis.{name}.{key}"] = t.detach().float().cpu().contiguous()
        return out

    def _manifest(self, tensor_file: str) -> dict:
        dirs = []
        for d in self.directions:
            dirs.append(
                {
                    "kind": d.kind,
                    "space": d.space if d.kind == "latent" else None,
                    "layers": list(d.layers) if d.layers is not None else None,
                    "layer": d.layer,
                    "basis": d.basis,
                    "score": d.score,
                    "range": list(d.range),
                    "annotation": asdict(d.annotation),
                    "info": d.info,
                }
            )
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "method": self.method,
            "model": self.model,
            "params": self.params,
            "metrics": self.metrics,
            "created": self.created,
            "notes": self.notes,
            "tensors": {"file": tensor_file, "sha256": self.tensor_sha256},
            "bases": {
                n: {"layer": b.layer, "kind": b.kind, "shape": list(b.shape), "weight_norm": b.weight_norm}
                for n, b in self.bases.items()
            },
            "directions": dirs,
        }

    # ---- loading --------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> DirectionSet:
        """Read a direction set; any problem is a ``DirectionSetError`` naming the file."""
        path = manifest_path(Path(path))
        if not path.is_file():
            raise DirectionSetError(f"{path}: no such direction set file")
        try:
            man = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DirectionSetError(f"{path}: not a direction set (damaged or not JSON: {exc})") from None
        if not isinstance(man, dict) or man.get("format") != FORMAT:
            raise DirectionSetError(f'{path}: not a GAN Atlas direction set (no \'"format": "{FORMAT}"\')')
        version = man.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
            raise DirectionSetError(
                f"{path}: direction set format version {version!r} is not supported (this program reads 1..{FORMAT_VERSION})"
            )
        try:
            return cls._from_manifest(path, man)
        except DirectionSetError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DirectionSetError(f"{path}: malformed direction set ({exc.__class__.__name__}: {exc})") from None

    @classmethod
    def _from_manifest(cls, path: Path, man: dict) -> DirectionSet:
        tinfo = man.get("tensors") or {}
        fname = tinfo.get("file")
        if not isinstance(fname, str) or not fname or "/" in fname or "\\" in fname:
            raise DirectionSetError(f"{path}: manifest names no tensor file")
        tpath = path.with_name(fname)
        if not tpath.is_file():
            raise DirectionSetError(f"{path}: its tensor file {tpath.name} is missing (copy it beside the .json)")
        blob = tpath.read_bytes()
        want = tinfo.get("sha256")
        if want and hashlib.sha256(blob).hexdigest() != want:
            raise DirectionSetError(f"{tpath}: tensor file does not match its manifest {path.name} (sha256 differs)")
        from safetensors.torch import load as st_load

        try:
            tensors = st_load(blob)
        except Exception as exc:  # noqa: BLE001 - any parse failure is a damaged file
            raise DirectionSetError(f"{tpath}: damaged tensor file ({exc})") from None
        bases = {}
        for name, b in (man.get("bases") or {}).items():
            prefix = f"basis.{name}."
            bt = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            if not bt:
                raise DirectionSetError(f"{tpath}: missing tensors of parameter basis '{name}'")
            bases[name] = ParamBasis(b["layer"], b["kind"], tuple(b["shape"]), float(b["weight_norm"]), bt)
        dirs = []
        for i, d in enumerate(man["directions"]):
            where = f"{path}: direction {i}"
            kind = d["kind"]
            if kind not in ("latent", "param"):
                raise DirectionSetError(f"{where}: kind must be 'latent' or 'param', got {kind!r}")
            vec, delta = tensors.get(f"dir.{i}.vector"), tensors.get(f"dir.{i}.delta")
            if kind == "latent":
                if vec is None:
                    raise DirectionSetError(f"{where}: its vector is missing from {tpath.name}")
                if d.get("space") not in LATENT_SPACES:
                    raise DirectionSetError(f"{where}: space must be one of {LATENT_SPACES}, got {d.get('space')!r}")
            else:
                if not d.get("layer"):
                    raise DirectionSetError(f"{where}: parameter direction names no layer")
                if delta is None and (d.get("basis") not in bases or vec is None):
                    raise DirectionSetError(f"{where}: neither a delta nor basis coefficients are stored")
            rng = d.get("range") or [-3.0, 3.0]
            dirs.append(
                Direction(
                    kind=kind,
                    vector=vec,
                    space=d.get("space") or "z",
                    layers=tuple(d["layers"]) if d.get("layers") else None,
                    layer=d.get("layer"),
                    delta=delta,
                    basis=d.get("basis"),
                    score=None if d.get("score") is None else float(d["score"]),
                    range=(float(rng[0]), float(rng[1])),
                    annotation=Annotation.from_json(d.get("annotation") or {}, where),
                    info=dict(d.get("info") or {}),
                )
            )
        model = dict(man.get("model") or {})
        found_on = model.get("classes")
        if found_on is not None and (
            not isinstance(found_on, list)
            or not found_on
            or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in found_on)
        ):
            raise DirectionSetError(f"{path}: model.classes must be a list of class indices, got {found_on!r}")
        return cls(
            method=str(man["method"]),
            model=model,
            directions=dirs,
            params=dict(man.get("params") or {}),
            bases=bases,
            metrics=dict(man.get("metrics") or {}),
            created=str(man.get("created", "")),
            notes=str(man.get("notes", "")),
            path=path,
            tensor_sha256=tinfo.get("sha256"),
        )

    # ---- building -------------------------------------------------------------------------
    @classmethod
    def latent(
        cls,
        method: str,
        model: dict,
        vectors: torch.Tensor,
        *,
        space: str = "z",
        layers: tuple[int, int] | None = None,
        scores: Iterable[float] | None = None,
        range_: tuple[float, float] = (-3.0, 3.0),
        params: dict | None = None,
    ) -> DirectionSet:
        """A set of latent directions from the rows of ``vectors [K, dim]``."""
        scores = list(scores) if scores is not None else [None] * vectors.shape[0]
        dirs = [
            Direction(
                "latent",
                vector=v.detach().float().cpu().clone(),
                space=space,
                layers=layers,
                score=None if s is None else float(s),
                range=range_,
            )
            for v, s in zip(vectors, scores)
        ]
        return cls(method=method, model=model, directions=dirs, params=params or {})


def direction_delta(d: Direction, bases: dict[str, ParamBasis]) -> torch.Tensor:
    if d.kind != "param":
        raise DirectionSetError("a latent direction has no weight delta")
    if d.delta is not None:
        return d.delta
    return bases[d.basis].expand(d.vector)


def model_ref(gen) -> dict[str, Any]:
    """The model identity a direction set records.

    On a class-conditional model it also records ``num_classes`` and ``classes``: the classes the
    generator view was conditioned on (``Generator.conditioned``), i.e. the classes the set was
    found on (see ``DirectionSet.classes``).
    """
    ref = {
        "name": gen.name,
        "identity": gen.identity,
        "source": gen.source,
        "resolution": gen.resolution,
        "z_dim": gen.z_dim,
    }
    if gen.num_classes:
        ref["num_classes"] = gen.num_classes
        ref["classes"] = gen.classes_bound
    return ref


def manifest_path(path: Path) -> Path:
    path = Path(path)
    return path if path.suffix == ".json" else path.with_suffix(".json")


def _tensor_file_pattern(stem: str) -> re.Pattern[str]:
    return re.compile(re.escape(stem) + r"\.[0-9a-f]{8}\.safetensors")


def _stored_tensor_ref(path: Path) -> tuple[object, object]:
    """``(file name, sha256)`` of the tensor file the manifest at ``path`` names, unchecked (or Nones)."""
    try:
        tinfo = json.loads(Path(path).read_text(encoding="utf-8"))["tensors"]
        return tinfo.get("file"), tinfo.get("sha256")
    except Exception:  # noqa: BLE001 - no readable manifest yet
        return None, None


def _stored_tensor_file(path: Path) -> Path | None:
    """The tensor file the manifest at ``path`` currently names, if it is a plain name in its folder."""
    name, _ = _stored_tensor_ref(path)
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        return None
    return Path(path).with_name(name)


_atomic_write = atomic_write
