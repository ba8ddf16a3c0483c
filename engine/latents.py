"""Projected images as seeds: the ``.latent`` file and ``load_latent``.

A ``Latent`` is what ``engine.projection`` finds for a photo: a code in one space of the model
(``z [N, z_dim]``, ``w [N, w_dim]`` or ``w+ [N, num_ws, w_dim]``), the noise maps the StyleGAN2
projector fitted with it, and optionally the weight deltas of pivotal tuning. Rendered through
``engine.render`` with its ``bases()`` it is a seed like any other: latent and parameter
directions apply on top of it in previews, grids and videos.

File format
-----------
``photo.latent`` is a safetensors file: tensor ``code`` and ``noise/<layer>`` (``[N, R, R]``), and
in its header metadata key ``gan_atlas`` a JSON manifest (format name and version, space, model
name / identity / source, source image path, sha256, size and crop box, reconstruction distances
and PSNR, and a reference to the tuned weights). Tuned weights live beside it in
``photo.tuned.<sha8>.safetensors`` (one weight delta ``[*weight_shape]`` per tuned layer; the
manifest records the file's sha256). Saving writes the tuned-weights file first, then atomically
replaces the ``.latent`` file, then removes an older tuned-weights file, so a reader sees a
complete old or new pair whatever moment the program stops.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.directions import Direction
from engine.errors import AtlasError, describe_exception
from engine.fields import Fields, float_tensor, plain_name, show
from engine.files import atomic_write as _atomic_write
from engine.files import remove_own_file

FORMAT = "gan-atlas-latent"
FORMAT_VERSION = 1
SUFFIX = ".latent"
_META_KEY = "gan_atlas"


class LatentFileError(AtlasError):
    """A ``.latent`` file is missing, damaged, from a newer version, or does not fit the model."""


@dataclass(eq=False)  # compared and hashed by identity: it is a seed in requests, sets and dict keys
class Latent:
    """A projected image as a code in one space of a model, with what it needs to render.

    ``code``: ``[N, ...]`` in ``space`` (usually N = 1). ``noise``: ``{layer: [N, R, R]}`` fitted
    noise maps (StyleGAN2; empty otherwise). ``tuning``: ``{layer: delta [*weight_shape]}`` weight
    shifts from pivotal tuning (empty when not tuned), applied with t = 1 whenever this latent is
    rendered. ``metrics``: reconstruction figures (``distance``, ``distance_name``, ``psnr``, and
    ``tuned_*`` after tuning). ``image``: where the photo came from. ``classes``: one class per
    code row on a class-conditional model (the class the fit used), else ``None``.
    """

    code: torch.Tensor
    space: str
    model: dict[str, Any]
    image: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    noise: dict[str, torch.Tensor] = field(default_factory=dict)
    tuning: dict[str, torch.Tensor] = field(default_factory=dict)
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    classes: list[int] | None = None

    @property
    def name(self) -> str:
        """A short label: the file's stem, else the source image's stem."""
        if self.path is not None:
            return self.path.stem
        src = self.image.get("path")
        return Path(src).stem if src else "projected"

    @property
    def tuned(self) -> bool:
        return bool(self.tuning)

    def __len__(self) -> int:
        return int(self.code.shape[0])

    def bases(self) -> list:
        """One ``engine.render.Base`` per code row: the tuned weights (t = 1) and noise maps."""
        from engine.render import Base

        shifts = tuple(
            (Direction("param", layer=layer, delta=delta, info={"tuning": True}), 1.0)
            for layer, delta in self.tuning.items()
        )
        out = []
        for i in range(len(self)):
            noise = {layer: maps[i] for layer, maps in self.noise.items()} or None
            cls = self.classes[i] if self.classes else None
            out.append(Base(shifts, noise, cls) if shifts or noise or cls is not None else None)
        return out

    def codes_in(self, gen, space: str, *, psi: float = 1.0) -> torch.Tensor:
        """The code expressed in ``space`` (z codes are mapped, with ``psi``; w widens to w+).

        Raises ``AtlasError`` when that is impossible (a w / w+ code cannot go back to z, nor w+ to w).
        """
        gen.check_space(space)
        code = self.code.to(gen.device)
        if space == self.space:
            return code
        if self.space == "z":
            with torch.no_grad():
                return gen.encode(code, space, psi=psi, classes=self.classes)
        if self.space == "w" and space == "w+":
            return code.unsqueeze(1).expand(-1, gen.num_ws, -1).contiguous()
        raise AtlasError(
            f"{self.name} was projected into {self.space}; it can be shown and edited in "
            + ("w or w+" if self.space == "w" else "w+")
            + f", not in {space}"
        )

    def check_fits(self, gen, where: str | None = None) -> None:
        """Raise ``LatentFileError`` if the code, noise maps or tuned weights do not fit ``gen``."""
        where = where or (self.path.name if self.path else self.name)
        if self.space not in gen.spaces:
            raise LatentFileError(
                f"{where}: a code in space {self.space}, which model '{gen.name}' does not have "
                f"(its spaces: {', '.join(gen.spaces)})"
            )
        want = {"z": (gen.z_dim,), "w": (gen.w_dim,), "w+": (gen.num_ws, gen.w_dim)}[self.space]
        if self.code.dim() != len(want) + 1 or tuple(self.code.shape[1:]) != want:
            raise LatentFileError(
                f"{where}: code of shape {list(self.code.shape)} does not fit space {self.space} of "
                f"model '{gen.name}' (expected N x {' x '.join(map(str, want))})"
            )
        if self.classes is not None:
            if len(self.classes) != len(self) or not gen.num_classes or max(self.classes) >= gen.num_classes:
                raise LatentFileError(
                    f"{where}: classes {self.classes} do not fit model '{gen.name}' ({gen.num_classes} classes)"
                )
        elif gen.num_classes:
            raise LatentFileError(f"{where}: has no class, but model '{gen.name}' is class-conditional")
        stored = gen.noise_maps()
        for layer, maps in self.noise.items():
            if layer not in stored or tuple(maps.shape) != (len(self), *stored[layer].shape):
                raise LatentFileError(f"{where}: noise map for {layer} does not fit model '{gen.name}'")
        layers = {i.name: i for i in gen.editable_layers()}
        for layer, delta in self.tuning.items():
            if layer not in layers or tuple(delta.shape) != layers[layer].shape:
                raise LatentFileError(
                    f"{where}: tuned weights of {layer} ({list(delta.shape)}) do not fit model '{gen.name}'"
                )
            if layers[layer].mapping and self.space != "z":
                raise LatentFileError(
                    f"{where}: tuned weights of {layer}, a mapping-network layer, cannot act on a code in {self.space}"
                )


def model_ref(gen) -> dict[str, Any]:
    """The model identity a latent records."""
    return {"name": gen.name, "identity": gen.identity, "source": gen.source, "resolution": gen.resolution}


# ---- files ---------------------------------------------------------------------------------
def save_latent(lat: Latent, path: str | Path) -> Path:
    """Write ``lat`` to ``path`` (``.latent``; tuned weights beside it), atomically. Returns the path."""
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != SUFFIX:
        raise AtlasError(f"{path}: a projected latent file must end with {SUFFIX}")
    path.parent.mkdir(parents=True, exist_ok=True)
    old_name, old_sha = _stored_tuned_ref(path)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "space": lat.space,
        "model": lat.model,
        "image": lat.image,
        "metrics": lat.metrics,
        "params": lat.params,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "tuning": None,
        "classes": lat.classes,
    }
    new_tuned = None
    if lat.tuning:
        blob = save({k: v.detach().float().cpu().contiguous() for k, v in lat.tuning.items()})
        sha = hashlib.sha256(blob).hexdigest()
        new_tuned = path.with_name(f"{path.stem}.tuned.{sha[:8]}.safetensors")
        _atomic_write(new_tuned, blob)
        manifest["tuning"] = {"file": new_tuned.name, "sha256": sha, "layers": list(lat.tuning)}
    tensors = {"code": lat.code.detach().float().cpu().contiguous()}
    tensors.update({f"noise/{k}": v.detach().float().cpu().contiguous() for k, v in lat.noise.items()})
    manifest["tensors_sha256"] = tensors_digest(tensors)
    blob = save(tensors, metadata={_META_KEY: json.dumps(manifest, default=_plain)})
    _atomic_write(path, blob)
    if old_name != (new_tuned.name if new_tuned is not None else None):
        # only the tuned-weights file an earlier save of this latent wrote (same folder, own name, own hash)
        pattern = re.compile(re.escape(path.stem) + r"\.tuned\.[0-9a-f]{8}\.safetensors")
        remove_own_file(path.parent, old_name, pattern, old_sha)
    lat.path = path
    return path


def read_latent(path: str | Path) -> Latent:
    """Read a ``.latent`` file (and its tuned weights) without checking it against a model.

    Every manifest field and tensor is checked first: types, shapes (one code row per noise map),
    float values that are finite, and the tensors' checksum (files written before it existed
    have none and are checked structurally only).
    """
    from safetensors.torch import load

    path = Path(path)
    try:
        if not path.is_file():
            raise LatentFileError(f"{path}: no such latent file" if not path.exists() else f"{path}: not a file")
        data = path.read_bytes()
    except OSError as exc:
        raise LatentFileError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    try:
        raw = load(data)
        manifest = json.loads(_header_metadata(data)[_META_KEY])
    except Exception as exc:  # noqa: BLE001 - whatever is wrong, it is the file's fault (RecursionError too)
        raise LatentFileError(
            f"{path}: not a readable {SUFFIX} file, damaged or of another kind ({describe_exception(exc)})"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise LatentFileError(
            f"{path}: not a GAN Atlas latent file (format {show(manifest.get('format'))})"
            if isinstance(manifest, dict)
            else f"{path}: damaged manifest"
        )
    m = Fields(manifest, f"{path}: manifest", LatentFileError)
    version = manifest.get("version")
    if type(version) is not int or version > FORMAT_VERSION:
        raise LatentFileError(
            f"{path}: written by a newer GAN Atlas (format version {show(version)}; this one reads up to {FORMAT_VERSION})"
        )
    m.integer("version", lo=1, hi=FORMAT_VERSION)
    space = m.text("space", None, choices=("z", "w", "w+"))
    want = m.sha256("tensors_sha256")
    if want is not None and tensors_digest(raw) != want:
        raise LatentFileError(f"{path}: its tensors do not match their checksum (damaged file)")
    extra = [k for k in raw if k != "code" and not (k.startswith("noise/") and 0 < len(k) - 6 <= 200)]
    if "code" not in raw or extra:
        raise LatentFileError(f"{path}: damaged manifest (tensors {', '.join(show(k) for k in sorted(raw)[:4])})")
    code = float_tensor(raw["code"], f"{path}: code", LatentFileError)
    if code.dim() != (3 if space == "w+" else 2) or not 1 <= code.shape[0] <= MAX_ROWS:
        raise LatentFileError(f"{path}: a {space} code of shape {list(code.shape)} (expected N x ...)")
    n = code.shape[0]
    noise = {}
    for k, v in raw.items():
        if k.startswith("noise/"):
            maps = float_tensor(v, f"{path}: noise map {show(k[6:])}", LatentFileError)
            if maps.dim() != 3 or maps.shape[0] != n or maps.shape[1] != maps.shape[2]:
                raise LatentFileError(f"{path}: noise map {show(k[6:])} of shape {list(maps.shape)} is not {n} x R x R")
            noise[k[6:]] = maps
    model = Fields(m.obj_field("model"), f"{path}: model", LatentFileError)
    for key in ("name", "identity", "source"):
        model.optional_text(key, limit=4096)
    model.optional_integer("resolution", lo=1, hi=1 << 20)
    tuning = _read_tuning(path, m) if m.has("tuning") else {}
    classes = manifest.get("classes")
    if classes is not None and (
        not isinstance(classes, list)
        or len(classes) != n
        or any(type(c) is not int or not 0 <= c < 1 << 20 for c in classes)
    ):
        raise LatentFileError(
            f"{path}: damaged manifest (classes {show(classes)}: one class index per code row expected)"
        )
    return Latent(
        code=code,
        space=space,
        model=dict(model.obj),
        image=dict(m.obj_field("image")),
        metrics=dict(m.obj_field("metrics")),
        params=dict(m.obj_field("params")),
        noise=noise,
        tuning=tuning,
        path=path,
        classes=classes,
    )


MAX_ROWS = 10_000


def _read_tuning(path: Path, m: Fields) -> dict[str, torch.Tensor]:
    """The tuned weight deltas beside ``path``, checked against the manifest's name, hash and layers."""
    from safetensors.torch import load

    t = Fields(m.obj_field("tuning"), f"{path}: tuning", LatentFileError)
    name = t.obj.get("file")
    if not plain_name(name):
        raise LatentFileError(f"{path}: its tuned weights must lie beside it in {path.parent} (got {show(name)})")
    sha = t.sha256("sha256")
    layers = t.text_list("layers", limit=10_000, each=200)
    tpath = path.with_name(name)
    try:
        if not tpath.is_file():
            raise LatentFileError(
                f"{path}: its tuned weights {name} are missing; they must lie beside it in {path.parent}"
            )
        blob = tpath.read_bytes()
    except OSError as exc:
        raise LatentFileError(f"{tpath}: cannot read the tuned weights ({exc.strerror or exc})") from None
    if sha is None or hashlib.sha256(blob).hexdigest() != sha:
        raise LatentFileError(f"{tpath}: tuned weights do not match {path.name} (sha256 differs)")
    try:
        raw = load(blob)
    except Exception as exc:  # noqa: BLE001
        raise LatentFileError(f"{tpath}: unreadable tuned weights ({describe_exception(exc)})") from None
    if sorted(raw) != sorted(layers):
        raise LatentFileError(f"{tpath}: holds other layers than {path.name} lists")
    return {k: float_tensor(v, f"{tpath}: tuned weights of {show(k)}", LatentFileError) for k, v in raw.items()}


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes (in name order): a ``.latent``'s checksum."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_latent(path: str | Path, gen=None, *, strict: bool = True) -> Latent:
    """Read a ``.latent`` file and check it against ``gen`` (when given).

    Returns the ``Latent`` (``.code [N, ...]``, ``.space``, ``.bases()`` for rendering). A code,
    noise map or tuned weight that does not fit the model is refused. A latent projected on
    another model (different identity) is refused too when ``strict`` (its code would not show
    the photo on this model); with ``strict=False`` it loads with a note in ``.warnings``.
    """
    lat = read_latent(path)
    if gen is None:
        return lat
    where = Path(path).name
    lat.check_fits(gen, where)
    ident = lat.model.get("identity")
    if ident and gen.identity and ident != gen.identity:
        made = lat.model.get("name") or "another model"
        src = lat.model.get("source")
        msg = (
            f"{where} was projected on model '{made}' (identity {str(ident)[:12]}), not on '{gen.name}' "
            f"({gen.identity[:12]}); its code would not reproduce the image here"
            + (f"; load it with --model {src}" if src else "")
        )
        if strict:
            raise LatentFileError(msg)
        lat.warnings.append(msg)
    return lat


def _header_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors blob (8-byte little-endian header length, JSON header)."""
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or 8 + n > len(data):
        raise ValueError("bad header length")
    meta = json.loads(data[8 : 8 + n].decode("utf-8")).get("__metadata__") or {}
    if _META_KEY not in meta:
        raise ValueError("no GAN Atlas manifest in the header")
    return meta


def _stored_tuned_ref(path: Path) -> tuple[object, object]:
    """``(file name, sha256)`` of the tuned weights the ``.latent`` at ``path`` names, unchecked (or Nones)."""
    try:
        tinfo = json.loads(_header_metadata(path.read_bytes())[_META_KEY]).get("tuning")
        return (tinfo.get("file"), tinfo.get("sha256")) if isinstance(tinfo, dict) else (None, None)
    except Exception:  # noqa: BLE001 - no readable file there yet
        return None, None


def _plain(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
