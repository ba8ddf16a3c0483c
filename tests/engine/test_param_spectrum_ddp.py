"""Two CPU ranks (gloo) split the Hessian's latents; the eigenpairs equal the one-process run's."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

pytestmark = pytest.mark.dist

PARAMS = dict(k=2, guard=2, layer="main.6", distance="pixel", samples=4, tol=1e-4, steps=40)


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2"
    )
    torch.set_num_threads(1)
    from engine.discovery import get_method
    from engine.discovery.distributed import init_from_env, shutdown
    from engine.jobs import run_job
    from tests.engine.test_param_space import tiny_dcgan

    info, device = init_from_env("cpu")
    spec = get_method("param-spectrum")
    dset = run_job(spec.run(tiny_dcgan(ngf=4, n_up=2, seed=1), spec.make_params(**PARAMS), device=device))
    torch.save(
        {
            "eig": torch.tensor(dset.metrics["eigenvalues"]),
            "passes": dset.metrics["generator_forward_passes"],
            "V": dset.bases["layer"].tensors["vectors"],
        },
        os.path.join(out_dir, f"rank{rank}.pt"),
    )
    shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_split_the_hessian_samples(tmp_path):
    from engine.discovery import get_method
    from engine.jobs import run_job
    from tests.engine.test_param_space import tiny_dcgan

    torch.set_num_threads(1)
    spec = get_method("param-spectrum")
    single = run_job(spec.run(tiny_dcgan(ngf=4, n_up=2, seed=1), spec.make_params(**PARAMS)))
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert torch.equal(r0["V"], r1["V"])  # both ranks iterate on the same summed products
    assert np.allclose(r0["eig"].numpy(), single.metrics["eigenvalues"], rtol=1e-4)
    assert r0["passes"] < single.metrics["generator_forward_passes"]  # each rank rendered only its share
