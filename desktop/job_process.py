"""Long jobs in a separate worker process, so the editor's interpreter never runs them.

A discovery job in a thread of the GUI process still shares its interpreter lock: every torch
call that holds it (module imports, optimiser set-up, small ops between kernels) delays the
event loop. Here the job runs in one persistent process started with the ``spawn`` method (no
forked copy of Qt state), which the editor starts in the background at launch and reuses, so a
short job does not pay a new ``import torch``. Nothing in this module imports Qt: the editor
drives ``JobProcess.poll()`` from a timer (``desktop.workers.ProcessJobRunner``).

Protocol (tuples over a ``multiprocessing`` pipe):

* to the worker: ``("run", job_id, JobSpec)``, ``("cancel", job_id)``, ``("stop",)``;
* from it: ``("ready",)``, ``("progress", job_id, [Progress, ...])`` (batched, at most ~20 a
  second; a ``DirectionSet`` in ``partial`` is written to disk and sent as its path; resumable
  ``state`` and the ``snapshot`` function are dropped), ``("finished", job_id, result)`` (a
  ``DirectionSet`` result as its path), ``("failed", job_id, one line)``, ``("cancelled", job_id)``.

A cancel is a message the worker reads at the job's next yield (the job is closed there); if the
job has not stopped within ``CANCEL_GRACE_S`` the process is killed and started again. A worker
that dies (crash, SIGKILL) fails its job with one line and is started again.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

CANCEL_GRACE_S = 2.0
DELIVERY_INTERVAL_S = 0.1
WORKER_NICE = 10


@dataclass(frozen=True)
class ModelRef:
    """How the worker gets the editor's generator.

    ``source``: a built-in name or a checkpoint / adapter path that ``load_generator`` reads
    (checked against ``identity``); ``module``: the pickled module itself, for generators that
    were not loaded from a source (tests, generators built in code). ``classes`` / ``transform``:
    the view's bound conditioning (``Generator.conditioned``).
    """

    identity: str
    source: str = ""
    module: Any = None
    classes: Any = None
    transform: Any = None


def model_ref_of(gen) -> ModelRef:
    """A ``ModelRef`` for ``gen``: by source when that file or built-in name loads it, else the module."""
    from engine.models.registry import builtin_models

    classes = None if gen.bound_classes is None else gen.bound_classes.cpu()
    transform = None if gen.bound_transform is None else gen.bound_transform.cpu()
    src = str(gen.source or "")
    loadable = src in {m.name for m in builtin_models()} or (src and Path(src).exists())
    if loadable:
        return ModelRef(gen.identity, src, None, classes, transform)
    return ModelRef(gen.identity, "", gen, classes, transform)


@dataclass(frozen=True)
class JobSpec:
    """A job to run in the worker: ``function(gen, *args, **kwargs)`` returning a job generator.

    ``function``: ``"module:qualname"`` of a plain function importable in the worker (e.g. a
    discovery method's ``run``); ``device``: where the model runs; ``threads``: torch threads.
    """

    model: ModelRef
    function: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    device: str = "cpu"
    threads: int = 1


def function_path(fn) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


# ---- the worker process --------------------------------------------------------------------------


def lower_process_priority() -> None:
    """Make this process (and the threads it starts later) yield the CPU to the editor.

    Nice ``WORKER_NICE`` (weight ~1/9 of the editor's) and, on Linux, the ``SCHED_BATCH`` policy
    (a CPU-bound task that never preempts others when it wakes). On an otherwise idle machine the
    job still gets a whole core; when the cores are busy the editor's UI thread gets one first
    (bench/bench_gui_stall.py). Unprivileged users may lower their priority but not raise it back.
    """
    if hasattr(os, "nice"):
        try:
            os.nice(WORKER_NICE)
        except OSError:
            pass
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_BATCH"):
        try:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        except OSError:
            pass


def worker_main(conn, out_dir: str) -> None:
    """The worker process: run jobs one at a time, reading cancels between their yields."""
    lower_process_priority()
    import torch  # noqa: F401 - paid once, while the editor starts

    models: dict[tuple, Any] = {}
    conn.send(("ready",))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "stop":
            return
        if msg[0] == "run":
            _run_one(conn, msg[1], msg[2], models, Path(out_dir))
        # a cancel of a job that already ended needs no answer


def _load_model(ref: ModelRef, models: dict, device: str):
    import torch

    from engine.errors import AtlasError

    key = (ref.identity, ref.source, device)
    gen = models.get(key)
    if gen is None:
        if ref.module is not None:
            gen = ref.module.to(device).eval()
        else:
            from engine.models import load_generator

            gen = load_generator(ref.source, device=device)
            if ref.identity and gen.identity != ref.identity:
                raise AtlasError(f"{ref.source}: the file changed since the editor loaded it (different identity)")
        models.clear()  # one model at a time: the editor has one open
        models[key] = gen
    if ref.classes is not None or ref.transform is not None:
        gen = gen.conditioned(
            classes=ref.classes, transform=None if ref.transform is None else torch.as_tensor(ref.transform)
        )
    return gen


def _resolve(path: str):
    import importlib

    module, qualname = path.split(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _portable(value: Any, out_dir: Path, job_id: int, tag: str) -> Any:
    """Direction sets travel as files (small messages); everything else is pickled as is."""
    from engine.directions import DirectionSet

    if isinstance(value, DirectionSet):
        path = out_dir / f"job{job_id}-{tag}.json"
        value.save(path)
        return ("dirset", str(path))
    return value


def _one_line(exc: BaseException) -> str:
    """The failure as the editor shows it: one line, as the command line prints it (no terminal
    codes, no C++ stack trace, no advice to load a file with ``weights_only=False``)."""
    from engine.errors import AtlasError, describe_exception, one_line

    text = one_line(exc)
    return text if isinstance(exc, AtlasError) and text else describe_exception(exc)


def _run_one(conn, job_id: int, spec: JobSpec, models: dict, out_dir: Path) -> None:
    import torch

    job = None
    try:
        torch.set_num_threads(max(1, int(spec.threads)))
        gen = _load_model(spec.model, models, spec.device)
        job = _resolve(spec.function)(gen, *spec.args, **spec.kwargs)
        pending, last, n_partial = [], 0.0, 0
        while True:
            if conn.poll():
                msg = conn.recv()
                if msg[0] == "cancel" and msg[1] == job_id:
                    job.close()
                    conn.send(("cancelled", job_id))
                    return
                if msg[0] == "stop":
                    job.close()
                    raise SystemExit(0)
            try:
                rec = next(job)
            except StopIteration as stop:
                if pending:
                    conn.send(("progress", job_id, pending))
                conn.send(("finished", job_id, _portable(stop.value, out_dir, job_id, "result")))
                return
            if rec.partial is not None:
                n_partial += 1
                rec = replace(rec, partial=_portable(rec.partial, out_dir, job_id, f"partial{n_partial % 2}"))
            pending.append(replace(rec, state=None, snapshot=None))  # resumable states stay in this process
            now = time.perf_counter()
            if now - last >= DELIVERY_INTERVAL_S:
                conn.send(("progress", job_id, pending))
                pending, last = [], now
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - reported to the editor as one line
        if job is not None:
            try:
                job.close()
            except BaseException:  # noqa: BLE001
                pass
        conn.send(("failed", job_id, _one_line(exc)))


# ---- the editor's side ---------------------------------------------------------------------------


def load_portable(value: Any) -> Any:
    """Undo ``_portable``: a ``("dirset", path)`` becomes the ``DirectionSet`` read from that file."""
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "dirset":
        from engine.directions import DirectionSet

        return DirectionSet.load(value[1])
    return value


class JobProcess:
    """The persistent worker process and the one job it runs (Qt-free; poll it from a timer).

    ``start()`` launches the process (spawn) without waiting for it; ``submit(spec)`` runs a job
    (queued in the pipe until the worker is ready); ``cancel()`` asks the running job to stop and
    kills the process if it has not stopped within ``CANCEL_GRACE_S``; ``poll()`` returns the
    events that arrived: ``("progress", records)``, ``("finished", result)``,
    ``("failed", message)``, ``("cancelled",)``, each for the current job only.
    """

    def __init__(self) -> None:
        self._ctx = mp.get_context("spawn")
        self._proc = None
        self._conn = None
        self._ids = itertools.count(1)
        self.job_id: int | None = None
        self._cancel_deadline: float | None = None
        self.ready = False
        self.restarts = 0
        self._dir = tempfile.TemporaryDirectory(prefix="gan-atlas-jobs-")

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    @property
    def busy(self) -> bool:
        return self.job_id is not None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        if self.alive:
            return
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=worker_main, args=(child, self._dir.name), daemon=True, name="gan-atlas-jobs")
        proc.start()
        child.close()
        self._proc, self._conn, self.ready = proc, parent, False

    def submit(self, spec: JobSpec) -> int:
        if self.busy:
            raise RuntimeError("a job is already running")
        self.start()
        self.job_id = next(self._ids)
        self._cancel_deadline = None
        self._conn.send(("run", self.job_id, spec))
        return self.job_id

    def cancel(self) -> None:
        if self.busy and self._cancel_deadline is None:
            try:
                self._conn.send(("cancel", self.job_id))
            except (OSError, BrokenPipeError):
                pass
            self._cancel_deadline = time.monotonic() + CANCEL_GRACE_S

    def poll(self) -> list[tuple]:
        events: list[tuple] = []
        if self._conn is None:
            return events
        try:
            while self._conn.poll():
                msg = self._conn.recv()
                if msg[0] == "ready":
                    self.ready = True
                    continue
                if msg[1] != self.job_id:
                    continue  # a late message of a job already ended
                if msg[0] == "progress":
                    events.append(("progress", msg[2]))
                    continue
                self.job_id, self._cancel_deadline = None, None
                events.append((msg[0], *msg[2:]))
        except (EOFError, OSError):
            pass
        if self.busy and not self.alive:
            code = self._proc.exitcode if self._proc is not None else None
            cancelling = self._cancel_deadline is not None
            self.job_id, self._cancel_deadline = None, None
            self._restart()
            events.append(
                ("cancelled",) if cancelling else ("failed", f"the job process stopped unexpectedly (exit code {code})")
            )
        elif self.busy and self._cancel_deadline is not None and time.monotonic() > self._cancel_deadline:
            self.job_id, self._cancel_deadline = None, None
            self.kill()
            self._restart()
            events.append(("cancelled",))
        elif not self.busy and self._proc is not None and not self.alive:
            self._restart()  # died while idle
        return events

    def kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)

    def _restart(self) -> None:
        self.kill()
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None
        self.restarts += 1
        self.start()

    def shutdown(self) -> None:
        """Stop the worker (it ends its job at the next yield); kill it if it does not exit in time."""
        if self._proc is None:
            return
        try:
            if self.busy:
                self._conn.send(("cancel", self.job_id))
            self._conn.send(("stop",))
        except (OSError, BrokenPipeError):
            pass
        self._proc.join(CANCEL_GRACE_S)
        self.kill()
        self._conn.close()
        self._proc = self._conn = None
        self.job_id = None
        self._dir.cleanup()
