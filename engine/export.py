"""Writing images, grids and morph videos to disk.

Every pixel written here comes from ``engine.render`` (``render_batch`` / ``render_grid`` /
``to_uint8`` / ``grid_image``); this module only resizes and tiles, and hands the result to the
writer of the file's suffix (``engine.writers``: PNG, JPEG, MP4, GIF, and any format registered
there): a still (``save_image``, ``export_grid``) to an ``image`` writer, a morph's frames
(``export_morph``) to a ``video`` writer.

Morph videos
------------
A morph shows one direction swept ``-T .. T .. -T`` (``render.sweep``: a seamless loop) or a
path through several directions (``render.path_shifts``: ramp each one up in turn, then back),
for one or several seeds tiled side by side. Frames have even sides (yuv420p needs them).
Files are written under a temporary name and renamed when
complete, so a cancelled or failed export never leaves a truncated video behind.
"""

from __future__ import annotations

import csv
import math
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.directions import Direction, DirectionSet
from engine.errors import AtlasError, BadValueError
from engine.files import ensure_folder
from engine.jobs import Pacer, Progress, relabel, wait_for
from engine.writers import get_writer, writer_for

GRID_PAD = 2  # px of white between (and around) the cells of a direction grid


def save_image(image: np.ndarray, path: str | Path) -> Path:
    """Save a ``[H, W, 3]`` uint8 image with the image writer of ``path``'s suffix (``engine.writers``)."""
    path = Path(path)
    writer = writer_for(path, "image")
    ensure_folder(path.parent, path.name)
    writer.save(np.ascontiguousarray(image), path)
    return path


def seed_mosaic(images: np.ndarray, columns: int | None = None, pad: int = 2) -> np.ndarray:
    """``[N, H, W, 3]`` -> one image with ``columns`` columns (default: about square).

    ``pad`` px of white go *between* tiles only: one image comes back exactly ``[H, W, 3]``, the
    generator's pixels and nothing else (a frame would change what projecting the file fits).
    """
    from engine.render import compose_grid

    n = images.shape[0]
    if n == 1:
        return np.ascontiguousarray(images[0])
    cols = max(1, min(columns or int(np.ceil(np.sqrt(n))), n))
    rows = int(np.ceil(n / cols))
    cells = np.full((rows * cols, *images.shape[1:]), 255, np.uint8)
    cells[:n] = images
    out = compose_grid(cells.reshape(rows, cols, *images.shape[1:]), pad=pad)
    return out[pad : out.shape[0] - pad, pad : out.shape[1] - pad] if pad > 0 else out


# ---- pixels ------------------------------------------------------------------------------
def resize(images: np.ndarray, size: int | None, *, smooth: bool = True) -> np.ndarray:
    """Scale ``[..., H, W, 3]`` uint8 images so that their height is ``size`` px.

    ``smooth`` uses Lanczos filtering (photographs); otherwise nearest neighbour, which keeps
    a low-resolution generator's pixels crisp. ``size=None`` or the current height is a no-op.
    """
    from PIL import Image

    H, W = images.shape[-3:-1]
    if size is None or int(size) == H:
        return images
    size = int(size)
    if size < 1:
        raise AtlasError(f"output size {size} px: must be at least 1")
    width = max(1, round(W * size / H))
    flat = images.reshape(-1, H, W, images.shape[-1])
    method = Image.Resampling.LANCZOS if smooth else Image.Resampling.NEAREST
    out = np.stack([np.asarray(Image.fromarray(im).resize((width, size), method)) for im in flat])
    return out.reshape(*images.shape[:-3], size, width, images.shape[-1])


def tile_row(images: np.ndarray, pad: int = 4, background: int = 0) -> np.ndarray:
    """``[M, H, W, 3]`` -> ``[H, M*W + (M-1)*pad, 3]``: the seeds side by side."""
    M, H, W, C = images.shape
    out = np.full((H, M * W + (M - 1) * pad, C), background, np.uint8)
    for m in range(M):
        out[:, m * (W + pad) : m * (W + pad) + W] = images[m]
    return out


def make_even(image: np.ndarray, background: int = 0) -> np.ndarray:
    """Pad ``[H, W, 3]`` by one row / column where needed so both sides are even (yuv420p)."""
    H, W = image.shape[:2]
    if H % 2 == 0 and W % 2 == 0:
        return image
    out = np.full((H + H % 2, W + W % 2, image.shape[2]), background, np.uint8)
    out[:H, :W] = image
    return out


# ---- morphs ------------------------------------------------------------------------------
MAX_FRAMES = 100_000  # frames of one morph loop
MAX_SIZE = 8192  # px, height of one exported tile


