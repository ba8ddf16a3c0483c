"""Fuzz every file format the app reads: 10,000 seeded mutations per format (issue 11).

Each format runs in its own process (one torch thread), with the seeds and loaders of
``tests/fuzz_seeds.py`` and the harness of ``tests/fuzzing.py`` (the suite's fuzz test runs the
same with a few hundred cases). Per format it reports how many cases loaded, were refused with an
``AtlasError``, raised anything else, or were slow (over 2 s of CPU), the slowest case, and memory:
the process's resident set before fuzzing, its peak, and the largest peak growth of a single case
(the high-water mark is reset before each case).

    .venv/bin/python scripts/fuzz_files.py [--cases 10000] [--fixture-cases 2000] [--seed 1] [--only NAME]

``--fixture-cases`` also fuzzes the real reference files of ``../shared/fixtures`` (an NVIDIA
snapshot and a rosinality checkpoint; slower per case). The last line is
``RESULT formats=... cases=... loaded=... refused=... other=... slow=... max_case_mb=...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def worker(name: str, cases: int, seed: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from engine.errors import AtlasError
    from tests.fuzz_seeds import FIXTURE_FORMATS, FORMATS
    from tests.fuzzing import fuzz

    fmt = {f.name: f for f in FORMATS + FIXTURE_FORMATS}[name]
    growth = [0.0]

    def load(path):
        _reset_peak()
        before = _status_kb("VmRSS:")
        try:
            return fmt.load(path)
        finally:
            growth[0] = max(growth[0], (_status_kb("VmHWM:") - before) / 1024)

    with tempfile.TemporaryDirectory() as folder:
        warm = Path(folder) / "warm-up"
        warm.mkdir()
        fmt.load(fmt.seed(warm))  # imports and caches, before measuring
        base = _status_kb("VmRSS:") / 1024
        t0 = time.perf_counter()
        report = fuzz(dataclasses.replace(fmt, load=load), Path(folder) / "cases", cases, seed, expected=(AtlasError,))
        seconds = time.perf_counter() - t0
    return {
        "name": name,
        "cases": len(report.cases),
        "loaded": report.count("loaded"),
        "refused": report.count("refused"),
        "other": report.count("crashed"),
        "slow": report.count("slow"),
        "max_cpu": report.max_cpu,
        "max_wall": report.max_wall,
        "base_mb": base,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "max_case_mb": growth[0],
        "seconds": seconds,
        "failures": report.describe_failures(10),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10_000, help="mutations per format")
    ap.add_argument("--fixture-cases", type=int, default=0, help="mutations per real fixture file (0: skip)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", default="", help="run the formats whose name contains this")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.cases, args.seed)))
        return

    from tests.fuzz_seeds import FIXTURE_FORMATS, FIXTURES, FORMATS

    runs = [(f.name, args.cases) for f in FORMATS]
    if args.fixture_cases and (FIXTURES / "manifest.json").is_file():
        runs += [(f.name, args.fixture_cases) for f in FIXTURE_FORMATS]
    runs = [(n, c) for n, c in runs if args.only in n]
    print(
        f"{'format':52s} {'cases':>6s} {'loaded':>6s} {'AtlasError':>10s} {'other':>5s} {'slow':>4s} "
        f"{'max s CPU':>9s} {'base MB':>7s} {'peak MB':>7s} {'max case MB':>11s} {'minutes':>7s}",
        flush=True,
    )
    totals = {"cases": 0, "loaded": 0, "refused": 0, "other": 0, "slow": 0}
    worst_case_mb, worst_cpu = 0.0, 0.0
    for name, cases in runs:
        cmd = [sys.executable, __file__, "--worker", name, "--cases", str(cases), "--seed", str(args.seed)]
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{name}: the worker died ({out.returncode}): {out.stderr.strip().splitlines()[-1:]}", flush=True)
            totals["other"] += 1
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{name[:52]:52s} {r['cases']:6d} {r['loaded']:6d} {r['refused']:10d} {r['other']:5d} {r['slow']:4d} "
            f"{r['max_cpu']:9.2f} {r['base_mb']:7.0f} {r['peak_mb']:7.0f} {r['max_case_mb']:11.1f} {r['seconds'] / 60:7.1f}",
            flush=True,
        )
        if r["failures"]:
            print(r["failures"], flush=True)
        for k in totals:
            totals[k] += r[k]
        worst_case_mb, worst_cpu = max(worst_case_mb, r["max_case_mb"]), max(worst_cpu, r["max_cpu"])
    print(
        f"RESULT formats={len(runs)} cases={totals['cases']} loaded={totals['loaded']} refused={totals['refused']} "
        f"other={totals['other']} slow={totals['slow']} max_cpu_s={worst_cpu:.2f} max_case_mb={worst_case_mb:.1f}"
    )


if __name__ == "__main__":
    main()
