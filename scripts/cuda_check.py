"""CUDA check: every model family and the user-facing commands on a GPU, compared with the CPU.

    python scripts/cuda_check.py [--fixtures ../shared/fixtures] [--out cuda_check.json]

Runs ``main.py`` in-process with ``--device cuda`` and ``--device cpu`` (TF32 off, so both sides
compute in float32) and reports, per model: the largest difference between the CPU and CUDA
renders of seeds 0-3; the largest difference from the reference implementation's own images
where the fixture holds them; each discovery method run on CUDA for a few steps, and the largest
CPU-vs-CUDA difference of a direction grid of the set it wrote; then a projection, an export and
an analysis on CUDA. Nothing here asserts: it prints one table and writes it as JSON, for a person
to read (the test suite runs on the CPU; CI has no GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEV = "cuda"  # --dry-run: "cpu" against "cpu", to check the script itself without a GPU
sys.path.insert(0, str(ROOT))

# (name, path relative to the fixtures folder or a built-in, expected-images file, its z and image keys)
MODELS = [
    ("digiface-dcgan-64", "digiface-dcgan-64", None),
    ("procedural-stylegan2-32", "procedural-stylegan2-32", None),
    (
        "nvada_skip_res64_fp16",
        "nvada_skip_res64_fp16.pkl",
        ("nvada_skip_res64_fp16_expected.npz", "z", "img_psi1_force_fp32"),
    ),
    ("rosinality_s32_narrow", "rosinality_s32_narrow.pt", ("rosinality_s32_narrow_expected.npz", "z", "img_psi1")),
    ("sg3t_res32", "stylegan3/sg3t_res32.pkl", ("stylegan3/sg3t_res32_expected.npz", "z", "img_psi1")),
    ("sg3r_res32", "stylegan3/sg3r_res32.pkl", ("stylegan3/sg3r_res32_expected.npz", "z", "img_psi1")),
    ("sg2ada_cond_res32", "stylegan3/sg2ada_cond_res32.pkl", None),  # class-conditional: CLASS below
    ("biggan_res32", "biggan/biggan_res32", None),
    ("proggan_gld_res32", "proggan/proggan_gld_res32.pth", ("proggan/proggan_gld_res32_expected.npz", "z", "img")),
    (
        "proggan_netdissect_res32",
        "proggan/proggan_netdissect_res32.pth",
        ("proggan/proggan_netdissect_res32_expected.npz", "z", "img"),
    ),
]

# class-conditional models render and discover on class 3 (fp16 blocks are computed in float32,
# so the 64 px fixture compares with the reference's force_fp32 images)
CLASS = {"sg2ada_cond_res32": ["--class", "3"], "biggan_res32": ["--class", "3"]}

# a few steps of each method: enough to run every code path on the device, not to find anything
METHODS = {
    "sefa": ["k=8"],
    "ganspace": ["k=4", "n_samples=2000", "batch_size=500"],
    "param-svd": ["k=4"],
    "latent-recon": ["k=4", "steps=20", "batch_size=8", "rca_every=10", "rca_samples=32"],
    "param-spectrum": ["k=2", "samples=4", "steps=2", "distance=pixel"],
    "param-opt": ["k=4", "steps=10", "batch_size=4", "rca_every=5", "rca_samples=16"],
}


def cli(args: list[str]) -> tuple[int, str]:
    from cli.main import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return code, err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else ""


def render_npy(model: str, device: str, out: Path, extra: list[str]) -> np.ndarray | str:
    code, err = cli(["render", "--model", model, "--device", device, *extra, "--out", str(out)])
    return np.load(out) if code == 0 else f"exit {code}: {err}"


def diff(a, b) -> str:
    if isinstance(a, str) or isinstance(b, str):
        return a if isinstance(a, str) else b
    if a.shape != b.shape:
        return f"shapes {a.shape} vs {b.shape}"
    return f"{float(np.abs(a.astype(np.float64) - b).max()):.2e}"


def check_model(name: str, model: str, expected, fixtures: Path, tmp: Path) -> dict:
    import torch

    row: dict = {"model": name}
    cls = CLASS.get(name, [])
    seeds = ["--seeds", "0-3", *cls]
    t = time.perf_counter()
    gpu = render_npy(model, DEV, tmp / "g.npy", seeds)
    row["load+render cuda s"] = round(time.perf_counter() - t, 2)
    cpu = render_npy(model, "cpu", tmp / "c.npy", seeds)
    row["seeds cpu vs cuda"] = diff(cpu, gpu)
    if expected is not None:
        npz, zkey, ikey = expected
        data = np.load(fixtures / npz)
        np.save(tmp / "z.npy", data[zkey].reshape(data[zkey].shape[0], -1).astype(np.float32))
        img = render_npy(model, DEV, tmp / "e.npy", ["--latents", str(tmp / "z.npy")])
        row["cuda vs reference"] = diff(img, data[ikey])
    for method, sets in METHODS.items():
        out = tmp / f"{name}-{method}.json"
        args = ["discover", "--model", model, "--method", method, "--device", DEV, *cls, "--out", str(out)]
        for s in sets:
            args += ["--set", s]
        t = time.perf_counter()
        code, err = cli(args)
        took = time.perf_counter() - t
        if code != 0:
            row[method] = f"exit {code}: {err}"[:120]
            continue
        grid = ["--directions", str(out), "--index", "0-1", "--shifts=-2:2:3", "--seeds", "0,1"]
        a = render_npy(model, DEV, tmp / "ga.npy", grid)
        b = render_npy(model, "cpu", tmp / "gb.npy", grid)
        row[method] = f"ok {took:.1f}s, grid cpu vs cuda {diff(b, a)}"
    if DEV == "cuda":
        torch.cuda.empty_cache()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixtures", default=str(ROOT.parent / "shared" / "fixtures"))
    ap.add_argument("--out", default="cuda_check.json")
    ap.add_argument("--models", default="", help="comma-separated names (default: all)")
    ap.add_argument("--dry-run", action="store_true", help="CPU against CPU (checks this script)")
    args = ap.parse_args()
    import torch

    global DEV
    if args.dry_run:
        DEV = "cpu"
    elif not torch.cuda.is_available():
        sys.exit("no CUDA device here")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    fixtures = Path(args.fixtures)
    wanted = set(filter(None, args.models.split(",")))
    rows = []
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0) if DEV == 'cuda' else 'cpu'}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, rel, expected in MODELS:
            if wanted and name not in wanted:
                continue
            model = rel if "/" not in rel and not rel.endswith((".pkl", ".pt", ".pth")) else str(fixtures / rel)
            if model != rel and not Path(model).exists():
                rows.append({"model": name, "error": f"{model} not found"})
                continue
            try:
                rows.append(check_model(name, model, expected, fixtures, tmp))
            except Exception as exc:  # noqa: BLE001 - a report, not a test: go on with the next model
                rows.append({"model": name, "error": f"{type(exc).__name__}: {exc}"[:200]})
                traceback.print_exc()
            print(json.dumps(rows[-1]), flush=True)
        # the other commands, on the default model
        extra = {}
        code, err = cli(
            ["project", "--model", "digiface-dcgan-64", "--device", DEV, "--steps", "20"]
            + ["--image", str(ROOT / "docs/images/real/astronaut_face.png"), "--out", str(tmp / "a.latent")]
        )
        extra["project cuda"] = "ok" if code == 0 else f"exit {code}: {err}"
        sset = tmp / "digiface-dcgan-64-sefa.json"
        code, err = cli(
            ["export", "--model", "digiface-dcgan-64", "--device", DEV, "-d", str(sset), "--index", "0"]
            + ["--seeds", "0,1", "--frames", "8", "--out", str(tmp / "m.gif")]
        )
        extra["export gif cuda"] = "ok" if code == 0 else f"exit {code}: {err}"
        code, err = cli(
            ["analyze", "curves", "--directions", str(sset), "--distance", "pixel", "--device", DEV]
            + ["--out", str(tmp / "curves.json")]
        )
        extra["analyze curves cuda"] = "ok" if code == 0 else f"exit {code}: {err}"
        rows.append({"model": "(other commands)", **extra})
        print(json.dumps(rows[-1]), flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    print(f"RESULT models={sum('error' not in r for r in rows) - 1} errors={sum('error' in r for r in rows)}")


if __name__ == "__main__":
    main()
