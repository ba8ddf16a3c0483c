"""``main.py discover``: run a discovery method and save the direction set.

Any method registered in ``engine.discovery`` works here: its Params dataclass is the option
list (``--set name=value`` for every field; ``--k``, ``--steps``, ``--layer``, ``--baseline`` are
shortcuts). Resumable methods save their state every few steps under a key made of the model
identity, method and parameters; ``--resume`` continues that run. Under ``torchrun`` the
reconstructor methods train with DistributedDataParallel (only rank 0 writes and shows a bar).
"""

from __future__ import annotations

import sys
import time

from cli.common import add_class_arg, add_model_args, add_set_option, drive, out_path, parse_classes, set_pairs
from engine.errors import BadValueError

DESCRIPTION = "Run a discovery method on a generator and save the K directions it finds."


def register(sub) -> None:
    # The method list needs the engine (torch); it is read only when this command's help is shown
    # or the command runs, so `main.py --help` and the other commands start without importing it.
    p = sub.add_parser("discover", help="run a discovery method and save its direction set", description=DESCRIPTION)
    plain_help = p.format_help

    def format_help() -> str:
        from engine.discovery import methods

        p.description = DESCRIPTION + " Methods: " + ", ".join(f"{m.name} ({m.summary})" for m in methods())
        return plain_help()

    p.format_help = format_help
    add_model_args(p)
    p.add_argument("--method", required=True, help="discovery method (see the list above)")
    add_class_arg(
        p,
        "class-conditional models: the class the directions are found on (N), or several (N0,N1,...) that "
        "the sampled latents cycle through; recorded in the set, which renders on them by default",
    )
    p.add_argument("--k", type=str, default=None, help="number of directions (the method's 'k')")
    p.add_argument("--steps", type=str, default=None, help="training/iteration steps (the method's 'steps')")
    p.add_argument("--layer", default=None, help="layer to edit (parameter-space methods' 'layer')")
    p.add_argument("--baseline", default=None, help="latent-recon: random or coordinate (A fixed, only R trained)")
    add_set_option(p, "method", "lr=1e-3; see --list-params")
    p.add_argument("--list-params", action="store_true", help="print the method's parameters and defaults, then exit")
    p.add_argument("--resume", action="store_true", help="continue this run from its last checkpoint")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="start from step 0 and let this run replace its checkpoint even where that is further along",
    )
    p.add_argument("--checkpoint-dir", default=None, help="where job checkpoints live (default: the user cache folder)")
    p.add_argument("--out", "-o", default=None, help="direction set to write (.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _overrides(args, spec) -> dict[str, str]:
    import dataclasses

    fields = {f.name for f in dataclasses.fields(spec.params)}
    pairs = set_pairs(args.sets)
    for flag, name in (("k", "k"), ("steps", "steps"), ("layer", "layer"), ("baseline", "baseline")):
        value = getattr(args, flag)
        if value is None:
            continue
        if name not in fields:
            raise BadValueError(
                f"--{flag}: method '{spec.name}' has no parameter '{name}'; "
                f"its parameters are {', '.join(sorted(fields))}"
            )
        pairs[name] = value
    return pairs


def list_params(spec) -> None:
    import dataclasses

    print(f"{spec.name}: {spec.summary}")
    for f in dataclasses.fields(spec.params):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        extra = f" (one of {', '.join(map(str, f.metadata['choices']))})" if "choices" in f.metadata else ""
        print(f"  {f.name:<18} = {default!r:<10} {f.metadata.get('help', '')}{extra}")


def summary_line(dset, seconds: float) -> str:
    """One line: method, K, time, and RCA or the top scores."""
    head = f"{dset.method}: {len(dset)} directions in {seconds:.1f} s"
    if dset.classes:
        head += f" on class{'es' if len(dset.classes) > 1 else ''} {','.join(map(str, dset.classes))}"
    m = dset.metrics
    if "rca" in m:
        base = f", baseline {m['baseline']}" if m.get("baseline") not in (None, "none") else ""
        return f"{head}; RCA {m['rca']:.3f} (chance {1 / max(len(dset), 1):.3f}{base})"
    scores = [d.score for d in dset.directions[:5] if d.score is not None]
    if scores:
        label = "top eigenvalues" if dset.method in ("sefa", "param-spectrum") else "top scores"
        if dset.method == "ganspace":
            label = "top variances"
        line = f"{head}; {label} " + ", ".join(f"{s:.4g}" for s in scores)
        if "max_relative_residual" in m:  # param-spectrum: how exact the eigenpairs are
            line += (
                f"; max ||Hv - lambda v|| / lambda_1 = {m['max_relative_residual']:.2g} "
                f"after {m.get('iterations')} iterations"
            )
        if m.get("distance") == "pixel":
            line += "; distance: pixel (not perceptual)"
        return line
    return head


def run(args) -> int:
    import torch

    from engine.device import cap_threads
    from engine.discovery import get_method
    from engine.discovery.checkpoint import (
        Checkpointer,
        checkpoint_path,
        checkpoint_position,
        job_key,
        load_checkpoint,
        state_position,
    )
    from engine.discovery.distributed import init_from_env, shutdown
    from engine.models import load_generator

    spec = get_method(args.method)
    if args.list_params:
        list_params(spec)
        return 0
    if not args.out:
        raise BadValueError("--out SET.json is required")
    if args.resume and args.fresh:
        raise BadValueError("--resume continues the run's checkpoint and --fresh starts over; choose one")
    out = out_path(args.out, (".json",))
    params = spec.params_from_strings(_overrides(args, spec))
    if args.resume and not spec.resumable:
        raise BadValueError(f"method '{spec.name}' is not resumable (it runs in one go)")

    cap_threads(args.threads or None)
    info, device = init_from_env(args.device)
    try:
        gen = load_generator(args.model, device=device)
        if args.classes is not None:
            gen = gen.conditioned(classes=parse_classes(args.classes, gen))  # a view: weights shared
        spec.check_model(gen)
        key = job_key(gen, spec.name, params, world_size=info.world_size)
        ckpt = checkpoint_path(spec.name, key, args.checkpoint_dir)
        state = None
        if args.resume:
            if ckpt.is_file():
                state = load_checkpoint(ckpt, key=key)
                if info.is_main:
                    print(f"resuming {spec.name} from step {state_position(state)[-1]} ({ckpt})", file=sys.stderr)
            elif info.is_main:
                print(f"no checkpoint for this run in {ckpt.parent}; starting it from the beginning", file=sys.stderr)
        elif spec.resumable and not args.fresh and info.is_main:
            there = checkpoint_position(ckpt, key=key)
            if there is not None and there > (0, 0):
                print(
                    f"note: {ckpt} holds this run further along (step {there[-1]}); this run starts at step 0 and "
                    "keeps that checkpoint until it passes it (--resume continues it, --fresh replaces it)",
                    file=sys.stderr,
                )

        keeper = Checkpointer(ckpt, key, replace_later=args.fresh, enabled=info.is_main and spec.resumable)
        t0 = time.perf_counter()
        try:
            dset = drive(
                keeper.run(spec.run(gen, params, device=device, state=state)),
                spec.name,
                quiet=args.quiet or not info.is_main,
            )
        except KeyboardInterrupt:
            if keeper.saved is not None:
                print(
                    f"interrupted; checkpoint at step {keeper.saved[-1]} in {ckpt}: run the same command with "
                    "--resume to continue",
                    file=sys.stderr,
                )
            raise
        seconds = time.perf_counter() - t0
        if info.is_main:
            dset.params = dict(dset.params or {})
            dset.metrics.setdefault("seconds", seconds)
            if info.world_size > 1:
                dset.metrics["world_size"] = info.world_size
            path = dset.save(out)
            print(summary_line(dset, seconds) + f"; wrote {path}")
        if info.active:
            torch.distributed.barrier()
    finally:
        shutdown()
    return 0
