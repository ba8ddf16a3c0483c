"""Two CPU ranks (gloo) train latent-recon with DDP and end with identical directions and R."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

pytestmark = pytest.mark.dist


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2"
    )
    torch.set_num_threads(1)
    from engine.discovery import get_method
    from engine.discovery.distributed import init_from_env, shutdown
    from engine.discovery.shifts import stream_generator
    from engine.jobs import run_job
    from tests.engine.tiny_generators import tiny_dcgan

    info, device = init_from_env("cpu")
    assert info.world_size == 2 and info.rank == rank
    spec = get_method("latent-recon")
    params = spec.make_params(k=3, steps=5, batch_size=8, rca_samples=16, rca_every=5, lr=1e-3)
    states = []
    dset = run_job(spec.run(tiny_dcgan(nz=8), params, device=device), lambda rec: states.append(rec.state))
    first_z = torch.randn(4, generator=stream_generator("train", params.seed, rank, 0))
    torch.save(
        {
            "A": torch.stack([d.vector for d in dset.directions]),
            "rca": dset.metrics["rca"],
            "history": dset.metrics["history"]["loss"],
            "first_z": first_z,
            "states": sum(s is not None for s in states),
        },
        os.path.join(out_dir, f"rank{rank}.pt"),
    )
    shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_stay_in_sync(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert torch.equal(r0["A"], r1["A"])  # DDP averaged the gradients of A (and R) on both ranks
    assert not torch.allclose(r0["A"], torch.eye(8)[:3])  # A was trained
    assert r0["rca"] == r1["rca"]  # pooled over both ranks' fresh samples
    assert not torch.equal(r0["first_z"], r1["first_z"])  # each rank draws its own batches
    assert r0["history"] != r1["history"]  # ... so their local losses differ
    assert r0["states"] >= 1 and r1["states"] == 0  # only rank 0 hands out checkpoints
