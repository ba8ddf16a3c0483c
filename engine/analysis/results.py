"""Result objects of the analyses, and their files.

Every analysis returns a dataclass deriving from ``AnalysisResult``. Array fields (numpy) go to
``STEM.npz``; everything else (numbers, strings, lists, dicts) goes to ``STEM.json``, which also
records the result's ``kind`` and the npz file's name, so ``load_result`` can rebuild the object
(the GUI opens saved results this way). Loading reads numbers and strings only
(``allow_pickle=False``): a result file never runs code.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from engine.errors import AtlasError, describe_exception, one_line

RESULT_FORMAT = "gan-atlas-analysis"
RESULT_VERSION = 1

_KINDS: dict[str, type[AnalysisResult]] = {}


def register_result(cls: type[AnalysisResult]) -> type[AnalysisResult]:
    """Class decorator: make ``cls`` loadable by ``load_result`` under ``cls.kind``."""
    if cls.kind in _KINDS and _KINDS[cls.kind] is not cls:
        raise ValueError(f"analysis result kind '{cls.kind}' registered twice")
    _KINDS[cls.kind] = cls
    return cls


@dataclasses.dataclass
class AnalysisResult:
    """Base of every analysis result: plain data plus numpy arrays."""

    kind: ClassVar[str] = ""

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        }

    def plain(self) -> dict[str, Any]:
        return {
            f.name: _jsonable(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if not isinstance(getattr(self, f.name), np.ndarray)
        }

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``STEM.json`` and ``STEM.npz`` (``path``'s suffix is ignored); returns both paths."""
        path = Path(path)
        stem = path.with_suffix("") if path.suffix in (".json", ".npz", ".png") else path
        jpath, npath = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".npz")
        jpath.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(npath, **self.arrays())
        doc = {
            "format": RESULT_FORMAT,
            "version": RESULT_VERSION,
            "kind": self.kind,
            "arrays": npath.name,
            "result": self.plain(),
        }
        jpath.write_text(json.dumps(doc, indent=1))
        return jpath, npath

    def plot(self, path: str | Path) -> Path:
        """Draw the result as a PNG at ``path`` (the subclass's ``draw``)."""
        return self.draw(Path(path))

    def draw(self, path: Path) -> Path:
        """The PNG figure of this result at ``path``; every analysis's result class defines it."""
        raise NotImplementedError

    def report_lines(self) -> list[str]:
        """The numbers worth printing, one line per direction (``main.py analyze``)."""
        return []


def load_result(path: str | Path) -> AnalysisResult:
    """Read a result written by ``AnalysisResult.save`` (give the .json, the .npz or the stem)."""
    path = Path(path)
    jpath = path.with_suffix(".json") if path.suffix in (".npz", ".png", "") else path
    if not jpath.is_file():
        raise AtlasError(f"{jpath}: no such analysis result file")
    try:
        doc = json.loads(jpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AtlasError(f"{jpath}: not an analysis result (damaged or not JSON: {one_line(exc)})") from None
    if not isinstance(doc, dict) or doc.get("format") != RESULT_FORMAT:
        raise AtlasError(f'{jpath}: not a GAN Atlas analysis result (no \'"format": "{RESULT_FORMAT}"\')')
    if doc.get("version") != RESULT_VERSION:
        raise AtlasError(
            f"{jpath}: analysis result version {doc.get('version')!r} is not supported "
            f"(this program reads {RESULT_VERSION})"
        )
    import engine.analysis  # noqa: F401 - registers every result kind

    cls = _KINDS.get(doc.get("kind"))
    if cls is None:
        raise AtlasError(f"{jpath}: unknown analysis kind {doc.get('kind')!r}; known: {', '.join(sorted(_KINDS))}")
    npath = jpath.with_name(str(doc.get("arrays", "")))
    if not npath.is_file() or "/" in str(doc.get("arrays", "")):
        raise AtlasError(f"{jpath}: its array file {npath.name} is missing (copy it beside the .json)")
    try:
        with np.load(npath, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise AtlasError(f"{npath}: damaged array file ({describe_exception(exc)})") from None
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in (doc.get("result") or {}).items() if k in names}
    values.update({k: v for k, v in arrays.items() if k in names})
    missing = sorted(
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise AtlasError(f"{jpath}: malformed {cls.kind} result (missing {', '.join(missing)})")
    return cls(**values)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v
