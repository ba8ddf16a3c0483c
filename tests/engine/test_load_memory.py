"""Loading a checkpoint never holds more than twice its generator's tensors (issue 10).

Each file is a synthetic checkpoint of tens of megabytes with what real files carry besides the
generator (NVIDIA's ``G`` and ``D`` beside ``G_ema``; a train.py discriminator and copy of ``g``),
loaded by ``load_generator`` in a fresh process after a small file of the same format (one-time
costs: torch's code paged in, allocator arenas). The peak growth of the process's resident set
(anonymous and file-mapped pages) during the load is compared with the generator's tensor bytes.
Before the one reader (engine/checkpoints/torchfile.py) NVIDIA snapshots peaked at 12x and a
legacy rosinality file at 3.4x; ``bench/bench_load_memory.py`` measures every format.
"""

from __future__ import annotations

import pytest

from tests.large_checkpoints import can_measure, finish_measure, start_measure, write

pytestmark = pytest.mark.skipif(not can_measure(), reason="needs Linux /proc/self/clear_refs (peak-RSS counter)")

FORMATS = ["nvidia-sg2", "nvidia-sg3", "rosinality-legacy", "dcgan"]


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict:
    """``{fmt: (path, measure(path, small))}`` for every format. Each load is measured in its own
    fresh process as before; the processes overlap (at most two at a time, the next file being
    written meanwhile), since each one's peak is its own resident set's."""
    results, running = {}, []
    try:
        for fmt in FORMATS:
            folder = tmp_path_factory.mktemp(fmt)
            path = write(fmt, folder, scale=2)
            small = write(fmt, folder / "small", scale=1)
            running.append((fmt, path, start_measure(path, small)))
            if len(running) == 2:
                fmt0, path0, proc = running.pop(0)
                results[fmt0] = (path0, finish_measure(proc))
        while running:
            fmt, path, proc = running.pop(0)
            results[fmt] = (path, finish_measure(proc))
    finally:
        for _, _, proc in running:  # after a failure: no child left behind
            proc.kill()
            proc.wait()
    return results


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_loading_peaks_under_twice_the_tensors(fmt, measured):
    path, m = measured[fmt]
    assert m["tensors"] > 10 * 2**20, m  # large enough for the ratio to mean something
    assert path.stat().st_size > 1.5 * m["tensors"], "the file should carry more than the generator"
    assert m["peak"] <= 2 * m["tensors"], (fmt, m["peak"] / m["tensors"], m)
