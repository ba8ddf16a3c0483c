"""Peak memory of loading a checkpoint of each format, as a ratio to the loaded generator's tensors.

For each format of ``tests/large_checkpoints.py`` a synthetic checkpoint of tens of megabytes is
written (with what real files carry besides the generator: discriminators, NVIDIA's ``G``), then
loaded by ``engine.models.load_generator`` in a fresh process, after every module is imported
and a small file of the same format is loaded (one-time costs of the process: torch's code paged
in, allocator arenas; ``--cold`` skips it). The peak growth of that process's resident set during
the load (anonymous and file-mapped pages, ``VmHWM`` after ``clear_refs``) is divided by the
generator's tensor bytes. Issue 10 asks for at most 2x.

    .venv/bin/python bench/bench_load_memory.py [--scale 3] [--formats dcgan,biggan] [--cold] [--repo ../other]

``--repo`` loads with another checkout's engine (the figures before a change). Ends with one line
``RESULT <format>=<peak ratio> ... worst=<ratio>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from tests.large_checkpoints import FORMATS, can_measure, measure, write  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=3, help="width multiplier of the synthetic generators")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--repo", type=Path, default=REPO, help="the checkout whose engine loads the files")
    ap.add_argument("--cold", action="store_true", help="no first load of a small file of the same format")
    a = ap.parse_args()
    if not can_measure():
        sys.exit("needs Linux /proc/self/clear_refs to reset the peak-RSS counter")
    torch.set_num_threads(1)
    ratios = {}
    print(f"{'format':<20}{'tensors MB':>12}{'peak MB':>10}{'peak / tensors':>16}{'anon after':>12}")
    for fmt in a.formats.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            small = None if a.cold else write(fmt, Path(tmp) / "small", 1)
            path = write(fmt, Path(tmp), a.scale)
            m = measure(path, small, repo=a.repo.resolve())
        ratios[fmt] = m["peak"] / m["tensors"]
        print(
            f"{fmt:<20}{m['tensors'] / 2**20:>12.1f}{m['peak'] / 2**20:>10.1f}{ratios[fmt]:>15.2f}x"
            f"{m['anon_after'] / m['tensors']:>11.2f}x",
            flush=True,
        )
    print("(1 thread; the machine is shared with other jobs: peaks are per process, ratios within one run)")
    print("RESULT " + " ".join(f"{k}={v:.2f}" for k, v in ratios.items()) + f" worst={max(ratios.values()):.2f}")


if __name__ == "__main__":
    main()