@dataclass(frozen=True)
class MorphOptions:
    """How a morph video looks.

    ``frames`` per loop; ``fps`` frames per second; ``size`` the height in px of each seed's
    tile (``None``: the generator's resolution, at least 256 px); ``smooth`` Lanczos vs nearest
    upscaling; ``T`` the largest shift in the direction's units (``None``: each direction's
    suggested range, ``max(|lo|, |hi|)``); ``pad`` px between seeds.
    """

    frames: int = 60
    fps: float = 30.0
    size: int | None = None
    smooth: bool = True
    T: float | None = None
    pad: int = 4

    def check(self) -> None:
        if not 2 <= self.frames <= MAX_FRAMES:
            raise BadValueError(f"frames {self.frames}: a morph needs 2 to {MAX_FRAMES} frames")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise BadValueError(f"fps {self.fps}: must be a positive number")
        if self.size is not None and not 8 <= self.size <= MAX_SIZE:
            raise BadValueError(f"size {self.size} px: must be from 8 to {MAX_SIZE}")
        if self.T is not None and not math.isfinite(self.T):
            raise BadValueError(f"shift T {self.T}: must be a finite number")


def direction_extent(d: Direction) -> float:
    """The default largest shift of a direction: ``max(|lo|, |hi|)`` of its suggested range."""
    return float(max(abs(d.range[0]), abs(d.range[1])))


def morph_shifts(
    directions: Sequence[Direction], frames: int, T: float | None = None
) -> list[list[tuple[Direction, float]]]:
    """The shifts of each frame: one direction swept ``-T..T..-T``, or a path through several."""
    from engine.render import path_shifts, sweep

    if not directions:
        raise AtlasError("a morph needs at least one direction")
    if len(directions) == 1:
        d = directions[0]
        return [[(d, float(t))] for t in sweep(T if T is not None else direction_extent(d), frames)]
    Ts = [T if T is not None else direction_extent(d) for d in directions]
    return path_shifts(directions, Ts, frames)


