"""Running engine work off the UI thread with superqt workers.

Two shapes of work:

* ``JobRunner`` drives one long engine job (a generator of ``Progress``) on a superqt
  ``GeneratorWorker``. Progress records are batched in the worker (at most ~20 deliveries a
  second) so a job that yields thousands of records cannot flood the event loop; ``cancel()``
  closes the job at its next yield *in the worker thread*, so its ``finally`` blocks never run
  on the UI thread.
* ``LatestWins`` runs short functions (preview renders, grid pages): every request gets a
  stamp, at most one runs at a time, only the newest waiting request is kept, and a result older
  than one already delivered is dropped.

No QThread is created by hand: superqt's workers run on Qt thread pools (renders on the global
pool at normal priority, long jobs on ``job_pool()`` at a lower priority).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QObject, QThread, QThreadPool, Signal
from superqt.utils import FunctionWorker, GeneratorWorker, create_worker

from engine.jobs import Progress, relabel

DELIVERY_INTERVAL_S = 0.05
WORKER_NICE = 4


def lower_thread_priority(nice: int = WORKER_NICE) -> None:
    """Make the calling (long-job) worker thread yield the CPU to the UI and preview threads.

    On a 2-core machine a discovery and a preview render already fill both cores; without
    this the UI thread queues behind them for the scheduler. Linux schedules threads
    individually, so the thread's own nice value is raised (unprivileged users can raise it but
    not lower it back, hence a fixed level); elsewhere Qt's thread priority does the same.
    """
    if sys.platform.startswith("linux") and hasattr(os, "setpriority"):
        try:
            tid = threading.get_native_id()
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:
            pass
    else:
        QThread.currentThread().setPriority(QThread.Priority.LowPriority)


_JOB_POOL: QThreadPool | None = None
JOB_THREADS = 2


def job_pool() -> QThreadPool:
    """The thread pool of long jobs (discovery, export), apart from Qt's global pool.

    Its threads lower their own priority for good (``lower_thread_priority``), so they must not
    be shared with the preview and grid renders, which run at normal priority in the global pool.
    """
    global _JOB_POOL
    if _JOB_POOL is None:
        _JOB_POOL = QThreadPool()
        _JOB_POOL.setMaxThreadCount(JOB_THREADS)
    return _JOB_POOL


class JobWorker(GeneratorWorker):
    """superqt's generator worker, closing the generator in its own thread when it stops."""

    def work(self):
        try:
            return super().work()
        finally:
            self._gen.close()


def _batched(make_job: Callable[[], Iterator[Progress]]):
    """Run the job; yield lists of its records, at most one list per ``DELIVERY_INTERVAL_S``."""
    lower_thread_priority()
    job = make_job()
    pending: list[Progress] = []
    last = 0.0

    def collect(rec: Progress) -> list[Progress] | None:
        nonlocal pending, last
        pending.append(rec)
        now = time.perf_counter()
        if now - last < DELIVERY_INTERVAL_S:
            return None
        out, pending, last = pending, [], now
        return out

    result = yield from relabel(job, collect)  # closes the job when the worker stops
    if pending:
        yield pending
    return result


