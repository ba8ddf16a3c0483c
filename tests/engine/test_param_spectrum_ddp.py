"""Two CPU ranks (gloo) split the Hessian's latents; the eigenpairs equal the one-process run's."""

import numpy as np
import pytest
import torch

from tests.engine.two_ranks import shared_run

pytestmark = pytest.mark.dist

PARAMS = dict(k=2, guard=2, layer="main.6", distance="pixel", samples=4, tol=1e-4, steps=40)


def _worker(rank: int, device, out_dir: str) -> dict:
    from engine.discovery import get_method
    from engine.jobs import run_job
    from tests.engine.test_param_space import tiny_dcgan

    spec = get_method("param-spectrum")
    dset = run_job(spec.run(tiny_dcgan(ngf=4, n_up=2, seed=1), spec.make_params(**PARAMS), device=device))
    return {
        "eig": torch.tensor(dset.metrics["eigenvalues"]),
        "passes": dset.metrics["generator_forward_passes"],
        "V": dset.bases["layer"].tensors["vectors"],
    }


def test_two_gloo_ranks_split_the_hessian_samples():
    from engine.discovery import get_method
    from engine.jobs import run_job
    from tests.engine.test_param_space import tiny_dcgan

    torch.set_num_threads(1)
    spec = get_method("param-spectrum")
    single = run_job(spec.run(tiny_dcgan(ngf=4, n_up=2, seed=1), spec.make_params(**PARAMS)))
    r0, r1 = shared_run(_worker)
    assert torch.equal(r0["V"], r1["V"])  # both ranks iterate on the same summed products
    assert np.allclose(r0["eig"].numpy(), single.metrics["eigenvalues"], rtol=1e-4)
    assert r0["passes"] < single.metrics["generator_forward_passes"]  # each rank rendered only its share
