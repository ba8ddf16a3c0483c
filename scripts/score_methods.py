"""Run every discovery method on one model and compare them with the ground-truth score.

For the README's per-method table on the built-in procedural StyleGAN2 (whose images come from
eight known factors)::

    python scripts/score_methods.py --model procedural-stylegan2-32 --out docs/analysis/methods

Each method runs through ``main.py discover`` with its defaults (the papers' settings) and
``--k``; sets already in ``--out`` are reused unless ``--force``. Then ``main.py score`` scores
all sets and prints the comparison as a Markdown table. param-hybrid takes its basis from the
param-spectrum set of the same run when there is one. param-spectrum uses LPIPS when its
backbone file is present, else the labelled pixel distance (the table says which).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METHODS = ("sefa", "ganspace", "latent-recon", "param-svd", "param-spectrum", "param-opt", "param-hybrid")


def main() -> int:
    from cli.main import main as cli
    from engine.discovery import get_method, methods

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="procedural-stylegan2-32")
    ap.add_argument("--k", type=int, default=16, help="directions per method")
    ap.add_argument("--seeds", type=int, default=64, help="seeds per direction in the score")
    ap.add_argument(
        "--steps", type=int, default=None, help="training steps of the reconstructor methods (default: theirs)"
    )
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--force", action="store_true", help="rerun methods whose set already exists")
    ap.add_argument("--out", default="docs/analysis/methods")
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    known = {m.name for m in methods()}
    common = ["--model", args.model, "--device", args.device, "--threads", str(args.threads)]
    sets = []
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        if name not in known:
            print(f"skipping {name}: not in this build", file=sys.stderr)
            continue
        path = out / f"{name}.json"
        if path.is_file() and not args.force:
            sets.append(str(path))
            continue
        fields = {f.name for f in dataclasses.fields(get_method(name).params)}
        extra = ["--set", f"k={args.k}"] if "k" in fields else []
        if args.steps is not None and "steps" in fields and name in ("latent-recon", "param-opt", "param-hybrid"):
            extra += ["--set", f"steps={args.steps}"]
        spectrum_set = out / "param-spectrum.json"
        if name == "param-hybrid" and spectrum_set.is_file():
            # the hybrid's basis is the Hessian eigenvectors param-spectrum already computed
            extra += ["--set", f"spectrum={spectrum_set}"]
        elif "distance" in fields:
            from engine.distances import backbone

            if not backbone("alex").present:
                print(f"{name}: LPIPS backbone file missing; using the pixel distance", file=sys.stderr)
                extra += ["--set", "distance=pixel"]
        if cli(["discover", "--method", name, *common, *extra, "--out", str(path)]) != 0:
            print(f"{name} failed; left out of the table", file=sys.stderr)
            continue
        sets.append(str(path))
    if not sets:
        print("no direction sets to score", file=sys.stderr)
        return 1
    return cli(["score", *sets, *common, "--seeds", str(args.seeds), "--markdown", "--out", str(out / "scores")])


if __name__ == "__main__":
    sys.exit(main())
