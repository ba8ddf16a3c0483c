"""``main.py train``: train our StyleGAN2 (or, with --regressor, the factor regressor) on the procedural set."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from cli.common import drive, out_path, positive_float, positive_int, seed_int, threads_int
from engine.errors import BadValueError

DATA_SETS = ("procedural",)


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train our StyleGAN2 (or the factor regressor) on the procedural face set",
        description="Train a StyleGAN2 on the procedural face set (non-saturating logistic loss, lazy R1, "
        "EMA of G, style mixing) with checkpoints and --resume; --out receives the EMA generator "
        "in the compact built-in format. With --regressor, train the factor regressor instead.",
    )
    p.add_argument("--data", default="procedural", choices=DATA_SETS, help="training data (procedural faces)")
    p.add_argument("--out", "-o", required=True, help="output .pt (EMA generator weights, or the regressor)")
    p.add_argument("--regressor", action="store_true", help="train the factor regressor instead of the GAN")
    p.add_argument("--res", type=positive_int, default=32, help="image resolution (default 32)")
    p.add_argument(
        "--kimg",
        type=positive_float,
        default=None,
        help="GAN: thousands of real images to show D (default from the config)",
    )
    p.add_argument("--batch", type=positive_int, default=None, help="batch size (default from the config)")
    p.add_argument(
        "--run-dir",
        default=None,
        help="GAN: folder for checkpoints, sample grids and the log (default: next to --out, NAME.run/)",
    )
    p.add_argument("--resume", action="store_true", help="GAN: continue from the run folder's checkpoint")
    p.add_argument("--checkpoint-minutes", type=positive_float, default=5.0, help="GAN: minutes between checkpoints")
    p.add_argument("--config", default=None, help="GAN: JSON object of TrainConfig overrides, e.g. '{\"lr\": 0.002}'")
    p.add_argument("--steps", type=positive_int, default=None, help="regressor: optimisation steps")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    p.add_argument("--threads", type=threads_int, default=0, help="CPU threads for torch (default: all but one)")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.device import cap_threads, pick_device

    cap_threads(args.threads or None)
    device = pick_device(args.device)
    out = out_path(args.out, (".pt",))
    if args.regressor:
        return _train_regressor(args, out, device)
    return _train_gan(args, out, device)


def _train_regressor(args, out: Path, device) -> int:
    from engine.data.regressor import regressor_payload
    from engine.training.checkpoint import atomic_save
    from engine.training.regressor import RegressorParams, train_regressor

    over = {"resolution": args.res, "seed": args.seed}
    if args.steps:
        over["steps"] = args.steps
    if args.batch:
        over["batch_size"] = args.batch
    params = RegressorParams(**over)
    t0 = time.perf_counter()
    model, metrics = drive(train_regressor(params, device=device), "train regressor")
    metrics["train_seconds"] = round(time.perf_counter() - t0, 1)
    atomic_save(regressor_payload(model, metrics), out)
    print(f"wrote {out}  (held-out mean R^2 {metrics['mean_r2']:.4f} on {metrics['held_out_n']} images)")
    for name, s in metrics["per_factor"].items():
        print(f"  {name:13s} R^2 {s['r2']:.4f}  MAE {s['mae']:.4f}")
    return 0


def _train_gan(args, out: Path, device) -> int:
    from engine.training.stylegan2 import TrainConfig, export_generator, train

    over = {"resolution": args.res, "seed": args.seed}
    if args.kimg is not None:
        over["kimg"] = args.kimg
    if args.batch:
        over["batch_size"] = args.batch
    if args.config:
        try:
            extra = json.loads(args.config)
        except json.JSONDecodeError as exc:
            raise BadValueError(f"--config '{args.config}': not a JSON object ({exc.msg})") from None
        if not isinstance(extra, dict):
            raise BadValueError(f"--config '{args.config}': expected a JSON object of TrainConfig fields")
        over.update(extra)
    cfg = TrainConfig.make(**over)
    run_dir = Path(args.run_dir) if args.run_dir else out.with_suffix(".run")
    job = train(cfg, run_dir, device=device, resume=args.resume, checkpoint_seconds=60 * args.checkpoint_minutes)
    result = drive(job, "train stylegan2")
    export_generator(result, out)
    print(f"wrote {out} (EMA generator, {result.cur_nimg / 1000:.1f} kimg); run folder {run_dir}", file=sys.stderr)
    return 0
