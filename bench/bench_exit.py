"""How long does the editor take to end after its window is closed?

Starts the real editor (``desktop.app.run``, the built-in model, offscreen) in a child process,
closes the window after ``--close-after`` seconds and measures the time from the start of the
window's ``closeEvent`` to the end of the process (one monotonic clock for both processes).
Two ways of ending, alternated ``--runs`` times in one run of this script:

* ``slow``: the interpreter's normal teardown (``GAN_ATLAS_SLOW_EXIT=1``), what the editor did;
* ``fast``: ``desktop.app.exit_now`` (exit handlers and flushing, then ``os._exit``).

A short ``--close-after`` also closes the window while the start-up warm-up (the import of
torch's compiler stack) is still running, which the window no longer waits for.

    .venv/bin/python bench/bench_exit.py [--close-after 6] [--runs 2]

Ends with ``RESULT slow_s=... fast_s=... ratio=...`` (medians; ratio = slow / fast).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(close_after: float) -> None:
    sys.path.insert(0, str(REPO))
    from PySide6.QtCore import QTimer

    import desktop.app as app_mod
    from desktop.main_window import MainWindow

    close_event = MainWindow.closeEvent

    def timed_close(self, event):
        print(f"CLOSE {time.perf_counter():.6f}", flush=True)
        close_event(self, event)

    MainWindow.closeEvent = timed_close
    init = MainWindow.__init__

    def init_and_schedule(self, *args, **kw):
        init(self, *args, **kw)
        QTimer.singleShot(int(close_after * 1000), self.close)

    MainWindow.__init__ = init_and_schedule
    sys.exit(app_mod.run())


def measure(mode: str, close_after: float) -> float:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    tmp = tempfile.mkdtemp(prefix="gan-atlas-exit-")
    env["GAN_ATLAS_CONFIG_DIR"], env["GAN_ATLAS_DATA_DIR"] = f"{tmp}/config", f"{tmp}/data"
    env.pop("GAN_ATLAS_SLOW_EXIT", None)
    if mode == "slow":
        env["GAN_ATLAS_SLOW_EXIT"] = "1"
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(close_after)], env=env, capture_output=True, text=True, check=False
    )
    end = time.perf_counter()
    closes = [line for line in proc.stdout.splitlines() if line.startswith("CLOSE ")]
    if proc.returncode != 0 or not closes:
        raise SystemExit(f"{mode}: the editor ended with {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-2000:]}")
    return end - float(closes[0].split()[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--close-after", type=float, default=6.0, help="seconds from start-up to closing the window")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        child(args.child)
        return
    times: dict[str, list[float]] = {"slow": [], "fast": []}
    for _ in range(args.runs):
        for mode in ("slow", "fast"):
            s = measure(mode, args.close_after)
            times[mode].append(s)
            print(f"{mode}: {s:.2f} s from closing the window to the end of the process")
    slow, fast = statistics.median(times["slow"]), statistics.median(times["fast"])
    print(f"RESULT slow_s={slow:.2f} fast_s={fast:.2f} ratio={slow / fast:.1f}")


if __name__ == "__main__":
    main()
