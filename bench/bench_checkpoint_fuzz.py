"""How long damaged ProGAN files take to load or be refused, against loading the intact file.

The same seeded mutations as tests/engine/test_proggan_safety.py (a few hundred per container),
each through ``load_generator`` (every registered probe, then the loader). Reports the slowest
mutation in seconds and as a ratio to the intact file's load time, measured in the same run.

    .venv/bin/python bench/bench_checkpoint_fuzz.py [--n 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.errors import AtlasError  # noqa: E402
from engine.models import load_generator  # noqa: E402
from tests.engine.test_proggan_safety import GLD, pickles_end  # noqa: E402
from tests.engine.torchfile_fuzz import mutations  # noqa: E402


def timed_load(path: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    try:
        load_generator(str(path), device="cpu")
        out = "loaded"
    except AtlasError:
        out = "refused"
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        zpath = Path(tmp) / "zip.pth"
        torch.save(torch.load(GLD, weights_only=True), zpath)
        containers = {
            "legacy": (GLD.read_bytes(), pickles_end(GLD.read_bytes()), 10),
            "zip": (zpath.read_bytes(), 4096, 11),
        }
        clean = min(timed_load(GLD)[0] for _ in range(5))
        worst, counts, desc_worst = 0.0, {"loaded": 0, "refused": 0}, ""
        path = Path(tmp) / "fuzzed.pth"
        for name, (data, hot, seed) in containers.items():
            for desc, blob in mutations(data, a.n, seed, hot=hot):
                path.write_bytes(blob)
                dt, out = timed_load(path)
                counts[out] += 1
                if dt > worst:
                    worst, desc_worst = dt, f"{name} {desc} ({out})"
    print(f"intact file: {clean * 1e3:.1f} ms; slowest mutation: {worst * 1e3:.1f} ms, {desc_worst}")
    print(f"{counts['loaded']} loaded, {counts['refused']} refused (machine shared and loaded: read the ratio)")
    print(
        f"RESULT max_seconds={worst:.3f} max_ratio_to_intact_load={worst / clean:.2f} mutations={sum(counts.values())}"
    )


if __name__ == "__main__":
    main()
