"""The long-job worker process: jobs stream progress and partial sets, cancel at the next step,
a job that does not stop is killed after the grace period, a killed worker fails its job with one
line and is started again, and the same process serves the next job."""

from __future__ import annotations

import os
import signal
import time

import pytest

from desktop.job_process import JobProcess, JobSpec, ModelRef, function_path, load_portable, model_ref_of
from engine.directions import DirectionSet
from tests.desktop import slow_method


@pytest.fixture(scope="module")
def proc():
    p = JobProcess()
    p.start()
    yield p
    p.shutdown()


def spec(gen, **params) -> JobSpec:
    return JobSpec(
        model_ref_of(gen), function_path(slow_method.run), (slow_method.Params(**params),), {"device": "cpu"}
    )


def drain(p: JobProcess, until=("finished", "failed", "cancelled"), timeout: float = 120.0, on_progress=None):
    events, t0 = [], time.monotonic()
    while time.monotonic() - t0 < timeout:
        for ev in p.poll():
            events.append(ev)
            if ev[0] == "progress" and on_progress is not None:
                on_progress(ev)
            if ev[0] in until:
                return events
        time.sleep(0.01)
    raise AssertionError(f"no {until} within {timeout} s: {events}")


def test_job_streams_progress_and_partial_sets_then_its_result(proc, tiny_gen):
    assert model_ref_of(tiny_gen).module is not None  # not loadable by name: the module travels
    proc.submit(spec(tiny_gen, k=3, steps=6))
    events = drain(proc)
    records = [r for ev in events if ev[0] == "progress" for r in ev[1]]
    assert [r.step for r in records] == list(range(1, 7)) and all(r.state is None for r in records)
    assert all(r.snapshot is None for r in records)  # a closure cannot cross the pipe: it stays behind
    partials = [load_portable(r.partial) for r in records]
    assert all(isinstance(d, DirectionSet) and len(d) == 3 for d in partials[-1:])
    assert events[-1][0] == "finished"
    result = load_portable(events[-1][1])
    assert isinstance(result, DirectionSet) and len(result) == 3
    # the same answer as running the job here
    from engine.jobs import run_job

    here = run_job(slow_method.run(tiny_gen, slow_method.Params(k=3, steps=6), device="cpu"))
    assert (result.directions[0].vector - here.directions[0].vector).abs().max() < 1e-5


def test_cancel_stops_at_the_next_step_and_the_process_serves_the_next_job(proc, tiny_gen):
    pid = proc.pid
    proc.submit(spec(tiny_gen, steps=1000, delay=0.05))
    drain(proc, until=("progress",))
    t0 = time.monotonic()
    proc.cancel()
    assert drain(proc)[-1] == ("cancelled",)
    assert time.monotonic() - t0 < 2.0 and proc.pid == pid and proc.alive  # stopped itself, not killed
    proc.submit(spec(tiny_gen, steps=2))
    assert drain(proc)[-1][0] == "finished" and proc.pid == pid


def test_job_that_does_not_yield_is_killed_after_the_grace_period(proc, tiny_gen):
    proc.submit(spec(tiny_gen, steps=3, delay=30.0))  # sleeps 30 s before its first yield
    time.sleep(1.0)
    restarts = proc.restarts
    t0 = time.monotonic()
    proc.cancel()
    assert drain(proc)[-1] == ("cancelled",)
    assert 1.5 < time.monotonic() - t0 < 10 and proc.restarts == restarts + 1
    proc.submit(spec(tiny_gen, steps=2))
    assert drain(proc)[-1][0] == "finished"


def test_killed_worker_fails_its_job_in_one_line_and_restarts(proc, tiny_gen):
    proc.submit(spec(tiny_gen, steps=1000, delay=0.05))
    drain(proc, until=("progress",))
    os.kill(proc.pid, signal.SIGKILL)
    last = drain(proc)[-1]
    assert last[0] == "failed" and "stopped unexpectedly" in last[1] and "\n" not in last[1]
    proc.submit(spec(tiny_gen, steps=2))
    assert drain(proc)[-1][0] == "finished"


def test_errors_arrive_as_one_line(proc, tiny_gen):
    bad = JobSpec(ModelRef("nope", "no-such-model"), function_path(slow_method.run), (slow_method.Params(),), {})
    proc.submit(bad)
    last = drain(proc)[-1]
    assert last[0] == "failed" and "no-such-model" in last[1] and "\n" not in last[1]


@pytest.mark.skipif(not hasattr(os, "sched_getscheduler"), reason="Linux scheduling policies")
def test_the_job_process_runs_below_the_editor(proc):
    """Nice WORKER_NICE and SCHED_BATCH: when the cores are busy the UI thread gets one first."""
    from desktop.job_process import WORKER_NICE

    t0 = time.monotonic()
    while not proc.ready and time.monotonic() - t0 < 60:
        proc.poll()
        time.sleep(0.05)
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, proc.pid) == min(ours + WORKER_NICE, 19)
    assert os.sched_getscheduler(proc.pid) == os.SCHED_BATCH
