"""Argument parsing helpers and the tqdm driver shared by the commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import AtlasError
from engine.jobs import Progress


def parse_seeds(text: str) -> list[int]:
    """``"0-7"``, ``"0,3,9"``, ``"1-3,10"`` or ``"5"`` -> list of ints."""
    seeds: list[int] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part[1:]:
                i = part.index("-", 1)
                a, b = int(part[:i]), int(part[i + 1 :])
                if b < a:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise AtlasError(f"--seeds '{text}': expected e.g. 0-7, 0,3,9 or 5") from None
    if not seeds:
        raise AtlasError(f"--seeds '{text}': no seeds given")
    return seeds


def parse_shifts(text: str) -> np.ndarray:
    """``"-3:3:7"`` (start:stop:count, inclusive) or ``"-2,0,2"`` -> array of shifts."""
    try:
        if ":" in text:
            a, b, n = text.split(":")
            n = int(n)
            if n < 1:
                raise ValueError
            return np.linspace(float(a), float(b), n)
        return np.array([float(x) for x in text.split(",") if x.strip()])
    except ValueError:
        raise AtlasError(
            f"--shifts '{text}': expected start:stop:count (e.g. -3:3:7) or a list (e.g. -2,0,2)"
        ) from None


def parse_indices(text: str, n: int) -> list[int]:
    """``"3"``, ``"0,2,5"``, ``"0-7"`` or ``"all"`` -> direction indices, checked against ``n``."""
    if str(text).strip().lower() == "all":
        return list(range(n))
    idx = parse_seeds(text)
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise AtlasError(f"--index {text}: the set has {n} directions (0..{n - 1}); {bad[0]} is out of range")
    return idx


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
        raise AtlasError(f"--class '{text}': no class given")
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
        raise AtlasError(f"--class {text}: {len(classes)} classes for {n} {rows}s; give one, or one per {rows}")
    return classes


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        "-m",
        default=None,
        help="built-in model name, checkpoint (.pt/.pkl) or adapter (.py); default: digiface-dcgan-64",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: all but one)")


def add_transform_args(p: argparse.ArgumentParser) -> None:
    """``--rotate`` / ``--translate``: the input transform of models that have one (StyleGAN3)."""
    p.add_argument(
        "--rotate",
        type=float,
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
        raise AtlasError(f"--rotate {rotate}: expected a finite angle in degrees")
    tx = ty = 0.0
    if translate is not None:
        try:
            tx, ty = (float(v) for v in str(translate).split(","))
        except ValueError:
            raise AtlasError(f"--translate '{translate}': expected X,Y, e.g. 0.1,-0.05") from None
        if not (math.isfinite(tx) and math.isfinite(ty)):
            raise AtlasError(f"--translate '{translate}': expected finite numbers")
    return input_transform(rotate or 0.0, (tx, ty))


def load_model_from_args(args) -> Any:
    from engine.device import cap_threads
    from engine.models import load_generator

    cap_threads(args.threads or None)
    return load_generator(args.model, device=args.device)


def drive(job: Iterator[Progress], desc: str, *, quiet: bool = False) -> Any:
    """Run a job with a tqdm bar on stderr; metrics show as the bar's postfix."""
    from tqdm import tqdm

    bar = None
    try:
        while True:
            try:
                rec = next(job)
            except StopIteration as stop:
                return stop.value
            if quiet:
                continue
            if bar is None:
                bar = tqdm(
                    total=rec.total or None, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True, leave=True
                )
            if rec.total and bar.total != rec.total:
                bar.total = rec.total
            bar.n = rec.step
            post = {k: _fmt(v) for k, v in rec.metrics.items() if isinstance(v, (int, float))}
            if rec.stage:
                post = {"stage": rec.stage, **post}
            bar.set_postfix(post, refresh=False)
            bar.refresh()
    finally:
        if bar is not None:
            bar.close()
        job.close()


def _fmt(v: float) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def out_path(text: str, allowed: tuple[str, ...]) -> Path:
    p = Path(text)
    if p.suffix.lower() not in allowed:
        raise AtlasError(f"--out {text}: the file name must end with one of {', '.join(allowed)}")
    p.parent.mkdir(parents=True, exist_ok=True)
    return p
