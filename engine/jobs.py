"""Long work as plain generators.

A job is a function returning ``Iterator[Progress]`` whose ``return`` value is the result, e.g.::

    def run(gen, params, *, device) -> Iterator[Progress]:
        for step in range(n):
            ...
            yield Progress(step + 1, n, metrics={"loss": loss})
        return direction_set

Callers drive it: tests with ``run_job``; the CLI with a tqdm bar (``cli.common.drive``); the GUI
with a superqt worker whose ``quit()`` stops it at the next yield (the generator is simply
closed, so ``finally`` blocks run). Nothing here knows about Qt.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Progress:
    """One progress record of a job.

    ``step``/``total`` count work units (``total`` may be 0 when unknown); ``metrics`` hold
    scalars worth plotting (loss, rca, eigenvalues...); ``partial`` is an optional partial result
    (e.g. a DirectionSet with the directions found so far) that a UI may show while the job runs.

    A resumable job yields its ``state`` every so often (the caller saves it) and may give every
    record a ``snapshot``: a function returning the state as of this record, called only while the
    job waits at this yield. A caller that cancels the job calls it first, so that stopping before
    the next periodic state loses nothing (``engine.discovery.checkpoint.Checkpointer``).
    """

    step: int
    total: int
    stage: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    partial: Any = None
    message: str = ""
    state: Any = None  # resumable state of a long job (see engine.discovery.registry)
    snapshot: Callable[[], Any] | None = field(default=None, repr=False, compare=False)

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else min(1.0, self.step / self.total)


def run_job(job: Iterator[Progress], on_progress: Callable[[Progress], Any] | None = None) -> Any:
    """Drive ``job`` to completion and return its result (the generator's return value).

    ``on_progress`` is called with each record; if it returns ``False`` the job is closed
    (cancelled) and ``None`` is returned.
    """
    while True:
        try:
            rec = next(job)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None and on_progress(rec) is False:
            job.close()
            return None


def relabel(job: Iterator[Progress], fn: Callable[[Progress], Progress | None]) -> Iterator[Progress]:
    """Job: ``job``'s records passed through ``fn`` (``None`` drops a record); returns ``job``'s result.

    Used as ``result = yield from relabel(inner, lambda rec: replace(rec, total=n))`` to run one job
    as a stage of another. Closing the outer job closes ``job`` (its ``finally`` blocks run).
    """
    try:
        while True:
            try:
                rec = next(job)
            except StopIteration as stop:
                return stop.value
            out = fn(rec)
            if out is not None:
                yield out
    finally:
        job.close()


class Eta:
    """Estimated time left from step/total, smoothed over the run so far."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.first_step: int | None = None

    def update(self, step: int, total: int) -> float | None:
        if self.first_step is None:
            self.first_step = step
            self.t0 = time.perf_counter()
            return None
        done = step - self.first_step
        if total <= 0 or done <= 0:
            return None
        rate = (time.perf_counter() - self.t0) / done
        return rate * max(0, total - step)
