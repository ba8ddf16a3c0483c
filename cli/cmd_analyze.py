"""``main.py analyze NAME``: the papers' analyses (any registered in ``engine.analysis``) of one or more directions.

Writes ``STEM.png`` (plot or heatmap), ``STEM.json`` (the numbers and settings) and ``STEM.npz``
(the arrays) for ``--out STEM.png|.json|.npz``, and prints the key numbers.
"""

from __future__ import annotations

from cli.analysis_args import load_model_for_set, params_from_args
from cli.common import (
    add_model_args,
    add_set_option,
    drive,
    finite_float,
    nonneg_float,
    out_path,
    parse_indices,
    positive_int,
)
from engine.errors import BadValueError

SHORTCUTS = {
    "seeds": "seeds",
    "steps": "steps",
    "t_max": "t_max",
    "distance": "distance",
    "samples": "samples",
    "shifts": "shifts",
    "features": "features",
    "t": "t",
    "space": "space",
    "psi": "psi",
    "reference": "reference",
    "opt_steps": "steps",
    "batch_size": "batch_size",
}


def register(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="effect curves, locality heatmaps, realism (FID) and latent-reproduction of directions",
        description="Analyse directions of a set: 'curves' (LPIPS or pixel distance vs shift t), 'locality' "
        "(mean per-pixel squared difference over many z and t, as a heatmap), 'fid' (Fréchet distance "
        "of edited vs unedited samples vs t; Inception features, or --features regressor on the "
        "procedural model), 'reproduce' (optimise a latent shift h to imitate a parameter edit; "
        "report the residual relative to the edit's size). Every --set NAME=VALUE parameter is "
        "listed by --list-params.",
    )
    p.add_argument(
        "kind", metavar="ANALYSIS", help="which analysis: curves, locality, fid, reproduce, ... (any registered)"
    )
    add_model_args(p)
    p.add_argument("--directions", "-d", help="direction set (.json)")
    p.add_argument("--index", default="0", help="direction indices: 3, 0,2,5, 0-7 or all (default 0)")
    p.add_argument("--seeds", type=positive_int, default=None, help="curves: latents averaged over")
    p.add_argument("--steps", type=positive_int, default=None, help="curves/fid: shifts over the range")
    p.add_argument(
        "--t-max", dest="t_max", type=nonneg_float, default=None, help="use [-T, T] instead of each direction's range"
    )
    p.add_argument("--distance", default=None, help="curves: lpips-alex (default), lpips-vgg, lpips-squeeze or pixel")
    p.add_argument(
        "--samples", type=positive_int, default=None, help="locality: latents (default 1600); fid: edited samples per t"
    )
    p.add_argument("--shifts", type=positive_int, default=None, help="locality: shifts per latent (default 20)")
    p.add_argument("--reference", type=positive_int, default=None, help="fid: unedited reference samples")
    p.add_argument("--features", default=None, help="fid: inception (default; needs the FID weights file) or regressor")
    p.add_argument(
        "--t", type=finite_float, default=None, help="reproduce: shift of the parameter edit (default: range end)"
    )
    p.add_argument("--space", default=None, help="reproduce: where h lives: auto, z, w, w+")
    p.add_argument(
        "--opt-steps", dest="opt_steps", type=positive_int, default=None, help="reproduce: Adam steps (default 300)"
    )
    p.add_argument("--psi", type=finite_float, default=None, help="truncation (style models)")
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, default=None, help="images per forward pass")
    add_set_option(p)
    p.add_argument("--list-params", action="store_true", help="print the analysis' parameters and defaults, then exit")
    p.add_argument("--out", "-o", default=None, help="STEM.png / .json / .npz: writes all three")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses

    from engine.analysis import get_analysis
    from engine.directions import DirectionSet

    spec = get_analysis(args.kind)
    if spec.needs_factors:
        raise BadValueError(f"analysis '{spec.name}' needs the factor regressor: run it with main.py {spec.name}")
    if args.list_params:
        print(f"{spec.name}: {spec.summary}")
        for f in dataclasses.fields(spec.params):
            print(f"  {f.name:<18} = {f.default!r:<12} {f.metadata.get('help', '')}")
        return 0
    if not args.directions:
        raise BadValueError("analyze needs --directions SET.json")
    if not args.out:
        raise BadValueError("analyze needs --out STEM.png (a .json and a .npz are written beside it)")
    out = out_path(args.out, (".png", ".json", ".npz"))
    shortcuts = dict(SHORTCUTS)
    if args.kind == "reproduce":
        if args.steps is not None:
            raise BadValueError("--steps counts shifts in the other analyses; reproduce's Adam steps are --opt-steps")
        shortcuts.pop("steps")
    else:
        if args.opt_steps is not None:
            raise BadValueError(f"--opt-steps is reproduce's; analysis '{args.kind}' counts its shifts with --steps")
        shortcuts.pop("opt_steps")
    params = params_from_args(spec, args, shortcuts)
    dset = DirectionSet.load(args.directions)
    idx = parse_indices(args.index, len(dset))
    gen = load_model_for_set(args, dset)
    result = drive(spec.run(gen, dset, idx, params), f"analyze {args.kind}", quiet=args.quiet)
    stem = out.with_suffix("")
    png = result.plot(stem.with_suffix(".png"))
    jpath, npath = result.save(stem)
    for line in result.report_lines():
        print(line)
    print(f"wrote {png}, {jpath.name}, {npath.name}")
    return 0
