"""Loading ProGAN files: memory against the tensors' size, and damaged files' time against an intact one's.

1. Memory: a ProGAN with the real 32 px widths (512, 512, 512, 256; 68 MB of float32) is saved in
   both containers and loaded by ``load_generator`` in a fresh process; the growth of its resident
   memory (peak, and anonymous memory after loading) is reported as a ratio to the tensors' bytes.
   The peak includes file pages mapped while reading (page cache, reclaimable).
2. Fuzz: the same seeded mutations as tests/engine/test_proggan_safety.py (a few hundred per
   container), each through ``load_generator`` (every registered probe, then the loader): the
   slowest in seconds and as a ratio to the intact file's load time, measured in the same run.

    .venv/bin/python bench/bench_proggan_load.py [--n 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import subprocess
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


_MEMORY_CHILD = """
import sys, torch
torch.set_num_threads(1)
import engine.models
from engine.models import load_generator
def status():
    s = open("/proc/self/status").read()
    return {k: int(s.split(k + ":")[1].split()[0]) * 1024 for k in ("VmRSS", "RssAnon")}
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM)
before = status()
g = load_generator(sys.argv[1], device="cpu")
after = status()
peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
print(peak - before["VmRSS"], after["RssAnon"] - before["RssAnon"])
"""


def memory_ratios(tmp: Path) -> dict[str, tuple[float, float]]:
    """``{container: (peak growth, anonymous growth after loading)}`` / tensor bytes, in a child process."""
    from collections import OrderedDict

    from engine.models.proggan import ProGANConfig

    cfg = ProGANConfig(512, (512, 512, 512, 256))
    sd = OrderedDict()
    for k in range(1, cfg.num_blocks + 1):
        c_in, c_out, kernel, _ = cfg.block(k)
        sd[f"layer{k}.conv.weight"] = torch.randn(c_out, c_in, kernel, kernel)
        sd[f"layer{k}.wscale.b"] = torch.randn(c_out)
    sd["output_32x32.conv.weight"] = torch.randn(3, 256, 1, 1)
    sd["output_32x32.wscale.b"] = torch.randn(3)
    nbytes = sum(v.numel() * 4 for v in sd.values())
    out = {}
    for name, zipped in (("legacy", False), ("zip", True)):
        path = tmp / f"mem_{name}.pth"
        torch.save(sd, path, _use_new_zipfile_serialization=zipped)
        r = subprocess.run(
            [sys.executable, "-c", _MEMORY_CHILD, str(path)], capture_output=True, text=True, cwd=ROOT, check=True
        )
        peak, anon = map(int, r.stdout.split())
        out[name] = (peak / nbytes, anon / nbytes)
        path.unlink()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        mem = memory_ratios(Path(tmp))
        for name, (peak, anon) in mem.items():
            print(f"{name}: peak memory growth {peak:.2f}x the tensors, anonymous memory after loading {anon:.2f}x")
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
        f"RESULT max_seconds={worst:.3f} max_ratio_to_intact_load={worst / clean:.2f} "
        f"mutations={sum(counts.values())} peak_memory_ratio_legacy={mem['legacy'][0]:.2f} "
        f"peak_memory_ratio_zip={mem['zip'][0]:.2f}"
    )


if __name__ == "__main__":
    main()
