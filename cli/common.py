"""Argument parsing helpers and the tqdm driver shared by the commands.

Seeds, direction indices and shift ranges are parsed by ``engine.selection`` (the editor's fields
use the same parsers); the option types below refuse what argparse would let through (``nan``,
``inf``, zero or negative counts) before any work starts.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import AtlasError, BadValueError
from engine.jobs import Progress, run_job
from engine.selection import MAX_SEEDS
from engine.selection import parse_indices as _parse_indices
from engine.selection import parse_seeds as _parse_seeds
from engine.selection import parse_shifts as _parse_shifts


# ---- option types (argparse reports their ArgumentTypeError as "argument --x: <message>") ----
def _number(text: str, kind: type) -> float:
    try:
        v = kind(text)
    except ValueError:
        name = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"'{text}' is not {name}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
    return v


MAX_COUNT = 2**31 - 1  # no count option needs more; larger ones overflow torch's int arguments


def positive_int(text: str) -> int:
    v = _number(text, int)
    if not 1 <= v <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{text}: must be from 1 to {MAX_COUNT}")
    return v


def nonneg_int(text: str) -> int:
    v = _number(text, int)
    if not 0 <= v <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{text}: must be from 0 to {MAX_COUNT}")
    return v


def threads_int(text: str) -> int:
    v = _number(text, int)
    if not 0 <= v <= 1024:
        raise argparse.ArgumentTypeError(f"{text}: must be from 0 (automatic) to 1024")
    return v


def seed_int(text: str) -> int:
    v = _number(text, int)
    if not 0 <= v < 2**32:
        raise argparse.ArgumentTypeError(f"{text}: a seed is a whole number from 0 to {2**32 - 1}")
    return v


def finite_float(text: str) -> float:
    return _number(text, float)


def positive_float(text: str) -> float:
    v = _number(text, float)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be positive")
    return v


def nonneg_float(text: str) -> float:
    v = _number(text, float)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text}: must be 0 or more")
    return v


# ---- selections (engine.selection, with the option's name in the message) ----------------------
def parse_seeds(text: str, *, what: str = "--seeds", limit: int = MAX_SEEDS) -> list[int]:
    """``"0-7"``, ``"0,3,9"``, ``"1-3,10"`` or ``"5"`` -> seeds (at most ``limit``)."""
    return _parse_seeds(text, what=what, limit=limit)


def parse_shifts(text: str, *, what: str = "--shifts") -> np.ndarray:
    """``"-3:3:7"`` (start:stop:count, inclusive) or ``"-2,0,2"`` -> finite shifts (bounded count)."""
    return _parse_shifts(text, what=what)


def parse_indices(text: str, n: int, *, what: str = "--index") -> list[int]:
    """``"3"``, ``"0,2,5"``, ``"0-7"`` or ``"all"`` -> direction indices, checked against ``n``."""
    return _parse_indices(text, n, what=what)


def add_class_arg(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument(
        "--class",
        dest="classes",
        default=None,
        metavar="N|N0,N1,...",
        help=help
        or "class-conditional models: one class for every seed (N), or one per seed / latent (N0,N1,...); "
        "an index or a class name (e.g. 207 or 'golden retriever'); default with --directions: the classes "
        "the set was found on",
    )


def parse_classes(text: str, gen) -> list[int]:
    """``"207"``, ``"0,3,7"`` or ``"golden retriever,1"`` -> class indices of ``gen``, checked.

    Names match ``gen.class_names()`` ignoring case (``Generator.find_class``); an unknown or
    ambiguous name, an index out of range, or a model without classes is a one-line ``AtlasError``.
    """
    tokens = [t.strip() for t in str(text).split(",") if t.strip()]
    if not tokens:
        raise BadValueError(f"--class '{text}': no class given")
    try:
        return [gen.find_class(t) for t in tokens]
    except AtlasError as exc:
        raise AtlasError(f"--class {text}: {exc}") from None


def row_classes(
    gen, text: str | None, n: int, *, default: list[int] | None = None, rows: str = "seed"
) -> list[int] | None:
    """One class per row of ``n`` from ``--class`` (one for all, or exactly one per row).

    Without ``--class``: ``default`` (e.g. the classes a direction set was found on) cycled over
    the rows, or ``None`` (the model then asks for a class if it needs one).
    """
    if text is None:
        if default and gen.num_classes:
            return [int(default[i % len(default)]) for i in range(n)]
        return None
    classes = parse_classes(text, gen)
    if len(classes) == 1:
        return classes * n
    if len(classes) != n:
        raise BadValueError(f"--class {text}: {len(classes)} classes for {n} {rows}s; give one, or one per {rows}")
    return classes


# ---- Params (engine.params parses the text) ----------------------------------------------
def add_set_option(p, what: str = "analysis", example: str = "batch_size=32") -> None:
    """``--set NAME=VALUE`` (repeatable): any parameter of the method or analysis."""
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"any parameter of the {what} (repeatable), e.g. --set {example}",
    )


def set_pairs(texts: list[str]) -> dict[str, str]:
    """``["k=16", "lr = 1e-3"]`` -> ``{"k": "16", "lr": "1e-3"}`` (the text of each ``--set``)."""
    pairs: dict[str, str] = {}
    for text in texts:
        if "=" not in text:
            raise BadValueError(f"--set {text}: expected NAME=VALUE")
        name, value = (s.strip() for s in text.split("=", 1))
        pairs[name] = value
    return pairs


# ---- models ------------------------------------------------------------------------------------
def add_model_args(p: argparse.ArgumentParser, *, default_help: str = "digiface-dcgan-64") -> None:
    p.add_argument(
        "--model",
        "-m",
        default=None,
        help=f"built-in model name, checkpoint (.pt/.pkl) or adapter (.py); default: {default_help}",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    add_threads_arg(p)


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=threads_int, default=0, help="CPU threads for torch (default: all but one)")


def add_transform_args(p: argparse.ArgumentParser) -> None:
    """``--rotate`` / ``--translate``: the input transform of models that have one (StyleGAN3)."""
    p.add_argument(
        "--rotate",
        type=finite_float,
        default=None,
        metavar="DEG",
        help="StyleGAN3: rotate the image by DEG degrees (counter-clockwise), as NVIDIA's gen_images.py",
    )
    p.add_argument(
        "--translate",
        default=None,
        metavar="X,Y",
        help="StyleGAN3: translate the image by X,Y in units of the image size, as NVIDIA's gen_images.py",
    )


def transform_from_args(args, gen) -> Any:
    """The ``[3, 3]`` input transform asked for by ``--rotate`` / ``--translate``, or ``None``.

    Refused (``AtlasError``) on models without an input transform.
    """
    import math

    from engine.models.base import INPUT_TRANSFORM, input_transform

    rotate, translate = getattr(args, "rotate", None), getattr(args, "translate", None)
    if rotate is None and translate is None:
        return None
    if not gen.supports(INPUT_TRANSFORM):
        raise AtlasError(
            f"--rotate/--translate: model '{gen.name}' ({gen.family}) has no input transform; "
            "only StyleGAN3 models take them"
        )
    if rotate is not None and not math.isfinite(rotate):
        raise BadValueError(f"--rotate {rotate}: expected a finite angle in degrees")
    tx = ty = 0.0
    if translate is not None:
        try:
            tx, ty = (float(v) for v in str(translate).split(","))
        except ValueError:
            raise BadValueError(f"--translate '{translate}': expected X,Y, e.g. 0.1,-0.05") from None
        if not (math.isfinite(tx) and math.isfinite(ty)):
            raise BadValueError(f"--translate '{translate}': expected finite numbers")
    return input_transform(rotate or 0.0, (tx, ty))


def load_model_from_args(args) -> Any:
    from engine.device import cap_threads
    from engine.models import load_generator

    cap_threads(args.threads or None)
    return load_generator(args.model, device=args.device)


def set_model_spec(dset) -> str | None:
    """The model a direction set was found on, as a ``--model`` value: its built-in name or its
    file, if that is here. ``None`` if the set names no model; ``AtlasError`` if it names one that
    cannot be found (the user must say which model to use)."""
    from engine.models.registry import builtin_models

    ref = dset.model or {}
    source, name = ref.get("source"), ref.get("name")
    builtin = {m.name for m in builtin_models()}
    for cand in (source, name):
        if isinstance(cand, str) and cand and (cand in builtin or Path(cand).exists()):  # a file or a folder model
            return cand
    if not source and not name:
        return None
    where = dset.path.name if dset.path is not None else dset.title
    shown = f"{name!r}" + (f" ({source})" if source and source != name else "")
    raise AtlasError(f"{where}: the set was found on model {shown}, which is not here; pass --model")


def load_model_for_set(args, dset, *, quiet: bool = False):
    """``--model`` if given, else the model the set was found on; refuses a model the set's
    directions do not fit (latent size, layers) and warns when the set was found on another one."""
    from engine.device import cap_threads
    from engine.models import load_generator
    from engine.render import check_set_fits

    cap_threads(args.threads or None)
    spec = args.model or set_model_spec(dset)
    gen = load_generator(spec, device=args.device)
    check_set_fits(gen, dset)
    if not quiet:
        warn_foreign_set(dset, gen)
    return gen


def warn_foreign_set(dset, gen) -> None:
    """A warning on stderr when ``dset`` was found on another model than ``gen`` (it fits, though)."""
    ident = (dset.model or {}).get("identity")
    if ident and gen.identity and ident != gen.identity:
        where = dset.path.name if dset.path is not None else dset.title
        print(f"warning: {where} was found on model {dset.model.get('name')!r}, not on {gen.name!r}", file=sys.stderr)


# ---- running jobs ------------------------------------------------------------------------------
class StopRequests:
    """Ctrl-C (or ``kill``, SIGTERM) while a job runs asks it to stop at its next yield, where it is
    closed cleanly (its ``finally`` blocks run and a resumable job's state is saved); a second
    one stops at once. Outside the main thread (no signal handlers there) it does nothing."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self) -> None:
        self.requested = False
        self._old: dict = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step (press Ctrl-C again to stop at once)", file=sys.stderr)


def drive(job: Iterator[Progress], desc: str, *, quiet: bool = False) -> Any:
    """Run a job with a tqdm bar on stderr; metrics show as the bar's postfix.

    The bar starts at the job's first reported step, so the rate of a resumed job counts only the
    steps done in this run. Ctrl-C stops the job at its next yield (see ``StopRequests``) and
    raises ``KeyboardInterrupt`` after closing it.
    """
    from tqdm import tqdm

    bar = None

    def show(rec: Progress) -> None:
        nonlocal bar
        if stop.requested:
            raise KeyboardInterrupt
        if quiet:
            return
        if bar is None:
            bar = tqdm(
                total=rec.total or None,
                initial=rec.step,
                desc=desc,
                unit="step",
                file=sys.stderr,
                dynamic_ncols=True,
                leave=True,
            )
        if rec.step < bar.n:  # a new stage counts from 0 again (e.g. param-hybrid's training)
            bar.reset(total=rec.total or None)
        if rec.total and bar.total != rec.total:
            bar.total = rec.total
        post = {k: _fmt(v) for k, v in rec.metrics.items() if isinstance(v, (int, float))}
        if rec.stage:
            post = {"stage": rec.stage, **post}
        bar.set_postfix(post, refresh=False)
        if rec.step != bar.n:
            bar.update(rec.step - bar.n)
        else:
            bar.refresh()

    try:
        with StopRequests() as stop:
            return run_job(job, show)
    finally:
        if bar is not None:
            bar.close()
        job.close()


def _fmt(v: float) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# ---- output files ------------------------------------------------------------------------------
def out_path(text: str, allowed: tuple[str, ...]) -> Path:
    """``--out``: checked for its suffix, and for a folder we can write in (made if missing)."""
    p = Path(text)
    if p.suffix.lower() not in allowed:
        raise BadValueError(f"--out {text}: the file name must end with one of {', '.join(allowed)}")
    if p.is_dir():
        raise BadValueError(f"--out {text}: is a folder; give a file name ending with {', '.join(allowed)}")
    writable_folder(p.parent, p.name)
    return p


def writable_folder(folder: Path, name: str = "") -> Path:
    """``folder``, created if missing; ``AtlasError`` naming it if it is not a writable folder."""
    from engine.files import ensure_folder

    ensure_folder(folder, name)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise AtlasError(f"{folder}: the folder is not writable; cannot save {name or 'there'}")
    return folder
