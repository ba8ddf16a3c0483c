"""``main.py export``: morph videos (MP4 / GIF), grid images and batch exports of a direction set."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cli.common import (
    add_model_args,
    drive,
    finite_float,
    load_model_for_set,
    parse_indices,
    parse_seeds,
    parse_shifts,
    positive_float,
    positive_int,
    transform_from_args,
    warn_foreign_set,
    writable_folder,
)
from engine.errors import BadValueError


def register(sub) -> None:
    from cli.cmd_render import add_code_args
    from engine.writers import describe, writers

    videos, images = describe("video"), describe("image")
    p = sub.add_parser(
        "export",
        help=f"export morph videos ({videos}) or grids ({images}) of directions",
        description=f"Export directions of a set. --out ending in {videos} writes a morph video: one "
        "--index is swept -T..T..-T, several (e.g. 2,5,7) make a path through them; the seeds "
        f"are tiled side by side. --out ending in {images} writes a grid (rows = direction x seed, "
        "columns = shifts). --interpretable exports every direction marked interpretable into "
        "the folder --out, one file per direction plus index.csv. File types: "
        + "; ".join(f"{w.name} ({' '.join(w.suffixes)}, {w.kind})" for w in writers())
        + ".",
    )
    add_model_args(p, default_help="the set's own model")
    p.add_argument("--directions", "-d", required=True, help="a direction set (.json)")
    p.add_argument("--index", default="0", help="direction index, or several for a path / grid rows: 2,5,7 or 0-3")
    p.add_argument(
        "--interpretable",
        action="store_true",
        help="batch: one file per direction marked interpretable, into the folder --out",
    )
    p.add_argument(
        "--format",
        default="mp4",
        choices=[w.name for w in writers()],
        help="file type of a batch export: a video format writes morphs, an image format grids (default mp4)",
    )
    add_code_args(p, seeds="0", batch_size=16)  # several seeds are tiled side by side
    p.add_argument("--frames", type=positive_int, default=60, help="frames per loop (default 60)")
    p.add_argument("--fps", type=positive_float, default=30.0, help="frames per second (default 30)")
    p.add_argument(
        "--shift",
        "-T",
        dest="T",
        type=finite_float,
        default=None,
        help="largest shift T (default: each direction's suggested range)",
    )
    p.add_argument(
        "--shifts", default=None, help="grid columns start:stop:count, e.g. -3:3:7 (default: the range, 7 steps)"
    )
    p.add_argument(
        "--size",
        type=positive_int,
        default=None,
        help="height in px of each seed's image (default: the model's resolution; videos at least 256)",
    )
    p.add_argument("--nearest", action="store_true", help="upscale with nearest neighbour instead of smooth (Lanczos)")
    p.add_argument(
        "--labels",
        action="store_true",
        help="grids: write each row's direction (#index name) and seed on the left and each column's shift t on top",
    )
    p.add_argument(
        "--out",
        "-o",
        required=True,
        help=f"output {videos} (video) or {images} (grid), or a folder with --interpretable",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from cli.cmd_render import load_codes, load_direction_set
    from engine.export import (
        MorphOptions,
        direction_title,
        export_grid,
        export_interpretable,
        export_morph,
    )
    from engine.render import materialize
    from engine.selection import check_render_size
    from engine.writers import describe, get_writer, suffixes, writer_for

    out = Path(args.out)
    suffix = out.suffix.lower()
    if not args.interpretable and suffix not in suffixes():
        raise BadValueError(
            f"--out {args.out}: end it with {describe('video')} (video) or {describe('image')} (grid), "
            "or use --interpretable with a folder"
        )
    if args.interpretable and suffix in suffixes():
        raise BadValueError(
            f"--out {args.out}: with --interpretable, --out is a folder (choose the file type with --format)"
        )
    writer = get_writer(args.format) if args.interpretable else writer_for(out)
    writable_folder(out if args.interpretable else out.parent, "the batch export" if args.interpretable else out.name)
    opts = MorphOptions(frames=args.frames, fps=args.fps, size=args.size, smooth=not args.nearest, T=args.T)
    opts.check()
    dset = load_direction_set(args.directions)
    shifts = parse_shifts(args.shifts) if args.shifts else None
    idx = None if args.interpretable else parse_indices(args.index, len(dset))
    gen = load_model_for_set(args, dset, quiet=True)
    transform = transform_from_args(args, gen)
    warn_foreign_set(dset, gen)
    codes, space, bases = load_codes(args, gen, dset.classes)
    kw = dict(space=space, psi=args.psi, noise=args.noise, batch_size=args.batch_size, bases=bases, transform=transform)
    M = codes.shape[0]
    still = writer.kind == "image"
    tile = args.size or (gen.resolution if still else max(256, gen.resolution))
    grid_kw = dict(labels=True, seed_names=_seed_names(args, codes.shape[0])) if args.labels else {}

    if args.interpretable:
        if writer.holds_frames:
            check_render_size(opts.frames * M, tile, what=f"each {writer.name} video")
        paths = drive(
            export_interpretable(gen, dset, codes, out, fmt=args.format, opts=opts, shifts=shifts, **kw, **grid_kw),
            "export batch",
        )
        print(f"wrote {len(paths)} files and index.csv to {out}")
        return 0

    dirs = [materialize(dset, k) for k in idx]
    if still:
        if shifts is None:
            lo = min(d.range[0] for d in dirs)
            hi = max(d.range[1] for d in dirs)
            shifts = np.linspace(lo, hi, 7)
        if grid_kw:
            grid_kw["names"] = [direction_title(k, d) for k, d in zip(idx, dirs)]
        check_render_size(len(dirs) * len(shifts) * M, max(tile, gen.resolution), what="the grid")
        job = export_grid(gen, codes, dirs, shifts, out, size=args.size, smooth=not args.nearest, **kw, **grid_kw)
        drive(job, "export grid")
        print(f"wrote {out} ({len(dirs)} directions x {len(shifts)} shifts x {M} seeds)")
        return 0
    if writer.holds_frames:
        check_render_size(opts.frames * M, tile, what=f"the {writer.name} video")
    drive(export_morph(gen, codes, dirs, out, opts, **kw), "export video")
    what = f"direction {idx[0]}" if len(idx) == 1 else f"path through directions {','.join(map(str, idx))}"
    print(f"wrote {out} ({opts.frames} frames at {opts.fps:g} fps, {what}, {M} seed(s))")
    return 0


def _seed_names(args, n: int) -> list[str]:
    """Grid row labels of the seeds: ``seed 3``, or the projected image's file name."""
    if args.latent:
        stem = Path(args.latent).stem
        return [stem] if n == 1 else [f"{stem} [{i}]" for i in range(n)]
    return [f"seed {s}" for s in parse_seeds(args.seeds)]