class JobRunner(QObject):
    """One long engine job at a time, with Qt signals for its life cycle.

    ``progress(list[Progress])`` carries every record in order (batched); exactly one of
    ``finished(result)``, ``failed(exception)`` or ``cancelled()`` follows, then ``stopped()``.
    """

    progress = Signal(object)
    finished = Signal(object)
    failed = Signal(object)
    cancelled = Signal()
    stopped = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._worker: JobWorker | None = None
        self._ended = False

    @property
    def running(self) -> bool:
        return self._worker is not None

    def start(self, make_job: Callable[[], Iterator[Progress]]) -> None:
        """Start ``make_job()`` (called in the worker thread) unless a job is already running."""
        if self._worker is not None:
            raise RuntimeError("a job is already running")
        self._ended = False
        worker = create_worker(_batched, make_job, _worker_class=JobWorker, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self._worker = worker  # our reference keeps it alive until it has finished
        job_pool().start(worker)

    def cancel(self) -> None:
        """Ask the job to stop at its next yield (``cancelled`` is emitted once it has)."""
        if self._worker is not None:
            self._worker.quit()

    def _on_yielded(self, records: list[Progress]) -> None:
        self.progress.emit(records)

    def _on_returned(self, result: Any) -> None:
        self._ended = True
        self.finished.emit(result)

    def _on_errored(self, exc: Exception) -> None:
        self._ended = True
        self.failed.emit(exc)

    def _on_aborted(self) -> None:
        self._ended = True
        self.cancelled.emit()

    def _on_finished(self) -> None:
        self._worker = None
        if not self._ended:  # cancel arrived after the last step: superqt then reports nothing
            self.cancelled.emit()
        self.stopped.emit()


class BackgroundCall(QObject):
    """``fn(*args)`` once on a worker thread: ``done(result)`` or ``failed(exception)`` follows on
    the UI thread.

    For file work the UI thread must not wait on (saving a set with fsync, hashing a ``.latent``,
    decoding a photo). ``fn`` is a plain module-level function of plain arguments, so the call can
    move to a worker process unchanged. Runs on Qt's global pool, which the closing window waits
    for: a save that has started always completes.
    """

    _active: set[BackgroundCall] = set()  # keeps parentless calls alive until they have reported

    def __init__(
        self,
        fn: Callable[..., Any],
        *args: Any,
        done: Callable[[Any], None] | None = None,
        failed: Callable[[Exception], None] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._done, self._failed = done, failed
        self.finished = False
        worker = create_worker(fn, *args, _start_thread=False, _ignore_errors=True)
        # bound methods of this QObject (made on the UI thread): Qt calls them on the UI thread
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        if parent is None:  # else the parent keeps it; if the parent goes first, nothing is reported
            BackgroundCall._active.add(self)
        worker.start()

    def _on_returned(self, value: Any) -> None:
        if self._done is not None:
            self._done(value)

    def _on_errored(self, exc: Exception) -> None:
        if self._failed is not None:
            self._failed(exc)

    def _on_finished(self) -> None:
        self.finished = True
        self._worker = None
        BackgroundCall._active.discard(self)


def _stamped(fn: Callable[..., Any], stamp: int, args: tuple) -> tuple[int, bool, Any]:
    try:
        return stamp, True, fn(*args)
    except Exception as exc:  # noqa: BLE001 - handed to the UI thread, which shows it
        return stamp, False, exc


class LatestWins(QObject):
    """Run ``fn(*args)`` on a worker thread, newest request first, dropping stale results.

    ``result(stamp, value)`` is emitted for a finished request unless a newer one has already
    been delivered; ``failed(stamp, exception)`` likewise. ``idle`` after the last request.
    """

    result = Signal(int, object)
    failed = Signal(int, object)
    idle = Signal()

    def __init__(self, fn: Callable[..., Any], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._fn = fn
        self._stamp = 0
        self._delivered = 0
        self._pending: tuple[int, tuple] | None = None
        self._worker: FunctionWorker | None = None
        self._closed = False

    @property
    def busy(self) -> bool:
        return self._worker is not None or self._pending is not None

    @property
    def latest(self) -> int:
        return self._stamp

    def submit(self, *args: Any) -> int:
        """Queue a request, replacing any request still waiting; returns its stamp."""
        if self._closed:
            return self._stamp
        self._stamp += 1
        self._pending = (self._stamp, args)
        if self._worker is None:
            self._start_next()
        return self._stamp

    def shutdown(self) -> None:
        """Accept no more requests (the window is closing); the running one may finish."""
        self._closed = True
        self.discard()

    def discard(self) -> None:
        """Forget the waiting request and drop the result of the running one."""
        self._pending = None
        self._delivered = self._stamp

    def _start_next(self) -> None:
        stamp, args = self._pending
        self._pending = None
        # bound methods of this QObject: Qt delivers them on the UI thread
        worker = create_worker(_stamped, self._fn, stamp, args, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._on_returned)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()

    def _on_returned(self, outcome: tuple[int, bool, Any]) -> None:
        stamp, ok, value = outcome
        if stamp > self._delivered:
            self._delivered = stamp
            (self.result if ok else self.failed).emit(stamp, value)

    def _on_finished(self) -> None:
        self._worker = None
        if self._pending is not None:
            self._start_next()
        else:
            self.idle.emit()


def _import_torch_compiler() -> None:
    lower_thread_priority()
    try:
        import torch._dynamo  # noqa: F401
    except Exception:  # noqa: BLE001 - only a warm-up; the job that needs it will report problems
        pass


def prewarm() -> threading.Thread:
    """Import torch's compiler stack (``torch._dynamo``) in the background, right after start-up.

    Creating the first torch optimiser imports it lazily: seconds of module code run while holding
    the interpreter lock, which would freeze the UI for up to a second when the user starts the
    first training-based discovery. Paying it at start-up, while the model loads, hides it.
    A daemon thread, not a pool worker: closing the window never waits for an import to finish.
    """
    thread = threading.Thread(target=_import_torch_compiler, name="prewarm", daemon=True)
    thread.start()
    return thread


_JOB_PROCESS = None


def torch_threads() -> int:
    """The editor's torch thread budget (``engine.device.cap_threads``), which jobs run with too."""
    import torch

    return torch.get_num_threads()


def job_process():
    """The editor's persistent long-job process (``desktop.job_process.JobProcess``), started on first use."""
    global _JOB_PROCESS
    if _JOB_PROCESS is None:
        from desktop.job_process import JobProcess

        _JOB_PROCESS = JobProcess()
        _JOB_PROCESS.start()
    return _JOB_PROCESS


def shutdown_job_process() -> None:
    global _JOB_PROCESS
    if _JOB_PROCESS is not None:
        _JOB_PROCESS.shutdown()
        _JOB_PROCESS = None


def _set_file(value) -> bool:
    """Whether a value from the job process is a direction set sent as a file (``_portable``)."""
    return isinstance(value, tuple) and len(value) == 2 and value[0] == "dirset"


class ProcessJobRunner(QObject):
    """``JobRunner``'s signals for a job run in the long-job process (``desktop.job_process``).

    ``start(spec)`` takes a ``JobSpec``; a timer on the UI thread reads the pipe every
    ``POLL_MS`` (the worker sends progress at most every 0.1 s: reading more often would only
    wake the UI thread for nothing). Direction sets (partial results in ``Progress.partial``,
    the result) arrive as files, read back on a worker (``BackgroundCall``: a dense parameter
    set is tens of MB); the events behind such a read wait for it, so every signal keeps the
    job's order, and a partial set that a newer one in the queue replaces is not read at all.
    A failure arrives as one line (``AtlasError``).
    """

    POLL_MS = 100
    progress = Signal(object)
    finished = Signal(object)
    failed = Signal(object)
    cancelled = Signal()
    stopped = Signal()

    def __init__(self, parent: QObject | None = None, process=None) -> None:
        from PySide6.QtCore import QTimer

        super().__init__(parent)
        self._process = process
        self._timer = QTimer(self)
        self._timer.setInterval(self.POLL_MS)
        self._timer.timeout.connect(self._poll)
        self._running = False
        self._events: deque = deque()  # events of the job not delivered yet (behind a file read)
        self._reading: BackgroundCall | None = None

    @property
    def process(self):
        return self._process if self._process is not None else job_process()

    @property
    def running(self) -> bool:
        return self._running

    def start(self, spec) -> None:
        if self._running:
            raise RuntimeError("a job is already running")
        self.process.submit(spec)
        self._running = True
        self._events.clear()
        self._timer.start()

    def cancel(self) -> None:
        if self._running:
            self.process.cancel()

    def _poll(self) -> None:
        self._events.extend(self.process.poll())
        self._drain()

    def _drain(self) -> None:
        """Deliver the queued events in order, up to the first that needs a file read."""
        from desktop.job_process import load_portable

        while self._events and self._reading is None:
            event = self._events[0]
            path = self._file_of(event)
            if path is not None:
                self._reading = BackgroundCall(
                    load_portable,
                    path,
                    done=lambda value: self._read(value, None),
                    failed=lambda exc: self._read(None, exc),
                    parent=self,
                )
                return
            self._events.popleft()
            if self._deliver(event):
                return

    def _file_of(self, event: tuple) -> object:
        """The file to read before ``event`` can be delivered, or ``None``."""
        if event[0] == "finished":
            return event[1] if _set_file(event[1]) else None
        if event[0] != "progress":
            return None
        records = event[1]
        newer = any(e[0] == "progress" and any(_set_file(r.partial) for r in e[1]) for e in list(self._events)[1:])
        files = [i for i, r in enumerate(records) if _set_file(r.partial)]
        keep = None if newer or not files else files[-1]  # only the newest partial set is read
        for i in files:
            if i != keep:
                records[i] = replace(records[i], partial=None)
        return None if keep is None else records[keep].partial

    def _read(self, value, exc: Exception | None) -> None:
        """A file read on the worker has finished: deliver its event, then the ones behind it."""
        from engine.errors import describe_exception

        self._reading = None
        if not self._events:
            return
        event = self._events.popleft()
        if event[0] == "finished":
            event = ("finished", value) if exc is None else ("failed", describe_exception(exc))
        else:  # a partial set that cannot be read is skipped: the next one follows
            event = ("progress", [replace(r, partial=value if _set_file(r.partial) else r.partial) for r in event[1]])
        if not self._deliver(event):
            self._drain()

    def _deliver(self, event: tuple) -> bool:
        """Emit one event's signals; True when it ended the job."""
        from engine.errors import AtlasError

        kind = event[0]
        if kind == "progress":
            self.progress.emit(event[1])
            return False
        self._running = False
        self._timer.stop()
        self._events.clear()
        if kind == "finished":
            self.finished.emit(event[1])
        elif kind == "failed":
            self.failed.emit(AtlasError(event[1]))
        else:
            self.cancelled.emit()
        self.stopped.emit()
        return True
