"""``main.py rca SET.json``: reconstructor classification accuracy of any direction set.

A fresh reconstructor is trained on the set's fixed directions (each probed over its suggested
range) and its accuracy on fresh samples is reported next to chance (1/K). Works for latent and
parameter-space sets, and under ``torchrun`` (DDP).
"""

from __future__ import annotations

import json
import sys
import time

from cli.common import (
    add_model_args,
    drive,
    finite_float,
    nonneg_float,
    nonneg_int,
    positive_int,
    seed_int,
    set_model_spec,
)
from engine.errors import AtlasError


def register(sub) -> None:
    p = sub.add_parser(
        "rca",
        help="reconstructor classification accuracy (RCA) of a direction set",
        description="Train a fresh reconstructor on the fixed directions of SET.json and report its "
        "accuracy on fresh samples (RCA, Voynov & Babenko). Chance is 1/K.",
    )
    p.add_argument("set", help="direction set (.json)")
    add_model_args(p)
    p.add_argument("--steps", type=nonneg_int, default=2000, help="reconstructor training steps (default 2000)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="pairs per step and rank (default 32)")
    p.add_argument("--lr", type=nonneg_float, default=1e-4, help="Adam learning rate of R (default 1e-4)")
    p.add_argument("--reconstructor", default="auto", choices=["auto", "lenet", "resnet18"])
    p.add_argument("--samples", type=positive_int, default=1024, help="fresh pairs for the accuracy (default 1024)")
    p.add_argument(
        "--truncation", "--psi", dest="psi", type=finite_float, default=1.0, help="truncation psi (style models)"
    )
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--record", action="store_true", help="store the result in the set's metrics (rca_eval)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from engine.device import cap_threads
    from engine.directions import DirectionSet
    from engine.discovery.distributed import init_from_env, shutdown
    from engine.discovery.rca import rca_of_set
    from engine.discovery.reconstructor import TrainConfig
    from engine.models import load_generator
    from engine.render import check_set_fits

    dset = DirectionSet.load(args.set)
    model = args.model or set_model_spec(dset)
    if not model:
        raise AtlasError(f"{dset.path}: the set does not say which model it came from; pass --model")
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        reconstructor=args.reconstructor,
        rca_samples=args.samples,
        rca_every=max(args.steps, 1),
        checkpoint_every=max(args.steps, 1),
        seed=args.seed,
    )
    cap_threads(args.threads or None)
    info, device = init_from_env(args.device)
    try:
        gen = load_generator(model, device=device)
        check_set_fits(gen, dset)
        if gen.num_classes and dset.classes:
            gen = gen.conditioned(classes=dset.classes)  # the classes the set was found on
        ident = dset.model.get("identity")
        if ident and gen.identity and ident != gen.identity and info.is_main:
            print(
                f"warning: {dset.path.name} was found on {dset.model.get('name')!r}, not on {gen.name!r}",
                file=sys.stderr,
            )
        t0 = time.perf_counter()
        report = drive(
            rca_of_set(gen, dset, cfg, device=device, psi=args.psi), "rca", quiet=args.quiet or not info.is_main
        )
        seconds = time.perf_counter() - t0
        if info.is_main:
            result = {
                "set": str(dset.path),
                "method": dset.method,
                "K": report.K,
                "rca": report.rca,
                "chance": report.chance,
                "steps": report.steps,
                "seconds": round(seconds, 1),
                "per_direction": [round(float(a), 4) for a in report.per_direction],
            }
            if args.json:
                print(json.dumps(result))
            else:
                print(
                    f"{dset.path.name}: RCA {report.rca:.3f} (chance {report.chance:.3f}) over K={report.K} "
                    f"{dset.method} directions after {report.steps} steps of R, {seconds:.1f} s"
                )
            if args.record:
                dset.metrics["rca_eval"] = {k: result[k] for k in ("rca", "chance", "steps", "per_direction")}
                dset.save_annotations()
        if info.active:
            torch.distributed.barrier()
    finally:
        shutdown()
    return 0
