"""Editing real images on the default face model: the figures and pictures of the README section.

1. Faces made by the generator itself (true z known) are projected back: distance, PSNR, and
   how far the recovered z / image is from the true one.
2. A face that is not from the generator (scikit-image's bundled ``astronaut.png``, cropped to
   the face) is projected, then pivotal-tuned; before/after pictures.
3. Edits of it: the ``param-svd`` directions of the default edit layer (``main.py discover``), or
   any direction set given with --directions, as a grid and an MP4 through ``--latent``.

    .venv/bin/python scripts/demo_real_images.py --out docs/images/real --threads 1

Prints a Markdown table; writes PNGs, ``astronaut.latent`` and ``astronaut_edit.mp4`` to --out.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.device import cap_threads  # noqa: E402
from engine.export import resize, save_image  # noqa: E402
from engine.jobs import run_job  # noqa: E402
from engine.latents import save_latent  # noqa: E402
from engine.models import load_generator  # noqa: E402
from engine.projection import ProjectParams, TuneParams, project, project_image, psnr, render_latent  # noqa: E402
from engine.render import to_uint8  # noqa: E402

FACE_BOX = (155, 40, 295, 180)  # the face in the 512 x 512 picture, framed like the model's faces (l, t, r, b)


def big(img: np.ndarray, px: int = 192) -> np.ndarray:
    return resize(img, px, smooth=False)


def row(images: list[np.ndarray], pad: int = 4) -> np.ndarray:
    h = images[0].shape[0]
    out = np.full((h, sum(i.shape[1] for i in images) + pad * (len(images) - 1), 3), 255, np.uint8)
    x = 0
    for im in images:
        out[:, x : x + im.shape[1]] = im
        x += im.shape[1] + pad
    return out


def generated_faces(gen, seeds, params, out: Path) -> list[dict]:
    rows, figures = [], []
    with torch.no_grad():
        others = gen(gen.seed_latents([s + 1000 for s in seeds]))
    for i, s in enumerate(seeds):
        z_true = gen.seed_latents([s])
        with torch.no_grad():
            x_true = gen(z_true)
        target = to_uint8(x_true)[0]
        t0 = time.perf_counter()
        lat = run_job(project(gen, target, params))
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            x_rec = gen(lat.code)
        z = lat.code
        figures.append(
            {
                "seed": s,
                "seconds": round(seconds, 1),
                "distance_name": lat.metrics["distance_name"],
                "distance": lat.metrics["distance"],
                "psnr_vs_target": lat.metrics["psnr"],
                "psnr_vs_true_render": float(psnr(x_rec, x_true)),
                "z_error": float((z - z_true).norm()),
                "z_norm_true": float(z_true.norm()),
                "z_cosine": float(torch.nn.functional.cosine_similarity(z, z_true)),
                "psnr_other_seed": float(psnr(others[i : i + 1], x_true)),
                "distance_other_seed": float((others[i : i + 1].clamp(-1, 1) - x_true).square().mean()),
            }
        )
        rows.append(row([big(target), big(to_uint8(x_rec)[0])]))
        print(f"seed {s}: {figures[-1]}", flush=True)
    save_image(
        np.concatenate([np.pad(r, ((2, 2), (0, 0), (0, 0)), constant_values=255) for r in rows]),
        out / "generated_true_vs_recovered.png",
    )
    return figures


def astronaut(out: Path) -> Path:
    path = Path(str(importlib.resources.files("skimage") / "data" / "astronaut.png"))
    if not path.is_file():
        raise SystemExit(f"{path} is missing: pip install scikit-image==0.26.0 (the picture ships in its wheel)")
    face = Image.open(path).convert("RGB").crop(FACE_BOX)
    dst = out / "astronaut_face.png"
    face.save(dst)
    return dst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/images/real")
    ap.add_argument("--seeds", default="7,3,11")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--tune-steps", type=int, default=350)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--directions", default=None, help="a direction set to edit with (default: SVD-basis directions)")
    ap.add_argument("--index", default="2", help="direction(s) of the video (default 2: tan <-> pale in param-svd)")
    ap.add_argument("--shift", default="0.12", help="largest shift T of the video")
    ap.add_argument("--skip-generated", action="store_true")
    args = ap.parse_args()
    cap_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gen = load_generator("digiface-dcgan-64", device="cpu")
    params = ProjectParams(steps=args.steps)
    report: dict = {"threads": torch.get_num_threads(), "steps": args.steps}
    if not args.skip_generated:
        report["generated"] = generated_faces(gen, [int(s) for s in args.seeds.split(",")], params, out)

    photo = astronaut(out)
    t0 = time.perf_counter()
    lat = run_job(project_image(gen, photo, params, tune_params=TuneParams(steps=args.tune_steps)))
    report["astronaut"] = {
        **{k: v for k, v in lat.metrics.items() if not k.endswith("note")},
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"astronaut: {report['astronaut']}", flush=True)
    save_latent(lat, out / "astronaut.latent")
    from engine.projection import load_image

    target = to_uint8(load_image(photo, gen.resolution)[0])[0]
    untuned = render_latent(gen, type(lat)(lat.code, lat.space, lat.model))[0]
    tuned = render_latent(gen, lat)[0]
    save_image(row([big(target), big(untuned), big(tuned)]), out / "astronaut_before_after.png")

    from cli.main import main as cli

    directions = args.directions
    if directions is None:
        directions = str(out / "param_svd.json")
        cli(
            [
                "discover",
                "--model",
                "digiface-dcgan-64",
                "--method",
                "param-svd",
                "--k",
                "4",
                "--threads",
                str(args.threads),
                "--out",
                directions,
            ]
        )

    grid = out / "astronaut_edits_grid.png"
    cli(
        [
            "render",
            "--model",
            "digiface-dcgan-64",
            "--latent",
            str(out / "astronaut.latent"),
            "--directions",
            directions,
            "--index",
            "0-3",
            "--shifts",
            "-0.2:0.2:5",
            "--threads",
            str(args.threads),
            "--out",
            str(grid),
        ]
    )
    Image.open(grid).resize((Image.open(grid).width * 2, Image.open(grid).height * 2), Image.NEAREST).save(grid)
    video = out / "astronaut_edit.mp4"
    rc = cli(
        [
            "export",
            "--model",
            "digiface-dcgan-64",
            "--latent",
            str(out / "astronaut.latent"),
            "--directions",
            directions,
            "--index",
            args.index,
            "--shift",
            args.shift,
            "--frames",
            "48",
            "--fps",
            "24",
            "--size",
            "256",
            "--threads",
            str(args.threads),
            "--out",
            str(video),
        ]
    )
    report["video"] = str(video) if rc == 0 else f"export failed ({rc})"
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
