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

A job yields at least once a second, so that a cancel never waits longer: work whose size grows
with the input (a batch of renders, a pass over samples) is cut into pieces sized by the time the
previous pieces took (``Pacer``), with a yield between pieces. One call that cannot be cut (a
dense eigendecomposition, encoding a GIF, building a network) runs on a helper thread while the
job yields (``wait_for``).
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

PASS_SECONDS = 0.3  # what one piece of a paced job aims to take (a job yields between pieces)
_clock = time.perf_counter  # the pacers' timer (tests give slow fake generators a fake clock)


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


class Pacer:
    """Sizes the pieces of a long piece of work so that each takes about ``seconds``.

    A job renders (or trains on) ``n`` items in pieces of ``take(left)`` items and yields between
    pieces; after each piece it reports the time taken (``record``, or the ``timed`` context). The
    plan starts at ``first`` items and doubles while a piece of the planned size would take under
    half of ``seconds``; when it would take longer than ``seconds`` it is scaled down to fit, within
    ``[1, most]`` items. So a job yields every ``seconds`` or so on any machine and model, down to
    one item per piece (one item that takes longer than a second is the finest grain there is).

    ``seconds=None`` turns pacing off: pieces of ``most`` items (the callers' fixed batch sizes,
    for callers that never cancel, such as the editor's grid, and for tests of fixed schedules).
    ``device``: CUDA work is asynchronous, so the timer waits for it before reading the clock.
    Pieces differ from one run to the next only in how the same items are grouped: results agree
    to rounding (a job that needs bit-identical reruns keeps its ``size`` in its state).
    """

    def __init__(self, most: int, *, seconds: float | None = PASS_SECONDS, first: int = 1, device: Any = None) -> None:
        self.most = max(1, int(most))
        self.seconds = seconds
        self.size = self.most if seconds is None else max(1, min(self.most, int(first)))
        self.device = device

    def take(self, left: int) -> int:
        """Items in the next piece when ``left`` remain (at least 1)."""
        return max(1, min(self.size, int(left)))

    def record(self, items: int, seconds: float) -> None:
        """A piece of ``items`` took ``seconds``: plan the next one."""
        if self.seconds is None or items < 1:
            return
        projected = seconds / items * self.size
        if projected < self.seconds / 2:
            self.size *= 2
        elif projected > self.seconds:
            self.size = int(self.size * self.seconds / projected)
        self.size = max(1, min(self.most, self.size))

    def elapsed(self, t0: float) -> float:
        """Seconds since ``t0`` (a reading of ``clock()``), device work included."""
        if self.device is not None and getattr(self.device, "type", str(self.device)).startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)
        return _clock() - t0

    @staticmethod
    def clock() -> float:
        return _clock()

    def slices(self, n: int) -> Iterator[slice]:
        """Slices covering ``range(n)`` in paced pieces: ``for sl in pacer.slices(n): work(sl); yield ...``.

        A piece is timed from the moment it is handed out to the moment the next one is asked for,
        which includes the caller's yield (its consumer's handling of a record: normally nothing).
        """
        start = 0
        while start < n:
            k = self.take(n - start)
            t0 = _clock()
            yield slice(start, start + k)
            self.record(k, self.elapsed(t0))
            start += k


_helpers: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def helpers_running() -> bool:
    """Whether a ``wait_for`` call of a closed job is still running on its helper thread.

    A process that ends then must end with ``os._exit`` (``cli.main.exit_process``): the interpreter's
    normal shutdown stops daemon threads inside torch's C++ code, which aborts the process
    ("terminate called without an active exception") instead of exiting with its status.
    """
    return any(t.is_alive() for t in list(_helpers))


def wait_for(fn: Callable[..., Any], *args: Any, record: Progress | None = None, **kwargs: Any) -> Iterator[Progress]:
    """Job: ``fn(*args, **kwargs)`` on a helper thread, yielding ``record`` every ``PASS_SECONDS``
    until it returns; returns its value (or raises its exception).

    For one call that cannot be cut into pieces (torch and numpy release the GIL inside it).
    Closing the job stops the waiting at once: the call finishes on its own (daemon) thread and
    its result is dropped, so ``fn`` must not change anything the caller keeps.
    """
    done = threading.Event()
    out: dict[str, Any] = {}

    def call() -> None:
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the job's own thread below
            out["error"] = exc
        finally:
            done.set()

    helper = threading.Thread(target=call, name=f"wait_for {getattr(fn, '__name__', 'call')}", daemon=True)
    _helpers.add(helper)
    helper.start()
    while not done.wait(PASS_SECONDS):
        yield record if record is not None else Progress(0, 0)
    if "error" in out:
        raise out["error"]
    return out.get("value")


def optimizers_ready(record: Progress | None = None) -> Iterator[Progress]:
    """Job: make sure ``torch.optim`` can build an optimizer without a pause. The first optimizer of a
    process imports ``torch._dynamo`` (1 s here on an idle core, 4 s on a loaded machine, in one
    call); this imports it on a helper thread while the job yields ``record``."""
    if "torch._dynamo" not in sys.modules:
        yield from wait_for(importlib.import_module, "torch._dynamo", record=record)
