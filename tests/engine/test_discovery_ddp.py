"""Two CPU ranks (gloo) train latent-recon with DDP and end with identical directions and R."""

import pytest
import torch

from tests.engine.two_ranks import shared_run

pytestmark = pytest.mark.dist


def _worker(rank: int, device, out_dir: str) -> dict:
    from engine.discovery import get_method
    from engine.discovery.shifts import stream_generator
    from engine.jobs import run_job
    from tests.engine.tiny_generators import tiny_dcgan

    spec = get_method("latent-recon")
    params = spec.make_params(k=3, steps=5, batch_size=8, rca_samples=16, rca_every=5, lr=1e-3)
    states = []
    dset = run_job(spec.run(tiny_dcgan(nz=8), params, device=device), lambda rec: states.append(rec.state))
    return {
        "A": torch.stack([d.vector for d in dset.directions]),
        "rca": dset.metrics["rca"],
        "history": dset.metrics["history"]["loss"],
        "first_z": torch.randn(4, generator=stream_generator("train", params.seed, rank, 0)),
        "states": sum(s is not None for s in states),
    }


def test_two_gloo_ranks_stay_in_sync():
    r0, r1 = shared_run(_worker)
    assert torch.equal(r0["A"], r1["A"])  # DDP averaged the gradients of A (and R) on both ranks
    assert not torch.allclose(r0["A"], torch.eye(8)[:3])  # A was trained
    assert r0["rca"] == r1["rca"]  # pooled over both ranks' fresh samples
    assert not torch.equal(r0["first_z"], r1["first_z"])  # each rank draws its own batches
    assert r0["history"] != r1["history"]  # ... so their local losses differ
    assert r0["states"] >= 1 and r1["states"] == 0  # only rank 0 hands out checkpoints
