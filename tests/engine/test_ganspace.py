"""GANSpace: the streamed PCA equals numpy PCA of the same samples; regression equals numpy lstsq."""

import numpy as np
import pytest
import torch

from engine.discovery import get_method
from engine.discovery.ganspace import Params, _activation_features, _batches, sample_latents, streamed_pca
from engine.errors import AtlasError
from engine.jobs import Pacer, run_job
from tests.engine.tiny_generators import tiny_dcgan

pytestmark = pytest.mark.usefixtures("one_thread")


def _numpy_pca(X: np.ndarray, k: int):
    mu = X.mean(0)
    C = (X - mu).T @ (X - mu) / (X.shape[0] - 1)
    vals, vecs = np.linalg.eigh(C)
    order = np.argsort(vals)[::-1][:k]
    return mu, vecs[:, order], vals[order]


def _samples(gen, p: Params, purpose="ganspace"):
    zs = [sample_latents(gen.z_dim, n, p.seed, i, purpose) for i, n in enumerate(_batches(p.n_samples, p.batch_size))]
    with torch.no_grad():
        X = (
            torch.cat([gen.early_activation(z, p.activation or gen.default_activation_depth).flatten(1) for z in zs])
            .double()
            .numpy()
        )
    return torch.cat(zs).double().numpy(), X


@pytest.mark.parametrize("solver", ["exact", "subspace"])
def test_pca_matches_numpy(solver):
    gen = tiny_dcgan(nz=8, ngf=4, n_up=2, seed=2)
    p = Params(k=5, n_samples=1500, batch_size=400, solver=solver)
    _, X = _samples(gen, p)
    mu, V, lam = _numpy_pca(X, 5)
    mean, comps, var, total = run_job(
        streamed_pca(
            _activation_features(gen, p, torch.device("cpu"), Pacer(p.batch_size)),
            _batches(p.n_samples, p.batch_size),
            5,
            solver=solver,
            tol=1e-9,
        )
    )
    np.testing.assert_allclose(mean.numpy(), mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var.numpy(), lam, rtol=1e-4)
    np.testing.assert_allclose(np.abs(np.sum(comps.numpy() * V, axis=0)), 1.0, atol=1e-4)
    assert total == pytest.approx(np.trace(np.cov(X.T)), rel=1e-4)


def test_dcgan_directions_are_the_least_squares_regression():
    gen = tiny_dcgan(nz=8, ngf=4, n_up=2, seed=2)
    p = Params(k=4, n_samples=1200, batch_size=300)
    dset = run_job(get_method("ganspace").run(gen, p))
    assert len(dset) == 4 and dset[0].space == "z"
    _, X = _samples(gen, p)
    mu, V, lam = _numpy_pca(X, 4)
    Z, Xr = _samples(gen, p, "ganspace-regression")
    coords = (Xr - mu) @ V / np.sqrt(lam)
    M = np.linalg.lstsq(coords, Z, rcond=None)[0]  # [k, z_dim]
    U = M / np.linalg.norm(M, axis=1, keepdims=True)
    got = np.stack([d.vector.numpy() for d in dset.directions])
    std = np.linalg.norm(got, axis=1)
    np.testing.assert_allclose(np.abs(np.sum(got / std[:, None] * U, axis=1)), 1.0, atol=1e-4)
    np.testing.assert_allclose(std, (Z @ U.T).std(axis=0, ddof=1), rtol=1e-3)
    np.testing.assert_allclose([d.score for d in dset.directions], lam, rtol=1e-4)


def test_bad_activation_index_is_a_clear_error():
    gen = tiny_dcgan(nz=8, ngf=4, n_up=2)
    with pytest.raises(AtlasError, match="activation=99"):
        run_job(get_method("ganspace").run(gen, Params(activation=99, n_samples=10)))


def test_stylegan2_w_pca_matches_numpy_and_is_scaled_by_std():
    from tests.engine.tiny_generators import tiny_stylegan2

    gen = tiny_stylegan2(seed=0)
    p = Params(k=4, n_samples=900, batch_size=300, layers="0-2")
    dset = run_job(get_method("ganspace").run(gen, p))
    zs = torch.cat([sample_latents(gen.z_dim, n, p.seed, i) for i, n in enumerate(_batches(p.n_samples, p.batch_size))])
    with torch.no_grad():
        W = gen.mapping(zs)[:, 0].double().numpy()
    _, V, lam = _numpy_pca(W, 4)
    got = np.stack([d.vector.numpy() for d in dset.directions])
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), np.sqrt(lam), rtol=1e-4)
    np.testing.assert_allclose(np.abs(np.sum(got / np.sqrt(lam)[:, None] * V.T, axis=1)), 1.0, atol=1e-4)
    assert dset[0].space == "w+" and dset[0].layers == (0, 3)


def test_a_slow_model_yields_within_each_batch_and_gives_the_same_directions(monkeypatch):
    """0.01 s per sample on the pacers' fake clock: a batch of 300 samples (3 s) used to be one
    yield; now it is computed in pieces, with the same samples, so the directions are the same."""
    from engine.models.dcgan import DCGANGenerator
    from tests.engine.fake_clock import slow_generator

    gen = tiny_dcgan(nz=8, ngf=4, n_up=2, seed=2)
    p = Params(k=4, n_samples=1200, batch_size=300)
    whole = run_job(get_method("ganspace").run(gen, p))
    clock = slow_generator(monkeypatch, DCGANGenerator, 0.01, "early_activation")
    stamps = []
    paced = run_job(get_method("ganspace").run(gen, p), lambda rec: stamps.append(clock.now))
    gaps = np.diff([0.0, *stamps, clock.now])
    assert gaps.max() <= 1.0, gaps.max()
    assert clock.images > 1200 * 2.9  # mean, covariance and regression passes over the samples
    for a, b in zip(whole.directions, paced.directions):
        np.testing.assert_allclose(a.vector.numpy(), b.vector.numpy(), rtol=1e-4, atol=1e-5)
