"""How long does the editor's event loop stall while a long discovery job runs?

A precise 10 ms QTimer ticks on the UI thread; a tick's lateness (actual gap - 10 ms) is how long
the event loop could not run. Three phases on the real built-in model, each ``--seconds`` long:

1. idle window (baseline),
2. a long discovery job running in the long-job process (``desktop.job_process``; the panel
   plots its metrics live),
3. the same job while a slider is dragged every 30 ms (so preview renders compete too).

Reported: worst stall, 99th percentile and median lateness per phase, the ratio of the loaded
worst stall to the idle one, the job's steps per second, and the preview frames delivered while
dragging, and ``RESULT worst_stall_ms=... p99_ms=...`` of phase 3. Torch runs with the editor's
own thread cap (``engine.device.cap_threads``). The job process is started (and has imported
torch) before the phases begin, as it is at the editor's launch.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_gui_stall.py [--method NAME] [--seconds 8]

The method defaults to the slowest registered one (latent reconstructor / optimisation methods
first); with none registered, a long grid render through the same job runner stands in, and the
report says so.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

PREFERRED = ("latent-recon", "latent_recon", "param-opt", "param-hybrid", "param-spectrum", "ganspace", "sefa")


def pick_method(name: str | None):
    from engine.discovery import methods

    available = {m.name: m for m in methods()}
    if name:
        if name not in available:
            raise SystemExit(f"no method '{name}'; registered: {', '.join(sorted(available)) or 'none'}")
        return available[name]
    for n in PREFERRED:
        if n in available:
            return available[n]
    return next(iter(available.values()), None)


def run_queue_wait() -> float:
    """Seconds the calling thread has spent runnable but waiting for a CPU (Linux schedstat; else 0)."""
    try:
        return int(Path("/proc/thread-self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default=None)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--model", default=None)
    ap.add_argument("--trace", action="store_true", help="print where the UI thread was during stalls > 100 ms")
    ap.add_argument(
        "--load",
        type=int,
        default=0,
        help="start N busy-looping processes (nice 0) for the whole run: the same contention in runs to compare",
    )
    ap.add_argument(
        "--profile",
        nargs="?",
        const="job+drag",
        default=None,
        choices=("idle", "job", "job+drag"),
        help="cProfile the UI thread's CPU time during one phase (default job+drag)",
    )
    args = ap.parse_args()
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL) for _ in range(args.load)
    ]
    try:
        return measure(args)
    finally:
        for b in burners:
            b.kill()
            b.wait()


def measure(args) -> int:

    tmp = tempfile.mkdtemp(prefix="gan-atlas-bench-")
    os.environ["GAN_ATLAS_CONFIG_DIR"] = str(Path(tmp) / "config")
    os.environ["GAN_ATLAS_DATA_DIR"] = str(Path(tmp) / "data")

    from PySide6.QtCore import QElapsedTimer, Qt, QTimer

    from desktop.app import configure_threads, make_app
    from desktop.main_window import MainWindow
    from desktop.settings import Settings
    from desktop.workers import JobRunner
    from engine.directions import DirectionSet, model_ref
    from engine.models import load_generator

    app = make_app()
    settings = Settings()
    threads = configure_threads(settings)
    gen = load_generator(args.model, device=settings.device)
    from desktop.workers import prewarm

    prewarm().join()  # as desktop.app.run does at start-up
    from desktop.workers import job_process

    proc = job_process()  # started at launch by desktop.app.run
    while not proc.ready:
        proc.poll()
        time.sleep(0.05)
    win = MainWindow(settings, gen=gen, scan=False)
    win.resize(1400, 900)
    win.show()
    win.show_dock("discovery")

    # a set to drag a slider of (random unit directions: the content does not matter here)
    import torch

    g = torch.Generator().manual_seed(0)
    vec = torch.nn.functional.normalize(torch.randn(4, gen.z_dim, generator=g), dim=1)
    dset = DirectionSet.latent("bench", model_ref(gen), vec, range_=(-6.0, 6.0))
    dset.save(Path(tmp) / "bench.json")
    entry = win.ws.add_set(dset)
    win.ws.select(entry, 0)

    spec = pick_method(args.method)
    stand_in = spec is None
    stand_in_runner: list[JobRunner] = []
    steps_seen = []

    def start_job() -> None:
        panel = win.discovery
        if not stand_in:
            panel.select_method(spec.name)
            panel.runner.progress.connect(lambda recs: steps_seen.append((time.perf_counter(), recs[-1].step)))
            panel.start()
            return

        def grid_job():
            from engine.render import Item, render_items

            z = gen.sample_latents(4096, seed=1)
            items = [Item(c, ((dset[0], 3.0),)) for c in z]
            result = yield from render_items(gen, items, batch_size=16)
            return result

        runner = JobRunner(win)
        runner.progress.connect(lambda recs: steps_seen.append((time.perf_counter(), recs[-1].step)))
        runner.start(grid_job)
        stand_in_runner.append(runner)

    ticks: list[float] = []
    clock = QElapsedTimer()
    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(clock.nsecsElapsed() / 1e9))
    frames = []
    win.preview.rendered.connect(lambda _r: frames.append(time.perf_counter()))
    drag = QTimer()
    drag.setInterval(30)
    drag_state = {"x": 0.0}

    def drag_step() -> None:
        drag_state["x"] += 0.25
        win.preview.sliders()[0].setValue(float(5.5 * np.sin(drag_state["x"])))

    drag.timeout.connect(drag_step)

    phases = {}
    ui_cpu = {}  # phase -> UI thread CPU seconds per second of the phase
    ui_wait = {}  # phase -> seconds per second the UI thread was runnable but waited for a core
    order = ["idle", "job", "job+drag"]
    cpu_start = [0.0]
    wait_start = [0.0]
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile(time.thread_time)  # CPU time of the UI thread

    def run_phase(i: int) -> None:
        if i > 0:
            name = order[i - 1]
            gaps = np.diff(np.array(ticks)) - 0.010
            phases[name] = gaps
            ui_cpu[name] = (time.thread_time() - cpu_start[0]) / args.seconds
            ui_wait[name] = (run_queue_wait() - wait_start[0]) / args.seconds
            if name == args.profile and profiler is not None:
                profiler.disable()
        if i == len(order):
            timer.stop()
            drag.stop()
            win.discovery.cancel()
            for r in stand_in_runner:
                r.cancel()
            QTimer.singleShot(200, app.quit)
            return
        name = order[i]
        if name == "job":
            start_job()
        if name == "job+drag":
            frames.clear()
            drag.start()
        if name == args.profile and profiler is not None:
            profiler.enable()
        cpu_start[0] = time.thread_time()
        wait_start[0] = run_queue_wait()
        ticks.clear()
        clock.start()
        QTimer.singleShot(int(args.seconds * 1000), lambda: run_phase(i + 1))

    if args.trace:
        import faulthandler

        # faulthandler's watchdog is a C thread that needs no GIL: if the UI thread does not tick
        # for 0.3 s it dumps every thread's stack, showing who held the interpreter or the CPU
        def rearm() -> None:
            faulthandler.cancel_dump_traceback_later()
            faulthandler.dump_traceback_later(float(os.environ.get("STALL_TRACE_S", "0.3")), exit=False)

        timer.timeout.connect(rearm)
    timer.start()
    QTimer.singleShot(1500, lambda: run_phase(0))  # let the first render and layout settle
    app.exec()
    if args.trace:
        faulthandler.cancel_dump_traceback_later()
    win.close()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {os.cpu_count()} CPU cores, load average {load:.1f} during the run; torch threads {threads}; "
        f"model {gen.name} on {gen.device}"
    )
    job = (
        f"discovery method '{spec.name}' with its default parameters"
        if not stand_in
        else "no discovery method registered: a 4096-image grid render job stands in"
    )
    print(f"job: {job}")
    worst = {}
    for name in order:
        gaps = phases.get(name, np.zeros(1))
        worst[name] = float(gaps.max()) * 1000
        print(
            f"{name:9s} ticks {len(gaps):5d}  worst stall {gaps.max() * 1000:7.1f} ms  "
            f"p99 {np.percentile(gaps, 99) * 1000:6.1f} ms  median {np.median(gaps) * 1000:5.2f} ms  "
            f"UI thread CPU {ui_cpu.get(name, 0) * 1000:4.0f} ms/s, waited for a core {ui_wait.get(name, 0) * 1000:4.0f} ms/s"
        )
    print(f"discovery status at the end: {win.discovery.status.text()}")
    if len(steps_seen) > 1:
        (t0, s0), (t1, s1) = steps_seen[0], steps_seen[-1]
        print(f"job progress: {s1 - s0} steps in {t1 - t0:.1f} s ({(s1 - s0) / max(t1 - t0, 1e-9):.2f} steps/s)")
    print(
        f"preview frames while dragging during the job: {len(frames)} in {args.seconds:.0f} s "
        f"({len(frames) / args.seconds:.1f} fps)"
    )
    print(
        f"worst stall ratio job/idle: {worst['job'] / max(worst['idle'], 1e-3):.1f}x; "
        f"job+drag/idle: {worst['job+drag'] / max(worst['idle'], 1e-3):.1f}x"
    )
    if profiler is not None:
        import pstats

        stats = pstats.Stats(profiler).sort_stats(os.environ.get("PROFILE_SORT", "tottime"))
        stats.print_stats(25)
        stats.print_callers("gc.collect|paintEvent")
    gaps = phases.get("job+drag", np.zeros(1))
    print(
        f"RESULT worst_stall_ms={gaps.max() * 1000:.1f} p99_ms={np.percentile(gaps, 99) * 1000:.1f} "
        f"idle_worst_ms={worst['idle']:.1f} job_worst_ms={worst['job']:.1f} drag_fps={len(frames) / args.seconds:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
