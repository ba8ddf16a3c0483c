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
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.errors import DirectionSetError, describe_exception
from engine.fields import MAX_TEXT, Fields, as_float, float_tensor, plain_name, show
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
        f = Fields(d, f"{where}: annotation", DirectionSetError)
        a = cls(
            name=f.text("name"),
            interpretable=f.optional_text("interpretable", choices=INTERPRETABLE),
            rating=f.optional_integer("rating", lo=1, hi=5),
            notes=f.text("notes", limit=MAX_TEXT),
            color=f.text("color", limit=7),
            tags=f.text_list("tags"),
        )
        if a.color and not _COLOR.fullmatch(a.color):
            raise f.fail("color", 'must be "#rrggbb" or empty')
        a.validate(where)
        return a


_COLOR = re.compile(r"#[0-9a-fA-F]{6}")


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
        """Read a direction set; any problem is a ``DirectionSetError`` naming the file.

        Every manifest field is checked against the tensors before use (``_from_manifest``):
        what loads can be rendered on a model it fits (``engine.analysis.sampling.check_fits``).
        """
        path = manifest_path(Path(path))
        return cls._from_manifest(path, read_manifest(path))

    @classmethod
    def _from_manifest(cls, path: Path, man: dict) -> DirectionSet:
        top = Fields(man, str(path), DirectionSetError)
        tinfo = Fields(top.obj_field("tensors"), f"{path}: tensors", DirectionSetError)
        fname = tinfo.obj.get("file")
        if not plain_name(fname):
            raise DirectionSetError(f"{path}: manifest names no tensor file in its folder (got {show(fname)})")
        want = tinfo.sha256("sha256")
        tpath = path.with_name(fname)
        try:
            if not tpath.is_file():
                raise DirectionSetError(f"{path}: its tensor file {tpath.name} is missing (copy it beside the .json)")
            blob = tpath.read_bytes()
        except OSError as exc:
            raise DirectionSetError(f"{tpath}: cannot read the tensor file ({exc.strerror or exc})") from None
        if want and hashlib.sha256(blob).hexdigest() != want:
            raise DirectionSetError(f"{tpath}: tensor file does not match its manifest {path.name} (sha256 differs)")
        from safetensors.torch import load as st_load

        try:
            raw = st_load(blob)
        except Exception as exc:  # noqa: BLE001 - any parse failure is a damaged file
            raise DirectionSetError(f"{tpath}: damaged tensor file ({describe_exception(exc)})") from None
        tensors = {k: float_tensor(v, f"{tpath}: tensor {show(k)}", DirectionSetError) for k, v in raw.items()}
        used: set[str] = set()

        def take(key: str) -> torch.Tensor | None:
            if key in tensors:
                used.add(key)
            return tensors.get(key)

        bases = {
            name: _read_basis(name, spec, take, f"{path}: basis {show(name)}")
            for name, spec in top.obj_field("bases").items()
        }
        dirs = [
            _read_direction(d, i, bases, take, f"{path}: direction {i}")
            for i, d in enumerate(top.list_field("directions", required=True))
        ]
        extra = sorted(set(tensors) - used)
        if extra:
            raise DirectionSetError(
                f"{tpath}: holds tensors its manifest does not describe ({', '.join(map(show, extra[:3]))})"
            )
        model = Fields(top.obj_field("model"), f"{path}: model", DirectionSetError)
        for key in ("name", "identity", "source"):
            model.optional_text(key, limit=4096)
        for key in ("resolution", "z_dim", "num_classes"):
            model.optional_integer(key, lo=1, hi=1 << 20)
        found_on = model.obj.get("classes")
        if found_on is not None and (
            not isinstance(found_on, list)
            or not 0 < len(found_on) <= 1 << 20
            or any(type(c) is not int or not 0 <= c < 1 << 20 for c in found_on)
        ):
            raise DirectionSetError(f"{path}: model.classes must be a list of class indices, got {show(found_on)}")
        _check_consistent(dirs, model.obj.get("z_dim"), path)
        return cls(
            method=top.text("method", None, limit=200),
            model=dict(model.obj),
            directions=dirs,
            params=dict(top.obj_field("params")),
            bases=bases,
            metrics=dict(top.obj_field("metrics")),
            created=top.text("created", limit=100),
            notes=top.text("notes", limit=MAX_TEXT),
            path=path,
            tensor_sha256=want,
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


MAX_MANIFEST_BYTES = 64 << 20
MAX_W_LAYERS = 4096


def _read_basis(name: str, spec: Any, take, where: str) -> ParamBasis:
    """A ``ParamBasis`` from its manifest entry and tensors ``basis.<name>.*``, shapes cross-checked."""
    f = Fields(spec, where, DirectionSetError)
    kind = f.text("kind", None, choices=("svd", "dense"))
    shape = f.list_field("shape", limit=8, required=True)
    if not shape or not all(type(s) is int and 1 <= s <= 1 << 24 for s in shape):
        raise f.fail("shape", "must be a list of 1 to 8 positive sizes")
    keys = ("U", "S", "V") if kind == "svd" else ("vectors",)
    tensors = {k: take(f"basis.{name}.{k}") for k in keys}
    missing = [k for k, t in tensors.items() if t is None]
    if missing:
        raise DirectionSetError(f"{where}: its tensors {', '.join(missing)} are missing")
    rows, cols = shape[0], math.prod(shape[1:])
    if kind == "svd":
        U, S, V = tensors["U"], tensors["S"], tensors["V"]
        r = S.shape[0] if S.dim() == 1 else -1
        ok = U.dim() == 2 and V.dim() == 2 and U.shape == (rows, r) and V.shape == (cols, r)
    else:
        vec = tensors["vectors"]
        ok = vec.dim() == len(shape) + 1 and tuple(vec.shape[1:]) == tuple(shape)
    if not ok:
        sizes = ", ".join(f"{k} {list(t.shape)}" for k, t in tensors.items())
        raise DirectionSetError(f"{where}: tensors {sizes} do not form a {kind} basis of shape {shape}")
    return ParamBasis(
        f.text("layer", None), kind, tuple(shape), f.number("weight_norm", lo=0.0), {k: t for k, t in tensors.items()}
    )


def _read_direction(d: Any, i: int, bases: dict[str, ParamBasis], take, where: str) -> Direction:
    """Direction ``i`` from its manifest entry and tensors ``dir.<i>.*``, checked against each other."""
    f = Fields(d, where, DirectionSetError)
    kind = f.text("kind", None, choices=("latent", "param"))
    vec, delta = take(f"dir.{i}.vector"), take(f"dir.{i}.delta")
    layers = layer = basis = None
    if kind == "latent":
        space = f.text("space", None, choices=LATENT_SPACES)
        if vec is None:
            raise DirectionSetError(f"{where}: its vector is missing from the tensor file")
        if delta is not None or f.has("basis") or f.has("layer"):
            raise DirectionSetError(f"{where}: a latent direction with a weight delta, basis or layer")
        if vec.dim() != 1 and not (space == "w+" and vec.dim() == 2):
            raise DirectionSetError(f"{where}: a {space} direction of shape {list(vec.shape)} (one vector expected)")
        if f.has("layers"):
            layers = f.list_field("layers", limit=2)
            rows = vec.shape[0] if vec.dim() == 2 else MAX_W_LAYERS
            if (
                space != "w+"
                or len(layers) != 2
                or not all(type(x) is int for x in layers)
                or not 0 <= layers[0] <= layers[1] <= rows
            ):
                raise f.fail("layers", f"must be [start, stop) with 0 <= start <= stop <= {rows}, for w+ only")
            layers = (layers[0], layers[1])
    else:
        space = "z"
        layer = f.text("layer", None, limit=200)
        basis = f.optional_text("basis", limit=200)
        if f.has("layers"):
            raise DirectionSetError(f"{where}: a parameter direction with w+ layers")
        if basis is not None:
            b = bases.get(basis)
            if b is None or vec is None:
                raise DirectionSetError(f"{where}: basis {show(basis)} or its coefficients are missing")
            if b.layer != layer or vec.dim() != 1 or vec.shape[0] != b.rank:
                raise DirectionSetError(
                    f"{where}: coefficients {list(vec.shape)} on layer {show(layer)} do not fit basis {show(basis)} "
                    f"(rank {b.rank}, layer {show(b.layer)})"
                )
            if delta is not None and tuple(delta.shape) != b.shape:
                raise DirectionSetError(f"{where}: its delta {list(delta.shape)} differs from the basis shape")
        elif delta is None or vec is not None:
            raise DirectionSetError(f"{where}: needs either a delta or basis coefficients")
    rng = [as_float(x) for x in f.list_field("range", limit=2)] or [-3.0, 3.0]
    if len(rng) != 2 or None in rng or not -1e6 <= rng[0] < rng[1] <= 1e6:
        raise f.fail("range", "must be [low, high] with finite low < high")
    return Direction(
        kind=kind,
        vector=vec,
        space=space,
        layers=layers,
        layer=layer,
        delta=delta,
        basis=basis,
        score=_score(f),
        range=(float(rng[0]), float(rng[1])),
        annotation=Annotation.from_json(d.get("annotation") or {}, where),
        info=dict(f.obj_field("info")),
    )


def _score(f: Fields) -> float | None:
    # display-only: a method's NaN or infinite score is kept, not refused
    v = f.obj.get("score")
    if v is None:
        return None
    x = as_float(v)
    if x is None:
        raise f.fail("score", "must be a number or null")
    return x


def _check_consistent(dirs: list[Direction], z_dim: Any, path: Path) -> None:
    """Latent directions of one space agree on their size (and z ones with the model's recorded z_dim)."""
    sizes: dict[str, tuple[int, int]] = {}
    if type(z_dim) is int:
        sizes["z"] = (z_dim, -1)
    for k, d in enumerate(dirs):
        if d.kind != "latent":
            continue
        n = d.vector.shape[-1]
        first = sizes.setdefault("w" if d.space in ("w", "w+") else d.space, (n, k))
        if first[0] != n:
            other = f"direction {first[1]}" if first[1] >= 0 else "the model's z_dim"
            raise DirectionSetError(f"{path}: direction {k} has {n} components but {other} has {first[0]}")


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


def read_manifest(path: str | Path) -> dict:
    """A direction set's manifest (the ``.json``, not its tensors), checked to be one of ours.

    Bounded (at most ``MAX_MANIFEST_BYTES``); any problem is a ``DirectionSetError`` naming the file.
    ``DirectionSet.load`` goes on to check every field against the tensors; ``read_summary`` reads
    only what a library listing shows.
    """
    path = manifest_path(Path(path))
    try:
        if not path.is_file():
            raise DirectionSetError(f"{path}: no such direction set file")
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise DirectionSetError(f"{path}: over {MAX_MANIFEST_BYTES >> 20} MB: not a direction set manifest")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DirectionSetError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise DirectionSetError(f"{path}: not a direction set (damaged or not JSON: not UTF-8 text)") from None
    try:
        man = json.loads(text)
    except (ValueError, RecursionError) as exc:
        reason = str(exc)[:120] if isinstance(exc, ValueError) else "nested too deeply"
        raise DirectionSetError(f"{path}: not a direction set (damaged or not JSON: {reason})") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise DirectionSetError(f'{path}: not a GAN Atlas direction set (no \'"format": "{FORMAT}"\')')
    version = man.get("version")
    if type(version) is not int or version > FORMAT_VERSION or version < 1:
        raise DirectionSetError(
            f"{path}: direction set format version {show(version)} is not supported (this program reads 1..{FORMAT_VERSION})"
        )
    return man


@dataclass(frozen=True)
class SetSummary:
    """What a library listing shows of a direction set, read from its manifest alone (no tensors)."""

    path: Path
    method: str
    model_name: str
    model_identity: str
    model_source: str
    count: int  # directions


def read_summary(path: str | Path) -> SetSummary:
    """The ``SetSummary`` of the set at ``path`` (``DirectionSetError`` if it is not a readable set)."""
    path = manifest_path(Path(path))
    man = read_manifest(path)
    model = man.get("model") if isinstance(man.get("model"), dict) else {}
    dirs = man.get("directions")

    def text(v: Any, default: str = "") -> str:
        return v[:MAX_TEXT] if isinstance(v, str) else default

    return SetSummary(
        path,
        text(man.get("method"), "?"),
        text(model.get("name"), "?"),
        text(model.get("identity")),
        text(model.get("source")),
        len(dirs) if isinstance(dirs, list) else 0,
    )


def library_sets(folder: str | Path) -> list[SetSummary]:
    """The summaries of the direction sets under ``folder`` (recursively); other files are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.rglob("*.json")):
        try:
            out.append(read_summary(path))
        except DirectionSetError:
            continue
    return out


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
