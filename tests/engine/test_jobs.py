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
