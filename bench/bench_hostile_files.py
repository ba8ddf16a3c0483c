"""Time and peak memory of loading each hostile file of issue 11, in a fresh process per file.

Every file is loaded with ``engine.models.load_generator`` (what ``info``, ``render`` and the
editor do) in its own Python process, so that the peak resident set size is this load's alone.
The parent polls the child's RSS and kills it past ``--rss-limit`` MB or ``--timeout`` seconds (so
a run of the unfixed code does not take the machine down); such a case reports ``killed``.

    .venv/bin/python bench/bench_hostile_files.py [--rss-limit 2500] [--timeout 120]

``--repo ../main`` loads with another checkout's engine (the figures before a change).

Per case: the file size, the outcome (the error's first words), seconds, and the peak RSS above
the child's RSS just before the load (torch and the engine imported). Real fixtures are loaded
too, as the reference for what a normal load costs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import hostile_files as hostile  # noqa: E402

FIXTURES = REPO.parent / "shared" / "fixtures"

CHILD = r"""
import json, os, sys, time
import torch
torch.set_num_threads(1)
import engine.models
from engine.errors import AtlasError

def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1])

try:  # reset the high-water mark, so that VmHWM below is this load's peak, not the imports'
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
except OSError:
    pass
print(json.dumps({"base_kb": status("VmRSS:")}), flush=True)
t0 = time.perf_counter()
try:
    engine.models.load_generator(sys.argv[1], device="cpu")
    outcome = "loaded"
except AtlasError as exc:
    outcome = "AtlasError: " + str(exc).split(": ", 1)[-1]
except BaseException as exc:
    outcome = f"{type(exc).__name__}: {exc}"
print(json.dumps({"seconds": time.perf_counter() - t0, "hwm_kb": status("VmHWM:"), "outcome": outcome}), flush=True)
os._exit(0)  # no interpreter teardown: its allocations are not the load's
"""


def rss_kb(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(path: Path, rss_limit_mb: float, timeout: float, repo: Path = REPO) -> dict:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    base = json.loads(proc.stdout.readline())["base_kb"]
    t0, peak, killed = time.perf_counter(), base, None
    while proc.poll() is None:
        peak = max(peak, rss_kb(proc.pid))
        elapsed = time.perf_counter() - t0
        if peak > rss_limit_mb * 1024:
            killed = f"killed at {rss_limit_mb:.0f} MB after {elapsed:.1f} s"
        elif elapsed > timeout:
            killed = f"killed after {timeout:.0f} s"
        if killed:
            proc.kill()
            proc.wait()
            return {"seconds": elapsed, "peak_mb": (peak - base) / 1024, "outcome": killed}
        time.sleep(0.01)
    line = proc.stdout.readline()
    if not line:
        return {"seconds": time.perf_counter() - t0, "peak_mb": (peak - base) / 1024, "outcome": "crashed"}
    res = json.loads(line)
    return {"seconds": res["seconds"], "peak_mb": (max(peak, res["hwm_kb"]) - base) / 1024, "outcome": res["outcome"]}


def _biggan_bomb(tmp: Path) -> Path:
    """A BigGAN folder: the fixture's config.json beside a legacy pytorch_model.bin ending on a huge memo index."""
    folder = tmp / "biggan"
    folder.mkdir()
    (folder / "config.json").write_bytes((FIXTURES / "biggan" / "biggan_res32" / "config.json").read_bytes())
    return hostile.legacy_memo_bomb(folder / "pytorch_model.bin", ("embeddings.weight",))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rss-limit", type=float, default=2500.0, help="MB above which a child is killed")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--only", default="", help="comma-separated case names")
    ap.add_argument("--repo", type=Path, default=REPO, help="the checkout whose engine loads the files (e.g. ../main)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = {
            "stride0_rosinality": lambda: hostile.stride0_rosinality(tmp / "stride0.pt"),
            "memo_bomb_pkl": lambda: hostile.memo_bomb_pickle(tmp / "memo.pkl"),
            "zip_bomb_dcgan": lambda: hostile.zip_bomb_dcgan(tmp / "zipbomb.pt"),
            "slow_probe_pt": lambda: hostile.slow_probe_pt(tmp / "slow.pt"),
            "huge_legacy_storage": lambda: hostile.huge_legacy_storage(tmp / "legacy.pt"),
            "many_ops_pkl": lambda: hostile.many_ops_pickle(tmp / "ops.pkl", 499_000),
            "many_dicts_pkl": lambda: hostile.many_dicts_pickle(tmp / "dicts.pkl", 499_000),
            "too_many_ops_pkl": lambda: hostile.many_ops_pickle(tmp / "ops2.pkl", 4_000_000),
            "many_ops_pt": lambda: hostile.many_ops_torch_zip(tmp / "ops.pt", 199_000),
            "too_many_ops_pt": lambda: hostile.many_ops_torch_zip(tmp / "ops2.pt", 4_000_000),
        }
        if (FIXTURES / "nvada_orig_res16.pkl").is_file():
            cases["flipped_nvidia_pkl"] = lambda: hostile.flip_memo_index(
                FIXTURES / "nvada_orig_res16.pkl", tmp / "flipped.pkl"
            )
            cases["biggan_bin_memo_bomb"] = lambda: _biggan_bomb(tmp)
            for name in ("nvada_skip_res64_fp16.pkl", "rosinality_s64_train.pt"):
                cases[f"fixture:{name}"] = lambda name=name: FIXTURES / name
        only = {c for c in args.only.split(",") if c}
        print(f"{'case':28s} {'size':>10s} {'seconds':>8s} {'peak MB':>8s}  outcome")
        worst_hostile_s, worst_hostile_mb, refused = 0.0, 0.0, 0
        n_hostile = 0
        for name, make in cases.items():
            if only and name not in only:
                continue
            path = make()
            res = measure(path, args.rss_limit, args.timeout, args.repo.resolve())
            size = path.stat().st_size
            print(
                f"{name:28s} {size:>10,d} {res['seconds']:8.2f} {res['peak_mb']:8.1f}  {res['outcome'][:90]}",
                flush=True,
            )
            if not name.startswith("fixture:"):
                n_hostile += 1
                refused += res["outcome"].startswith("AtlasError")
                worst_hostile_s = max(worst_hostile_s, res["seconds"])
                worst_hostile_mb = max(worst_hostile_mb, res["peak_mb"])
    print(
        f"RESULT hostile_cases={n_hostile} refused={refused} max_seconds={worst_hostile_s:.2f} "
        f"max_peak_mb={worst_hostile_mb:.1f}"
    )


if __name__ == "__main__":
    main()
