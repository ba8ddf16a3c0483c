"""``main.py render``: images of seeds, or a direction grid (directions x shifts x seeds)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cli.common import (
    add_class_arg,
    add_model_args,
    add_transform_args,
    drive,
    finite_float,
    load_model_for_set,
    load_model_from_args,
    out_path,
    parse_indices,
    parse_seeds,
    parse_shifts,
    positive_int,
    row_classes,
    transform_from_args,
)
from engine.errors import AtlasError, BadValueError

if TYPE_CHECKING:
    import torch


def register(sub) -> None:
    p = sub.add_parser(
        "render",
        help="render seeds, or a grid of directions x shifts x seeds",
        description="Render seeds to a PNG mosaic, or with --directions a grid whose rows are "
        "(direction, seed) and whose columns are shifts. An --out ending in .npy "
        "writes the raw float images (N, C, H, W) instead.",
    )
    add_model_args(p, default_help="the --directions set's own model, else digiface-dcgan-64")
    add_code_args(p, seeds="0-7", batch_size=32)
    p.add_argument("--latents", help="an .npy array of latents to render instead of seeds (N x z_dim; in --space)")
    p.add_argument("--directions", help="a direction set (.json)")
    p.add_argument("--index", default="0", help="direction indices for --directions: 3, 0,2,5, 0-7 or all")
    p.add_argument(
        "--shifts",
        default=None,
        help="shifts start:stop:count, e.g. -3:3:7, or a list -2,0,2 (default: each direction's range, 7 steps)",
    )
    p.add_argument("--columns", type=positive_int, default=None, help="columns of a seed mosaic")
    p.add_argument(
        "--out",
        "-o",
        required=True,
        help="output image (.png, .jpg, any image format of export), or .npy for raw floats",
    )
    p.set_defaults(func=run)


def add_code_args(p, *, seeds: str, batch_size: int) -> None:
    """The options that say what to render and how, shared by ``render`` and ``export``: seeds or a
    projected image (``load_codes``), truncation, class, space, noise, input transform, batch size."""
    p.add_argument("--seeds", default=seeds, help=f"seeds, e.g. 0-7 or 0,3,9 (default {seeds}; at most 1024)")
    p.add_argument(
        "--latent",
        default=None,
        help="a projected image's .latent file (from main.py project) instead of seeds: rendered and "
        "edited with its tuned weights, in its own space (--space w+ widens a w code)",
    )
    p.add_argument(
        "--truncation",
        "--psi",
        dest="psi",
        type=finite_float,
        default=1.0,
        help="truncation psi (style models; BigGAN: the model's truncation, and seeds draw truncated noise)",
    )
    add_class_arg(p)
    p.add_argument(
        "--space",
        default=None,
        choices=["z", "w", "w+"],
        help="space the codes are held and edited in: seeds are mapped (and truncated) into it "
        "(default: z, or a --latent's own space)",
    )
    p.add_argument("--noise", default="const", choices=["const", "random", "none"], help="noise inputs (StyleGAN2)")
    add_transform_args(p)
    p.add_argument(
        "--batch-size", type=positive_int, default=batch_size, help=f"images per forward pass (default {batch_size})"
    )


def load_codes(args, gen, default_classes: list[int] | None = None) -> tuple[torch.Tensor, str, list | None]:
    """The base codes to render, the space they are in, and their bases (``engine.render.Base``:
    a projected image's tuned weights and noise maps, and each row's class), ``None`` without any.
    Seeds and a projected image become codes in ``engine.seeds`` (as in the editor).

    Classes of a class-conditional model: ``--class`` (one for every row, or one per row), else
    ``default_classes`` (the classes a direction set was found on) cycled over the rows; a
    projected image (``--latent``) keeps the class it was fitted on unless ``--class`` is given.
    """
    from engine.render import with_classes
    from engine.seeds import seed_codes, widen_space

    text = getattr(args, "classes", None)
    if args.latent:
        from engine.latents import load_latent

        lat = load_latent(args.latent, gen)
        if text is not None:
            lat.classes = row_classes(gen, text, len(lat))
        space = args.space or widen_space([lat])
        codes, bases = seed_codes(gen, [lat], space, args.psi)
        return codes.cpu(), space, bases
    space = args.space or "z"
    if getattr(args, "latents", None):
        codes = load_latents_file(Path(args.latents), gen, space)
        classes = row_classes(gen, text, codes.shape[0], default=default_classes, rows="latent")
        if classes is None and gen.num_classes:
            gen.condition(codes.shape[0])  # the one-line "choose a class" error, before any rendering
        return codes, space, with_classes(None, classes, codes.shape[0])
    seeds = parse_seeds(args.seeds)
    classes = row_classes(gen, text, len(seeds), default=default_classes)
    codes, bases = seed_codes(gen, seeds, space, args.psi, classes)
    return codes.cpu(), space, bases


def load_latents_file(path: Path, gen, space: str) -> torch.Tensor:
    """``--latents``: a float ``.npy`` of N codes in ``space`` (``N x dim``, or one code), all finite."""
    import torch

    from engine.selection import MAX_SEEDS

    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise AtlasError(f"{path}: cannot read latents ({' '.join(str(exc).split())})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise AtlasError(f"{path}: latents must be an array of numbers, not {getattr(arr, 'dtype', type(arr))}")
    want = {"z": (gen.z_dim,), "w": (gen.w_dim,), "w+": (gen.num_ws, gen.w_dim)}[space]
    if arr.ndim == len(want):
        arr = arr[None]
    if tuple(arr.shape[1:]) != want:
        raise AtlasError(
            f"{path}: latents of shape {arr.shape} do not fit space {space} of "
            f"{gen.name} (expected N x {' x '.join(map(str, want))})"
        )
    if arr.shape[0] == 0:
        raise AtlasError(f"{path}: holds no latents (shape {arr.shape})")
    if arr.shape[0] > MAX_SEEDS:
        raise BadValueError(f"{path}: {arr.shape[0]} latents; at most {MAX_SEEDS} at once")
    codes = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    bad = ~torch.isfinite(codes).reshape(codes.shape[0], -1).all(dim=1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten().tolist()
        raise AtlasError(f"{path}: latent {rows[0]} holds NaN or infinite values ({len(rows)} such row(s))")
    return codes


def run(args) -> int:
    from engine.export import save_image, seed_mosaic
    from engine.render import Item, grid_image, materialize, render_items
    from engine.selection import check_render_size
    from engine.writers import suffixes

    raw = args.out.lower().endswith(".npy")
    out = out_path(args.out, (*suffixes("image"), ".npy"))
    dset = load_direction_set(args.directions) if args.directions else None
    if dset is not None:
        idx = parse_indices(args.index, len(dset))
        shifts = parse_shifts(args.shifts) if args.shifts else None
    gen = load_model_for_set(args, dset) if dset is not None else load_model_from_args(args)
    if args.space:
        gen.check_space(args.space)
    transform = transform_from_args(args, gen)
    codes, space, bases = load_codes(args, gen, dset.classes if dset is not None else None)
    bases = bases or [None] * codes.shape[0]
    kw = dict(space=space, psi=args.psi, noise=args.noise, batch_size=args.batch_size, raw=raw, transform=transform)
    if dset is None:
        check_render_size(codes.shape[0], gen.resolution, channels=gen.img_channels, raw=raw, what="render")
        result = drive(render_items(gen, [Item(c, (), b) for c, b in zip(codes, bases)], **kw), "render")
        if raw:
            np.save(out, result.numpy())
        else:
            save_image(seed_mosaic(result, args.columns), out)
        print(f"wrote {out} ({codes.shape[0]} images, {gen.resolution}px)")
        return 0

    dirs = [materialize(dset, k) for k in idx]
    if shifts is not None:
        shift_rows = [shifts] * len(dirs)
    else:
        shift_rows = [np.linspace(d.range[0], d.range[1], 7) for d in dirs]
    K, S, M = len(dirs), len(shift_rows[0]), codes.shape[0]
    check_render_size(K * S * M, gen.resolution, channels=gen.img_channels, raw=raw, what="the grid")
    items = [
        Item(c, ((d, float(t)),), b) for d, row in zip(dirs, shift_rows) for t in row for c, b in zip(codes, bases)
    ]
    flat = drive(render_items(gen, items, **kw), "render grid")
    if raw:
        np.save(out, flat.numpy())
    else:
        save_image(grid_image(flat.reshape(K, S, M, *flat.shape[1:])), out)
    print(f"wrote {out} ({K} directions x {S} shifts x {M} seeds)")
    return 0


def load_direction_set(text: str):
    """``--directions``: a direction set's ``.json`` (its tensors live in a file beside it)."""
    from engine.directions import DirectionSet

    path = Path(text)
    if path.suffix.lower() != ".json":
        raise BadValueError(
            f"--directions {text}: expected a direction set's .json file (its tensors sit beside it in a "
            f".safetensors file), not a {path.suffix or 'file without a suffix'}"
        )
    return DirectionSet.load(path)
