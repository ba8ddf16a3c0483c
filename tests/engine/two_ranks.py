"""Two CPU ranks in one gloo process group, as ``torchrun --nproc_per_node 2`` starts them."""

from __future__ import annotations

import importlib
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.multiprocessing as mp

# Every test's two-rank worker, run together in one pair of ranks by ``shared_run``: each rank's
# start costs an interpreter, ``import torch`` and a gloo group, more than the tiny jobs themselves.
WORKERS = ("tests.engine.test_discovery_ddp:_worker", "tests.engine.test_param_spectrum_ddp:_worker")
_SHARED: list[dict] = []


def shared_run(worker: Callable[[int, torch.device, str], dict]) -> list[dict]:
    """What ``worker`` (one of ``WORKERS``) returned on ranks 0 and 1. The first call runs every
    worker of ``WORKERS``, one after another in the same two ranks; later calls reuse the results."""
    key = f"{worker.__module__}:{worker.__name__}"
    assert key in WORKERS, f"add {key} to tests.engine.two_ranks.WORKERS"
    if not _SHARED:
        with tempfile.TemporaryDirectory() as out_dir:
            _SHARED.extend(run_two_ranks(_every_worker, out_dir))
    return [results[key] for results in _SHARED]


def _every_worker(rank: int, device, out_dir: str) -> dict:
    results = {}
    for key in WORKERS:
        module, name = key.split(":")
        results[key] = getattr(importlib.import_module(module), name)(rank, device, out_dir)
    return results


def run_two_ranks(worker: Callable[[int, torch.device, str], dict], out_dir) -> list[dict]:
    """``worker(rank, device, out_dir) -> dict`` on ranks 0 and 1 (a module-level function: it is
    pickled); returns what each rank returned, in rank order."""
    mp.spawn(_rank, args=(_free_port(), worker, str(out_dir)), nprocs=2, join=True)
    return [torch.load(Path(out_dir) / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


def _rank(rank: int, port: int, worker, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2"
    )
    torch.set_num_threads(1)
    from engine.discovery.distributed import init_from_env, shutdown

    info, device = init_from_env("cpu")
    assert info.world_size == 2 and info.rank == rank
    try:
        torch.save(worker(rank, device, out_dir), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
