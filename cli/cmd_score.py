"""``main.py score SET.json [SET2.json ...]``: ground-truth purity and coverage of direction sets.

On a model with known factors (the built-in procedural StyleGAN2), every direction is moved
across its range on many seeds and the factor regressor reads the factors back; see
``engine.analysis.score`` for the definitions. Prints one table per set and, for several sets,
a comparison of the methods.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cli.analysis_args import load_model_for_set, params_from_args
from cli.common import add_model_args, add_set_option, drive, finite_float, nonneg_float, parse_indices, positive_int
from engine.errors import BadValueError

SHORTCUTS = {
    "seeds": "seeds",
    "steps": "steps",
    "t_max": "t_max",
    "purity": "purity_threshold",
    "min_effect": "min_effect",
    "psi": "psi",
    "batch_size": "batch_size",
}


def register(sub) -> None:
    p = sub.add_parser(
        "score",
        help="ground-truth score of direction sets on a model with known factors",
        description="For each direction, move t across its range on many seeds and measure how "
        "each factor (read by the factor regressor) changes: effect per factor, purity "
        "(share of the effect on the main factor), clean or not, and each set's "
        "coverage (factors moved cleanly by some direction).",
    )
    p.add_argument("sets_", nargs="+", metavar="SET.json", help="direction sets (one per method to compare)")
    add_model_args(p)
    p.add_argument("--index", default="all", help="direction indices of each set (default all)")
    p.add_argument("--seeds", type=positive_int, default=None, help="latents per direction (default 64)")
    p.add_argument("--steps", type=positive_int, default=None, help="shifts across each direction's range (default 9)")
    p.add_argument(
        "--t-max", dest="t_max", type=nonneg_float, default=None, help="use [-T, T] instead of each direction's range"
    )
    p.add_argument(
        "--purity", type=nonneg_float, default=None, help="purity threshold of a clean direction (default 0.7)"
    )
    p.add_argument(
        "--min-effect",
        dest="min_effect",
        type=nonneg_float,
        default=None,
        help="noise floor: smallest clean effect, in factor standard deviations (default 0.25)",
    )
    p.add_argument("--psi", type=finite_float, default=None, help="truncation (style models)")
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, default=None)
    p.add_argument("--regressor", default=None, help="factor regressor weights (default: the shipped procedural one)")
    add_set_option(p)
    p.add_argument("--out", "-o", default=None, help="folder for each set's NAME.score.{png,json,npz}")
    p.add_argument("--markdown", action="store_true", help="print the comparison as a Markdown table")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.analysis import get_analysis
    from engine.analysis.factors import procedural_factors
    from engine.directions import DirectionSet

    spec = get_analysis("score")
    params = params_from_args(spec, args, SHORTCUTS)
    sets = [DirectionSet.load(p) for p in args.sets_]
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None and out_dir.suffix:
        raise BadValueError(f"--out {args.out}: give a folder (each set writes NAME.score.png/.json/.npz into it)")
    gen = None
    factors = None
    results = []
    warned = set()
    for dset in sets:
        if gen is None or args.model is None:
            gen = load_model_for_set(args, dset)
        if not gen.name.startswith("procedural") and gen.name not in warned:
            warned.add(gen.name)
            print(
                f"warning: {gen.name} is not the procedural model; the factor regressor only knows procedural faces",
                file=sys.stderr,
            )
        factors = factors or procedural_factors(args.regressor, device=gen.device)
        idx = parse_indices(args.index, len(dset))
        r = drive(spec.run(gen, dset, idx, params, factors=factors), f"score {dset.title}", quiet=args.quiet)
        results.append(r)
        print("\n".join(table(r)))
        print()
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            stem = out_dir / f"{dset.title}.score"
            r.plot(stem.with_name(stem.name + ".png"))
            r.save(stem)
    if len(results) > 1 or args.markdown:
        print("\n".join(comparison(results, markdown=args.markdown)))
    return 0


def table(r) -> list[str]:
    """One set's directions: main factor, purity, effect, clean, then the effect on every factor."""
    names = r.factor_names
    w = max(6, *(len(n) for n in names))
    head = (
        f"{r.set_title} ({r.method}, {len(r.indices)} directions) on {r.model}: {r.seeds} seeds; "
        f"effect = factor change across the range in factor standard deviations"
    )
    cols = "  ".join(f"{n[:w]:>{w}}" for n in names)
    lines = [head, f"{'dir':>4}  {'main factor':<{w}}  {'purity':>6}  {'clean':>5}  {cols}"]
    for i, k in enumerate(r.indices):
        eff = "  ".join(f"{v:>{w}.2f}" for v in r.effect[i])
        lines.append(
            f"{k:>4}  {names[r.main_factor[i]]:<{w}}  {r.purity[i]:>6.2f}  {'yes' if r.clean[i] else 'no':>5}  {eff}"
        )
    cov = ", ".join(r.covered) or "none"
    lines.append(
        f"coverage {r.coverage}/{len(names)} (clean: purity >= {r.purity_threshold:g} and effect >= "
        f"{r.min_effect:g}): {cov}"
    )
    return lines


def comparison(results, *, markdown: bool = False) -> list[str]:
    """One row per set: K, clean directions, coverage, mean purity, factors covered."""
    rows = [
        (
            r.method,
            r.set_title,
            len(r.indices),
            int(r.clean.sum()),
            f"{r.coverage}/{len(r.factor_names)}",
            f"{float(r.purity.mean()):.2f}",
            ", ".join(r.covered) or "-",
        )
        for r in results
    ]
    head = ("method", "set", "K", "clean", "coverage", "mean purity", "factors moved cleanly")
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        return out
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*head)] + [fmt.format(*map(str, row)) for row in rows]
