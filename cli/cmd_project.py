"""``main.py project``: find the code of a photo in a generator (optionally tune the weights to it)."""

from __future__ import annotations

import sys

import numpy as np

from cli.common import (
    add_class_arg,
    add_model_args,
    drive,
    load_model_from_args,
    nonneg_float,
    out_path,
    parse_classes,
    positive_int,
    seed_int,
)


def register(sub) -> None:
    p = sub.add_parser(
        "project",
        help="project a photo into the generator (a .latent file to render and edit like a seed)",
        description="Fit a code of the model to a photo (centre-cropped and resized to the model's resolution): "
        "z for DCGAN-type models, w or w+ for StyleGAN2. --tune then fine-tunes the generator's "
        "weights on the photo with the code fixed (pivotal tuning), so edits start from a faithful "
        "reconstruction. Render or export the result with --latent FILE.latent.",
    )
    add_model_args(p)
    p.add_argument("--image", "-i", required=True, help="the photo (PNG, JPEG, ...; any size and aspect)")
    add_class_arg(p, "class-conditional models: the class to fit the photo on (one; recorded in the .latent)")
    p.add_argument(
        "--space",
        default="auto",
        choices=["auto", "z", "w", "w+"],
        help="space to fit in (auto: w for StyleGAN2, z otherwise)",
    )
    p.add_argument("--steps", type=positive_int, default=None, help="optimisation steps (default 500)")
    p.add_argument(
        "--distance",
        default="lpips-vgg",
        help="lpips-vgg (default), lpips-alex, lpips-squeeze or pixel; without the LPIPS backbone "
        "file the labelled pixel distance is used",
    )
    p.add_argument("--pixel-weight", type=nonneg_float, default=None, help="weight of the pixel MSE term (default 1)")
    p.add_argument(
        "--starts", type=positive_int, default=None, help="z only: random restarts fitted jointly (default 4)"
    )
    p.add_argument("--tune", action="store_true", help="then tune the weights on the photo (pivotal tuning)")
    p.add_argument("--tune-steps", type=positive_int, default=None, help="tuning steps (default 350)")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed of the fit")
    p.add_argument("--compare", default=None, help="also write the photo and its reconstruction side by side (.png)")
    p.add_argument("--out", "-o", required=True, help="output .latent file")
    p.set_defaults(func=run)


def run(args) -> int:
    from dataclasses import replace

    from engine.errors import BadValueError
    from engine.export import save_image
    from engine.latents import save_latent
    from engine.projection import ProjectParams, TuneParams, load_image, project_image, render_latent
    from engine.render import to_uint8

    out = out_path(args.out, (".latent",))
    compare = out_path(args.compare, (".png", ".jpg", ".jpeg")) if args.compare else None
    gen = load_model_from_args(args)
    if args.classes is not None:
        classes = parse_classes(args.classes, gen)
        if len(classes) != 1:
            raise BadValueError(f"--class {args.classes}: a photo is fitted on one class; give one")
        gen = gen.conditioned(classes=classes)
    params = ProjectParams(space=args.space, seed=args.seed)
    for name, value in (("steps", args.steps), ("pixel_weight", args.pixel_weight), ("starts", args.starts)):
        if value is not None:
            params = replace(params, **{name: value})
    tune = None
    if args.tune:
        tune = (
            TuneParams(seed=args.seed) if args.tune_steps is None else TuneParams(steps=args.tune_steps, seed=args.seed)
        )
    lat = drive(
        project_image(gen, args.image, params, tune_params=tune, distance=args.distance, tune_distance=args.distance),
        "project",
    )
    save_latent(lat, out)
    m = lat.metrics
    on = f", class {lat.classes[0]}" if lat.classes else ""
    print(f"wrote {out} ({lat.space} code of {gen.name}{on}; {m['seconds']:.1f} s)")
    if m.get("distance_note"):
        print(f"note: fitted with pixels: {m['distance_note']}", file=sys.stderr)
    print(f"reconstruction: {m['distance_name']} {m['distance']:.4f}, PSNR {m['psnr']:.2f} dB")
    if lat.tuned:
        print(
            f"after tuning {len(lat.tuning)} layers ({m['tuned_steps']} steps, {m['tuned_seconds']:.1f} s): "
            f"{m['tuned_distance_name']} {m['tuned_distance']:.4f}, PSNR {m['tuned_psnr']:.2f} dB"
        )
    if compare is not None:
        target, _ = load_image(args.image, gen.resolution, gen.img_channels)
        save_image(np.concatenate([to_uint8(target)[0], render_latent(gen, lat)[0]], axis=1), compare)
        print(f"wrote {compare} (photo | reconstruction)")
    return 0