def render_morph(
    gen,
    codes: torch.Tensor,
    directions: Sequence[Direction],
    opts: MorphOptions = MorphOptions(),
    *,
    space: str = "z",
    psi: float = 1.0,
    noise: str = "const",
    batch_size: int = 16,
    bases=None,
    transform=None,
) -> Iterator[Progress]:
    """Job: the frames of a morph, yielded in chunks; returns nothing (see ``export_morph``).

    ``codes [M, ...]`` in ``space``; ``bases`` (optional, M of ``engine.render.Base`` or None):
    the seeds' own tuned weights / noise maps (projected images); ``transform``: the input
    transform of every frame (models with one, see ``engine.models.base.input_transform``).
    Each ``Progress.partial`` is a uint8 array ``[n, H_out, W_out, 3]`` of the next frames (seeds
    tiled side by side, sides even), or ``None`` when a piece completed no frame. Pieces hold at
    most ``batch_size`` images, fewer when slower than ``engine.jobs.PASS_SECONDS``.
    """
    from engine.render import render_batch, to_uint8

    opts.check()
    rows = morph_shifts(directions, opts.frames, opts.T)
    M = codes.shape[0]
    if M < 1:
        raise AtlasError("a morph needs at least one seed")
    size = opts.size or max(gen.resolution, 256)
    F = len(rows)
    yield Progress(0, F, stage="render")
    pending: list[np.ndarray] = []  # images of frames not complete yet (frame-major, seed-minor)
    done = 0
    # pieces of at most batch_size images, fewer when slower than engine.jobs.PASS_SECONDS; a frame's
    # seeds may straddle two pieces
    for sl in Pacer(batch_size, device=gen.device).slices(F * M):
        r = range(sl.start, sl.stop)
        with torch.no_grad():
            imgs = to_uint8(
                render_batch(
                    gen,
                    codes[[i % M for i in r]],
                    [rows[i // M] for i in r],
                    space=space,
                    psi=psi,
                    noise=noise,
                    bases=[bases[i % M] for i in r] if bases is not None else None,
                    transform=transform,
                )
            )
        pending.extend(resize(imgs, size, smooth=opts.smooth))
        n = len(pending) // M
        out = None
        if n:
            frames = np.stack(pending[: n * M]).reshape(n, M, *pending[0].shape)
            out = np.stack([make_even(tile_row(f, opts.pad)) for f in frames])
            pending, done = pending[n * M :], done + n
        yield Progress(done, F, stage="render", partial=out)


def export_morph(
    gen,
    codes: torch.Tensor,
    directions: Sequence[Direction],
    path: str | Path,
    opts: MorphOptions = MorphOptions(),
    *,
    space: str = "z",
    psi: float = 1.0,
    noise: str = "const",
    batch_size: int = 16,
    bases=None,
    transform=None,
) -> Iterator[Progress]:
    """Job: write a morph video with the video writer of ``path``'s suffix (``engine.writers``: MP4,
    GIF, ...); returns the path.

    See ``render_morph`` for the arguments. Cancelling (closing the job) removes the partial file.
    """
    path = Path(path)
    writer = writer_for(path, "video")
    opts.check()
    ensure_folder(path.parent, path.name)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix.lower()}")
    sink = writer.open(tmp, opts.fps)
    done = False
    finishing = None  # the encoder's last work, once started on a helper thread (see below)
    thrown_away = threading.Event()

    def finish() -> None:
        try:
            sink.close()
        finally:
            if thrown_away.is_set():  # cancelled while this ran: the file is nobody's
                tmp.unlink(missing_ok=True)

    try:
        render = dict(space=space, psi=psi, noise=noise, batch_size=batch_size, bases=bases, transform=transform)
        for rec in render_morph(gen, codes, directions, opts, **render):
            for frame in rec.partial if rec.partial is not None else ():
                sink.add(frame)
            yield Progress(rec.step, rec.total, stage="video", message=path.name)
        # the encoder's last frames (MP4), or the whole palette and encoding (GIF): seconds, in one
        # call, on a helper thread while the job yields
        finishing = Progress(opts.frames, opts.frames, stage="video", message=f"{path.name}: writing")
        yield from wait_for(finish, record=finishing)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise AtlasError(f"{path}: cannot write the video there ({exc.strerror or exc})") from None
        done = True
    finally:
        if not done:
            thrown_away.set()
            if finishing is None:
                sink.abort()
            tmp.unlink(missing_ok=True)
    return path


# ---- grids -------------------------------------------------------------------------------
def export_grid(
    gen,
    codes: torch.Tensor,
    directions: Sequence[Direction],
    shifts: Sequence[float],
    path: str | Path,
    *,
    size: int | None = None,
    smooth: bool = True,
    space: str = "z",
    psi: float = 1.0,
    noise: str = "const",
    batch_size: int = 32,
    bases=None,
    transform=None,
    labels: bool = False,
    names: Sequence[str] | None = None,
    seed_names: Sequence[str] | None = None,
) -> Iterator[Progress]:
    """Job: a grid image (PNG, JPEG, ... by ``path``'s suffix), rows = (direction, seed), columns =
    shifts; returns the path.

    ``size`` is each cell's height in px (``None``: the generator's resolution); ``bases``: the
    seeds' ``engine.render.Base`` (projected images), see ``render_morph``. ``labels`` writes
    each row's direction (``names``, default: the directions' names) and seed (``seed_names``,
    default ``seed 0`` ...) on the left and each column's shift t on top (``label_grid``).
    """
    from engine.render import grid_image, render_grid

    if not directions:
        raise AtlasError("a grid needs at least one direction")
    path = Path(path)
    writer_for(path, "image")  # a grid is a still: refused before any rendering if no image writer has the suffix
    grid = yield from render_grid(
        gen,
        codes,
        list(directions),
        list(shifts),
        bases,
        space=space,
        psi=psi,
        noise=noise,
        batch_size=batch_size,
        transform=transform,
    )
    grid = resize(grid, size, smooth=smooth)
    image = grid_image(grid, pad=GRID_PAD)
    if labels:
        M = grid.shape[2]
        names = (
            list(names)
            if names is not None
            else [d.annotation.name or f"direction {i}" for i, d in enumerate(directions)]
        )
        seeds = list(seed_names) if seed_names is not None else [f"seed {m}" for m in range(M)]
        rows = [f"{name}\n{seed}" if M > 1 else name for name in names for seed in seeds]
        image = label_grid(image, grid.shape[3:5], rows, [_shift_text(t) for t in shifts], pad=GRID_PAD)
    save_image(image, path)
    return path


def _shift_text(t: float) -> str:
    return "0" if float(t) == 0 else f"{float(t):+.3g}"


def label_grid(
    image: np.ndarray,
    cell: tuple[int, int],
    rows: Sequence[str],
    columns: Sequence[str],
    *,
    pad: int = GRID_PAD,
    corner: str = "t",
) -> np.ndarray:
    """A grid image (``compose_grid`` layout: ``pad`` px around ``cell = (H, W)`` tiles) with a
    label column on the left (one text per row, may hold a line break) and a header row on top
    (one text per column, centred over it). Text is dark grey on white, sized to the cells."""
    from PIL import Image, ImageDraw, ImageFont

    H, W = cell
    size = int(min(28, max(10, round(0.15 * min(H, 2 * W)))))
    font = ImageFont.load_default(size=size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    margin = max(4, size // 2)

    def extent(text: str) -> tuple[int, int]:
        x0, y0, x1, y1 = probe.multiline_textbbox((0, 0), text, font=font, spacing=2)
        return x1 - x0, y1 - y0

    left = max([extent(t)[0] for t in rows] + [extent(corner)[0]]) + 2 * margin
    top = max([extent(t)[1] for t in columns] + [extent(corner)[1]]) + 2 * margin
    out = Image.new("RGB", (image.shape[1] + left, image.shape[0] + top), (255, 255, 255))
    out.paste(Image.fromarray(np.ascontiguousarray(image)), (left, top))
    draw = ImageDraw.Draw(out)
    ink = (40, 40, 40)
    draw.text((margin, top // 2), corner, font=font, fill=ink, anchor="lm")
    for c, text in enumerate(columns):
        x = left + pad + c * (W + pad) + W // 2
        draw.text((x, top // 2), text, font=font, fill=ink, anchor="mm")
    for r, text in enumerate(rows):
        y = top + pad + r * (H + pad) + H // 2
        draw.multiline_text((left - margin, y), text, font=font, fill=ink, anchor="rm", align="right", spacing=2)
    return np.asarray(out)


# ---- batches -----------------------------------------------------------------------------
def interpretable_indices(dset: DirectionSet) -> list[int]:
    """Indices of the directions a person marked interpretable (``yes``)."""
    return [k for k, d in enumerate(dset.directions) if d.annotation.interpretable == "yes"]


def direction_title(k: int, d: Direction) -> str:
    """How a grid label names direction ``k`` of a set: ``#3 smile`` (``#3`` when unnamed)."""
    return f"#{k} {d.annotation.name}".strip()


def slug(text: str, fallback: str = "") -> str:
    """A file-name-safe version of a direction's name."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip("-._")
    return s[:48] or fallback


def export_interpretable(
    gen,
    dset: DirectionSet,
    codes: torch.Tensor,
    folder: str | Path,
    *,
    fmt: str = "mp4",
    opts: MorphOptions = MorphOptions(),
    shifts: Sequence[float] | None = None,
    space: str = "z",
    psi: float = 1.0,
    noise: str = "const",
    batch_size: int = 16,
    bases=None,
    transform=None,
    labels: bool = False,
    seed_names: Sequence[str] | None = None,
) -> Iterator[Progress]:
    """Job: one file per direction marked interpretable, plus ``index.csv``; returns the paths.

    ``fmt`` names a writer (``engine.writers``): a video writer (``mp4``, ``gif``, ...) writes a
    morph with ``opts``, an image writer (``png``, ``jpg``, ...) a grid over ``shifts`` (default 7
    steps across each direction's range; ``labels``: see ``export_grid``). Files are named
    ``KKK-name.ext``.
    """
    from engine.render import materialize

    writer = get_writer(fmt)
    still = writer.kind == "image"
    chosen = interpretable_indices(dset)
    if not chosen:
        where = dset.path.name if dset.path else dset.title
        raise AtlasError(f"{where}: no direction is marked interpretable (yes); tag some first")
    folder = ensure_folder(Path(folder), "the batch export")
    opts.check()
    per = 1 if still else opts.frames
    total = per * len(chosen)
    render = dict(space=space, psi=psi, noise=noise, batch_size=batch_size, bases=bases, transform=transform)
    written: list[Path] = []
    rows = []
    yield Progress(0, total, stage="batch")
    for i, k in enumerate(chosen):
        d = materialize(dset, k)
        name = d.annotation.name
        path = folder / f"{k:03d}-{slug(name, 'direction')}{writer.suffix}"
        if still:
            row = np.asarray(shifts) if shifts is not None else np.linspace(d.range[0], d.range[1], 7)
            job = export_grid(
                gen,
                codes,
                [d],
                row,
                path,
                size=opts.size,
                smooth=opts.smooth,
                labels=labels,
                names=[direction_title(k, d)],
                seed_names=seed_names,
                **render,
            )
        else:
            job = export_morph(gen, codes, [d], path, opts, **render)
        yield from relabel(
            job,
            lambda rec, i=i, path=path: Progress(
                i * per + int((0.0 if still else rec.fraction) * per),
                total,
                stage="batch",
                message=f"{path.name} ({i + 1}/{len(chosen)})",
            ),
        )
        written.append(path)
        rows.append((k, name, d.annotation.rating or "", ";".join(d.annotation.tags), path.name))
        yield Progress((i + 1) * per, total, stage="batch", message=f"{path.name} ({i + 1}/{len(chosen)})")
    try:
        with open(folder / "index.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["index", "name", "rating", "tags", "file"])
            w.writerows(rows)
    except OSError as exc:
        raise AtlasError(f"{folder / 'index.csv'}: cannot write the index ({exc.strerror or exc})") from None
    return written
