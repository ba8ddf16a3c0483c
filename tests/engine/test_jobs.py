"""engine.jobs: running one job as a stage of another."""

from engine.jobs import Progress, relabel, run_job


def _inner(log: list):
    try:
        for i in range(3):
            yield Progress(i + 1, 3)
        return "done"
    finally:
        log.append("closed")


def test_relabel_maps_records_and_returns_the_result():
    log: list = []

    def outer():
        res = yield from relabel(_inner(log), lambda r: Progress(r.step * 10, 30) if r.step != 2 else None)
        return res + "!"

    seen = []
    assert run_job(outer(), seen.append) == "done!"
    assert [r.step for r in seen] == [10, 30] and log == ["closed"]


def test_closing_the_outer_job_closes_the_inner_one():
    log: list = []
    job = relabel(_inner(log), lambda r: r)
    next(job)
    job.close()
    assert log == ["closed"]


# ---- Pacer: pieces of work sized by time -------------------------------------------------------
def test_pacer_grows_while_pieces_are_quick_and_shrinks_to_fit(monkeypatch):
    import engine.jobs
    from engine.jobs import Pacer

    now = [0.0]
    monkeypatch.setattr(engine.jobs, "_clock", lambda: now[0])
    pacer = Pacer(64, seconds=0.3)
    sizes = []
    for sl in pacer.slices(200):
        sizes.append(sl.stop - sl.start)
        now[0] += 0.01 * (sl.stop - sl.start)  # 10 ms per item: 30 items fit in 0.3 s
    assert sizes[:5] == [1, 2, 4, 8, 16] and sum(sizes) == 200
    assert all(16 <= s <= 32 for s in sizes[5:-1])  # between half the target and the target
    pacer.record(pacer.size, 10.0)  # a stall: the plan is scaled down to fit at once
    assert pacer.size == 1
    for _ in range(20):
        pacer.record(pacer.size, 0.0)
    assert pacer.size == 64  # never more than `most`
    fixed = Pacer(64, seconds=None)
    assert [s.stop - s.start for s in fixed.slices(150)] == [64, 64, 22]


def test_wait_for_yields_while_one_long_call_runs_and_can_be_closed():
    import threading

    from engine.jobs import wait_for

    gate = threading.Event()
    job = wait_for(lambda: gate.wait() and 42, record=Progress(3, 9, message="waiting"))
    assert next(job).message == "waiting"  # the call is still blocked: the job yields meanwhile
    gate.set()
    assert run_job(job) == 42
    stuck = threading.Event()
    job = wait_for(stuck.wait)
    next(job)
    job.close()  # cancelled while the call still runs: it is abandoned on its daemon thread
    stuck.set()

    def fail():
        raise ValueError("boom")

    try:
        run_job(wait_for(fail))
    except ValueError as exc:
        assert str(exc) == "boom"
    else:
        raise AssertionError("the call's exception was not raised")


_EXIT_WHILE_A_HELPER_RUNS = """
import sys, torch
from cli.main import exit_process
from engine.jobs import wait_for
torch.set_num_threads(1)
a = torch.randn(1500, 1500)
def heavy():
    for _ in range(50):
        torch.linalg.eigh(a @ a.T)
job = wait_for(heavy)
next(job)
job.close()  # cancelled: the eigendecompositions go on on their daemon thread
exit_process(3)
"""


def test_a_process_cancelled_while_a_helper_thread_runs_exits_with_its_status():
    """Interpreter shutdown stops a daemon thread that is inside torch's C++ code by aborting the
    process ("terminate called without an active exception", status 134): a command cancelled
    while ``wait_for`` ran used to end that way. ``main.py`` ends through ``exit_process``."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _EXIT_WHILE_A_HELPER_RUNS], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 3 and "terminate" not in out.stderr, (out.returncode, out.stderr[-500:])
    assert "exit_process(main())" in (root / "main.py").read_text()
