"""torch.distributed plumbing for discovery jobs launched with ``torchrun``.

A job never starts a process group itself: the CLI calls ``init_from_env`` when ``torchrun`` set
``WORLD_SIZE > 1`` (gloo on the CPU, nccl on GPUs), and jobs ask ``dist_info()`` whether they run
as one rank of several. Only rank 0 writes files and draws progress bars.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from engine.device import pick_device
from engine.errors import AtlasError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """Rank and world size of the current default process group (a single process if none)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistInfo()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the process group ``torchrun`` describes in the environment; returns (info, device).

    On CUDA each rank uses ``cuda:LOCAL_RANK`` and the nccl backend; on the CPU, gloo.
    Without ``torchrun`` (``WORLD_SIZE`` unset or 1) this only resolves the device.
    """
    dev = pick_device(device)
    if not launched_by_torchrun():
        return DistInfo(), dev
    if not dist.is_available():
        raise AtlasError("this torch build has no torch.distributed; run without torchrun")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if dev.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise AtlasError(
                f"rank with LOCAL_RANK={local_rank} has no GPU (this machine has {torch.cuda.device_count()})"
            )
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return dist_info(), dev


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks (a no-op in a single process)."""
    if dist_info().active:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_from_main(tensors: list[torch.Tensor]) -> None:
    """Overwrite ``tensors`` in place with rank 0's values (a no-op in a single process)."""
    if dist_info().active:
        for t in tensors:
            dist.broadcast(t.data, src=0)


def average_gradients(params: list[torch.Tensor]) -> None:
    """Replace each parameter's ``.grad`` by its mean over the ranks (a no-op in a single process).

    What DistributedDataParallel does during the backward pass, done once after it: the trainers
    accumulate a step's gradients over several backward passes (``engine.jobs.Pacer`` pieces).
    """
    info = dist_info()
    if not info.active:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad /= info.world_size


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
