"""SeFa: golden test against an independent SVD of the same linear map."""

import numpy as np
import pytest
import torch

from engine.discovery import get_method
from engine.discovery.sefa import factorize, parse_layer_range
from engine.errors import AtlasError
from engine.jobs import run_job
from tests.engine.tiny_generators import tiny_dcgan


def test_dcgan_sefa_equals_svd_of_first_layer_jacobian():
    gen = tiny_dcgan(nz=8, ngf=4, n_up=2, seed=3)
    # The first ConvTranspose + eval BatchNorm is affine in z; its Jacobian is the matrix SeFa factorises.
    J = torch.autograd.functional.jacobian(lambda z: gen.main[:2](z.view(1, -1, 1, 1)).flatten(), torch.zeros(8))
    _, s, vt = np.linalg.svd(J.double().numpy(), full_matrices=False)
    np.testing.assert_allclose(gen.first_latent_layer().matrix.numpy(), J.double().numpy(), rtol=1e-5, atol=1e-6)

    dset = run_job(get_method("sefa").run(gen, get_method("sefa").make_params(k=8)))
    assert len(dset) == 8 and dset[0].space == "z"
    scores = np.array([d.score for d in dset.directions])
    np.testing.assert_allclose(scores, s**2, rtol=1e-5)
    assert np.all(np.diff(scores) <= 0)
    V = np.stack([d.vector.numpy() for d in dset.directions])
    cos = np.abs(np.sum(V * vt, axis=1))  # per-direction |cos| with the right singular vectors
    np.testing.assert_allclose(cos, 1.0, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(V, axis=1), 1.0, atol=1e-5)


def test_batchnorm_scale_is_folded_in():
    gen = tiny_dcgan(nz=8, seed=1)
    raw = gen.main[0].weight.detach().double().permute(1, 2, 3, 0).reshape(-1, 8)
    vals_raw, _ = factorize(raw, normalize_rows=False)
    vals, _ = factorize(gen.first_latent_layer().matrix, normalize_rows=False)
    assert not torch.allclose(vals, vals_raw, rtol=1e-3)


def test_row_normalisation_matches_numpy():
    A = torch.randn(40, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    vals, vecs = factorize(A, normalize_rows=True)
    An = A.numpy() / np.linalg.norm(A.numpy(), axis=1, keepdims=True)
    _, s, vt = np.linalg.svd(An, full_matrices=False)
    np.testing.assert_allclose(vals.numpy(), s**2, rtol=1e-8)
    np.testing.assert_allclose(np.abs(np.sum(vecs.numpy().T * vt, axis=1)), 1.0, atol=1e-8)


def test_layer_ranges_and_errors():
    assert parse_layer_range("all", 14) is None
    assert parse_layer_range("2-5", 14) == (2, 6)
    assert parse_layer_range("3", 14) == (3, 4)
    with pytest.raises(AtlasError, match="contiguous"):
        parse_layer_range("0,3", 14)
    with pytest.raises(AtlasError, match="0..13"):
        parse_layer_range("12-14", 14)
    with pytest.raises(AtlasError, match="not allowed"):
        get_method("sefa").make_params(normalize="maybe")
    with pytest.raises(AtlasError, match="at least 1"):
        get_method("sefa").make_params(k=0)


def test_stylegan2_sefa_equals_svd_of_style_affine_jacobians():
    from tests.engine.tiny_generators import tiny_stylegan2

    gen = tiny_stylegan2(seed=1)
    # Independent A: the Jacobian of each conv layer's affine (style = A w + b), rows normalised as SeFa does.
    blocks = []
    for name, idx, _ in gen.style_affines():
        if name.endswith("torgb") or not 1 <= idx < 4:
            continue
        affine = gen.layer_module(name).affine
        blocks.append(torch.autograd.functional.jacobian(affine, torch.zeros(1, gen.w_dim))[0, :, 0].double().numpy())
    A = np.concatenate(blocks)
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    _, s, vt = np.linalg.svd(A, full_matrices=False)

    dset = run_job(get_method("sefa").run(gen, get_method("sefa").make_params(k=5, layers="1-3")))
    assert dset[0].space == "w+" and dset[0].layers == (1, 4)
    np.testing.assert_allclose([d.score for d in dset.directions], s[:5] ** 2, rtol=1e-5)
    V = np.stack([d.vector.numpy() for d in dset.directions])
    np.testing.assert_allclose(np.abs(np.sum(V * vt[:5], axis=1)), 1.0, atol=1e-4)
    whole = run_job(get_method("sefa").run(gen, get_method("sefa").make_params(k=3)))
    assert whole[0].space == "w" and whole[0].layers is None
