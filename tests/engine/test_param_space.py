"""Parameter-space methods: distances, exact layer-Hessian products, the block eigensolver, SVD basis.

Golden references: an explicitly built Hessian (column-by-column double backward through the
``lpips`` package's own forward), finite differences of gradients, an independent SVD. No
network: LPIPS backbones are random (``pnet_rand``) or planted in a temporary TORCH_HOME.
"""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch

from engine.directions import DirectionSet
from engine.discovery import get_method
from engine.discovery.eigensolver import lobpcg
from engine.discovery.hessian import LayerHessian
from engine.distances import LpipsDistance, backbone, download_backbone, load_distance
from engine.errors import AtlasError
from engine.jobs import run_job
from engine.models.base import ParamEdit
from engine.models.dcgan import DCGANGenerator
from engine.render import materialize, render_batch
from tests.engine.rca_checks import assert_rca_is_an_accuracy


def tiny_dcgan(ngf: int = 2, n_up: int = 3, seed: int = 0) -> DCGANGenerator:
    """32 px (n_up=3) DCGAN with random weights and non-trivial BatchNorm statistics."""
    g = torch.Generator().manual_seed(seed)
    gen = DCGANGenerator(nz=8, ngf=ngf, nc=3, n_up=n_up)
    with torch.no_grad():
        for m in gen.modules():
            if isinstance(m, torch.nn.ConvTranspose2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight.shape[0]) ** 0.5)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    gen.name, gen.identity = "tiny", f"tiny-{ngf}-{n_up}-{seed}"
    return gen.eval()


@pytest.fixture(scope="module")
def lpips_case():
    """Tiny generator, random-backbone LPIPS, and the explicit Hessian of the literal objective."""
    import lpips

    torch.manual_seed(0)
    gen = tiny_dcgan(ngf=1)
    layer = "main.9"  # 1 x 3 x 4 x 4 = 48 weights
    dist = load_distance("lpips-alex", pnet_rand=True)
    ref = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    ref.load_state_dict(dist.model.state_dict())
    z = torch.randn(2, 8)
    W = gen.layer_weight(layer)
    n = W.numel()
    with torch.no_grad():
        x0 = gen(z)
    a = torch.zeros(n, requires_grad=True)
    x1 = gen(z, edit=ParamEdit.single(layer, a.reshape(W.shape), z.shape[0]))
    f = ref(x0, x1).mean()  # E_z LPIPS(G(z), G_{theta+a}(z)) with the package's own forward
    (g,) = torch.autograd.grad(f, a, create_graph=True)
    H = torch.stack([torch.autograd.grad(g, a, grad_outputs=e, retain_graph=True)[0] for e in torch.eye(n)])
    return gen, layer, dist, z, H.double()


def test_lpips_distance_equals_package():
    import lpips

    d = load_distance("lpips-alex", pnet_rand=True)
    ref = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    ref.load_state_dict(d.model.state_dict())
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(d(x, y), ref(x, y).flatten(), rtol=1e-5, atol=1e-7)
    p = load_distance("pixel")
    assert torch.allclose(p(x, y), ((x - y) ** 2).mean((1, 2, 3)))


def test_lpips_loads_backbone_from_hub_cache(tmp_path, monkeypatch):
    """A backbone file in the hub cache is read (weights only); the result equals lpips' own loading."""
    import lpips
    from torchvision.models import alexnet

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    b = backbone("alex")
    b.folder.mkdir(parents=True)
    torch.manual_seed(1)
    torch.save(alexnet(weights=None).state_dict(), b.path)  # random weights standing in for ImageNet ones
    d = load_distance("lpips-alex")
    ref = lpips.LPIPS(net="alex", verbose=False).eval()  # torchvision finds the cached file
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(d(x, y), ref(x, y).flatten(), rtol=1e-5, atol=1e-7)
    assert "RANDOM" not in d.label


def _no_network(*args, **kwargs):
    raise urllib.error.URLError("network disabled in tests")


def test_lpips_offline_message_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    folder = tmp_path / "empty" / "hub" / "checkpoints"
    with pytest.raises(AtlasError) as exc:
        load_distance("lpips-alex")
    msg = str(exc.value)
    assert "alexnet-owt-7be5be79.pth" in msg and str(folder) in msg and "pixel" in msg
    with pytest.raises(AtlasError) as exc:
        download_backbone("vgg", progress=False)
    msg = str(exc.value)
    assert "vgg16-397923af.pth" in msg and str(folder) in msg and "network disabled" in msg
    assert not any(folder.glob("*")), "a failed download must leave no partial file"


def test_hvp_equals_explicit_hessian(lpips_case):
    gen, layer, dist, z, H = lpips_case
    op = LayerHessian(gen, layer, dist, z, block=7)  # several blocks per product
    V = torch.randn(H.shape[0], 10)
    HV = op.matvec(V).double()
    assert torch.allclose(HV, H @ V.double(), rtol=1e-4, atol=1e-6 * H.abs().max())
    # the shared primal per latent (2), then per pass its jvp primal and a tangent per (latent, vector);
    # passes are sized by time, so their number varies: between one pass and one per vector
    assert op.backwards == 10 * 2 and 2 + 2 + 10 * 2 <= op.forwards <= 2 + 10 * 2 + 10 * 2
    assert op._x0 is None  # the unshifted images are not needed for products


def test_eigenpairs_equal_explicit_hessian(lpips_case):
    gen, layer, dist, z, H = lpips_case
    k = 3
    op = LayerHessian(gen, layer, dist, z)
    res = run_job(
        lobpcg(
            op.matvec,
            torch.randn(H.shape[0], k + 3, generator=torch.Generator().manual_seed(0)),
            k,
            tol=1e-4,
            max_iter=60,
        )
    )
    assert res.converged
    evals, evecs = torch.linalg.eigh(H)
    evals, evecs = evals.flip(0)[:k], evecs.flip(1)[:, :k]
    assert torch.allclose(res.values.double(), evals, rtol=1e-4)
    # subspace angles between the computed and exact top-k eigenvectors
    cos = torch.linalg.svdvals(evecs.T @ res.vectors.double())
    assert float(torch.arccos(cos.clamp(max=1)).max()) < 1e-2
    # and each eigenvector individually (the top eigenvalues of this Hessian are distinct)
    assert (evals[:-1] / evals[1:] > 1.01).all()
    assert ((evecs * res.vectors.double()).sum(0).abs() > 0.999).all()


def test_subset_products_equal_an_operator_over_the_first_latents():
    gen = tiny_dcgan(ngf=4, n_up=2, seed=2)
    d = load_distance("pixel")
    z = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    full = LayerHessian(gen, "main.3", d, z, pass_seconds=None)
    V = torch.randn(full.n, 3, generator=torch.Generator().manual_seed(1))
    sub = full.subset(2)
    naive = LayerHessian(gen, "main.3", d, z[:2], pass_seconds=None)
    assert torch.allclose(sub.matvec(V), naive.matvec(V), rtol=1e-5, atol=1e-7)
    assert sub.N == 2 and sub.forwards == naive.forwards and full.forwards == 0  # counts of its own
    assert not torch.allclose(sub.matvec(V), full.matvec(V), rtol=1e-3)  # a different average


def test_warm_started_eigenpairs_equal_explicit_hessian(lpips_case):
    gen, layer, dist, z, H = lpips_case
    k = 3
    op = LayerHessian(gen, layer, dist, z)
    X0 = torch.randn(H.shape[0], k + 2, generator=torch.Generator().manual_seed(0))
    records = []
    X = run_job(op.warm_start_job(X0, k, samples=1, steps=3), records.append)
    assert X.shape == X0.shape and not torch.allclose(X, X0)
    assert sum("warm start" in getattr(r, "name", "") for r in records) == 4  # iterations 0..3, as phases
    warm_passes = op.forwards + op.backwards
    assert warm_passes > 0  # the subsampled products count in the operator's passes
    res = run_job(lobpcg(op.matvec, X, k, tol=1e-4, max_iter=60))
    assert res.converged and op.forwards + op.backwards > warm_passes
    evals, evecs = torch.linalg.eigh(H)
    evals, evecs = evals.flip(0)[:k], evecs.flip(1)[:, :k]
    assert torch.allclose(res.values.double(), evals, rtol=1e-4)
    assert ((evecs * res.vectors.double()).sum(0).abs() > 0.999).all()
    # no warm start when the subset would be the whole minibatch
    assert run_job(op.warm_start_job(X0, k, samples=z.shape[0], steps=3)) is X0


def test_param_spectrum_with_a_warm_start_finds_the_same_eigenpairs():
    gen = tiny_dcgan(ngf=4, n_up=2, seed=1)
    spec = get_method("param-spectrum")
    common = dict(k=3, guard=2, layer="main.6", distance="pixel", samples=6, tol=1e-4, steps=60)
    cold = run_job(spec.run(gen, spec.make_params(**common, warm_samples=0)))
    warm = run_job(spec.run(gen, spec.make_params(**common, warm_samples=2, warm_steps=3)))
    assert cold.metrics["converged"] and warm.metrics["converged"]
    assert np.allclose(warm.metrics["eigenvalues"], cold.metrics["eigenvalues"], rtol=1e-4)
    assert warm.metrics["max_relative_residual"] < 1e-3


def test_hvp_equals_finite_differences_of_gradients():
    gen = tiny_dcgan(ngf=4, n_up=2, seed=3).double()  # float64: a small eps without rounding noise
    layer = "main.3"
    g = torch.Generator().manual_seed(0)
    op = LayerHessian(gen, layer, load_distance("pixel"), torch.randn(4, 8, generator=g))
    v = torch.randn(op.n, dtype=torch.float64, generator=g)
    v /= v.norm()
    # small enough that no ReLU changes side (the objective is piecewise smooth), large for float64
    eps = 1e-5 * float(gen.layer_weight(layer).norm())
    a = (eps * v).reshape(op.shape)
    fd = (op.gradient(a) - op.gradient(-a)).flatten() / (2 * eps)
    hv = op.matvec(v[:, None])[:, 0]
    assert float((fd - hv).norm() / hv.norm()) < 1e-5
    assert float(op.gradient(torch.zeros(op.shape)).abs().max()) < 1e-12  # a = 0 is the minimum


def test_param_svd_reconstructs_svd():
    gen = tiny_dcgan(ngf=4, n_up=2)
    spec = get_method("param-svd")
    layer = "main.3"
    W = gen.layer_weight(layer).detach().double()
    r = min(W.shape[0], W[0].numel())
    dset = run_job(spec.run(gen, spec.make_params(k=r, layer=layer)))
    U, S, Vh = np.linalg.svd(W.reshape(W.shape[0], -1).numpy(), full_matrices=False)
    assert np.allclose([d.score for d in dset.directions], S, rtol=1e-5)
    total = torch.zeros_like(W)
    for k in range(r):
        delta = dset.param_delta(k).double()
        assert abs(float(delta.norm()) - float(W.norm())) < 1e-3 * float(W.norm())  # t is a fraction of ||W||
        rank1 = np.outer(U[:, k], Vh[k]).reshape(W.shape)
        assert np.allclose(delta.numpy() / float(W.norm()), rank1, atol=1e-5)
        total += S[k] * delta / W.norm()
    assert torch.allclose(total, W, atol=1e-4)
    assert dset.directions[0].range == (-0.2, 0.2)


def test_param_spectrum_pixel_is_labelled_and_resumes(tmp_path):
    gen = tiny_dcgan(ngf=4, n_up=2, seed=1)
    spec = get_method("param-spectrum")
    params = spec.make_params(k=3, guard=2, layer="main.6", distance="pixel", samples=3, tol=1e-4, steps=60)
    full = run_job(spec.run(gen, params))
    assert full.params["distance"] == "pixel" and "NOT perceptual" in full.params["distance_label"]
    assert "pixel" in full.notes
    assert full.metrics["converged"] and full.metrics["max_relative_residual"] < 1e-3
    assert len(full.metrics["residuals"]) == 3
    # cancel after two iterations, resume from the last state: same eigenpairs
    states = []
    job = spec.run(gen, params)
    run_job(job, lambda rec: states.append(rec.state) or rec.step < 2)
    resumed = run_job(spec.run(gen, params, state=states[-1]))
    assert resumed.metrics["iterations"] >= 2
    assert np.allclose(resumed.metrics["eigenvalues"], full.metrics["eigenvalues"], rtol=1e-4)
    # the set saves, loads and renders its edits
    path = full.save(tmp_path / "spec.json")
    loaded = DirectionSet.load(path)
    d = materialize(loaded, 0)
    imgs = render_batch(gen, gen.seed_latents([0, 0]), [[], [(d, 0.03)]])
    assert float((imgs[0] - imgs[1]).abs().max()) > 0


def test_unknown_layer_and_distance_are_clear_errors():
    gen = tiny_dcgan(ngf=4, n_up=2)
    spec = get_method("param-svd")
    with pytest.raises(AtlasError, match="no editable layer 'conv9'"):
        run_job(spec.run(gen, spec.make_params(layer="conv9")))
    with pytest.raises(AtlasError, match="unknown distance"):
        load_distance("lpips-resnet")
    assert isinstance(load_distance("lpips-squeeze", pnet_rand=True), LpipsDistance)


def test_basis_shifts_match_saved_directions_and_train():
    """The trainable family's deltas are what the saved set expands to; gradients reach xi."""
    from engine.discovery.param_opt import BasisShifts, initial_coefficients
    from engine.discovery.param_space import basis_set, dense_basis, svd_basis

    gen = tiny_dcgan(ngf=4, n_up=2)
    layer = "main.3"
    W = gen.layer_weight(layer)
    g = torch.Generator().manual_seed(0)
    for basis in (svd_basis(gen, layer), dense_basis(gen, layer, torch.randn(5, *W.shape, generator=g))):
        init = initial_coefficients(6, basis.rank, seed=1) + 0.3 * torch.randn(6, basis.rank, generator=g)
        fam = BasisShifts(basis, init, scale=0.2 / 6)
        dset = basis_set("param-opt", gen, basis, fam.coefficients().detach(), range_=(-0.2, 0.2), params={})
        ks = torch.tensor([0, 3, 5])
        d = fam.deltas(ks)
        for j, k in enumerate(ks.tolist()):
            assert torch.allclose(d[j].detach(), dset.param_delta(k), atol=1e-5 * float(W.norm()))
        z = torch.randn(4, 8, generator=g)
        x0, x1 = fam.pair(gen, z, torch.tensor([0, 3, 3, 5]), torch.tensor([6.0, -6.0, 3.0, 0.5]))
        assert torch.allclose(x0, gen(z), atol=1e-5)
        (x1 - x0).square().sum().backward()
        assert fam.xi.grad is not None and float(fam.xi.grad[[0, 3, 5]].abs().sum()) > 0
        assert float(fam.xi.grad[[1, 2, 4]].abs().sum()) == 0


def test_param_opt_and_hybrid_run_and_report_rca(tmp_path):
    gen = tiny_dcgan(ngf=4, n_up=2, seed=2)
    small = dict(k=3, layer="main.3", steps=4, rca_every=2, rca_samples=8, checkpoint_every=2, batch_size=4)
    opt = get_method("param-opt")
    params = opt.make_params(**small)
    dset = run_job(opt.run(gen, params))
    assert dset.metrics["chance"] == pytest.approx(1 / 3)
    # RCA: correct / 8 on the evaluation stream; each direction's score is its own share of those hits
    scores = [d.score for d in dset.directions]
    assert_rca_is_an_accuracy(dset.metrics["rca"], scores, params.train_config(), K=3, z_dim=gen.z_dim)
    assert dset.bases["layer"].kind == "svd" and dset.directions[0].range == (-0.2, 0.2)
    # hybrid over the eigenvectors of a saved param-spectrum set, and over freshly computed ones
    spec = get_method("param-spectrum")
    sset = run_job(spec.run(gen, spec.make_params(k=4, layer="main.3", distance="pixel", samples=2, steps=3)))
    path = sset.save(tmp_path / "spec.json")
    hyb = get_method("param-hybrid")
    h1 = run_job(hyb.run(gen, hyb.make_params(spectrum=str(path), **small)))
    assert h1.bases["layer"].kind == "dense" and h1.bases["layer"].rank == 4
    assert h1.params["basis_from"] == str(path)
    cfg = hyb.make_params(spectrum=str(path), **small).train_config()
    assert_rca_is_an_accuracy(h1.metrics["rca"], [d.score for d in h1.directions], cfg, K=3, z_dim=gen.z_dim)
    # computed basis; cancelled at the first training checkpoint, then resumed without the eigensolver
    params = hyb.make_params(basis_k=4, distance="pixel", samples=2, spectrum_steps=3, **small)
    states = []

    def keep(rec):
        if rec.state is not None:
            states.append(rec.state)
        return not (states and states[-1]["stage"] == "train")

    assert run_job(hyb.run(gen, params), keep) is None
    assert states[0]["stage"] == "spectrum" and states[-1]["stage"] == "train"
    stages = []
    h2 = run_job(hyb.run(gen, params, state=states[-1]), lambda rec: stages.append(rec.stage))
    assert "spectrum" not in stages and h2.metrics["steps"] == 4
    assert h2.params["distance"] == "pixel" and len(h2.params["basis_eigenvalues"]) == 4
    assert torch.allclose(h2.bases["layer"].tensors["vectors"], states[-1]["basis"])


def test_hybrid_run_over_a_saved_spectrum_is_keyed_on_the_sets_tensors(tmp_path):
    """The checkpoint key of ``param-hybrid --set spectrum=FILE`` hashes the set's eigenvectors: the
    same set under another name (saved again) resumes the same run; another set saved under the
    same name does not (the path used to be the key: both ways round wrong)."""
    from engine.discovery.checkpoint import job_key
    from engine.discovery.param_spectrum import Params as SpectrumParams
    from engine.discovery.param_spectrum import spectrum_set

    gen = tiny_dcgan()
    n = gen.layer_weight("main.3").numel()

    def spectrum(seed):  # a saved param-spectrum set of 3 orthonormal "eigenvectors"
        Q, _ = torch.linalg.qr(torch.randn(n, 3, generator=torch.Generator().manual_seed(seed)))
        return spectrum_set(gen, SpectrumParams(k=3), "main.3", torch.tensor([3.0, 2.0, 1.0]), Q, distance_info={})

    a, b = spectrum(0), spectrum(1)
    a.save(tmp_path / "spec.json")
    DirectionSet.load(tmp_path / "spec.json").save(tmp_path / "moved" / "copy.json")
    hyb = get_method("param-hybrid")

    def key(path):
        return job_key(gen, "param-hybrid", hyb.make_params(spectrum=str(path), layer="main.3"))

    before = key(tmp_path / "spec.json")
    assert key(tmp_path / "moved" / "copy.json") == before
    b.save(tmp_path / "spec.json")  # another spectrum, same file name
    assert key(tmp_path / "spec.json") != before
    with pytest.raises(AtlasError, match="no such direction set"):
        key(tmp_path / "missing.json")


def test_param_opt_and_hybrid_share_their_training_fields():
    """One base (``param_opt.TrainingParams``) holds the reconstructor training fields of both methods;
    the hybrid keeps its paper defaults (batch 16, param-spectrum's range) and adds its own after them."""
    import dataclasses

    from engine.discovery import param_hybrid, param_opt
    from engine.discovery.param_spectrum import SPECTRUM_RANGE
    from engine.discovery.param_svd import SVD_RANGE

    shared = [f.name for f in dataclasses.fields(param_opt.TrainingParams)]
    for cls in (param_opt.Params, param_hybrid.Params):
        assert issubclass(cls, param_opt.TrainingParams)
        assert [f.name for f in dataclasses.fields(cls)][: len(shared)] == shared  # same order in forms
        cfg = cls(steps=7, batch_size=4, lam=0.5, lr=2e-3, rca_every=3, rca_samples=5, seed=9).train_config()
        assert (cfg.steps, cfg.batch_size, cfg.lam, cfg.lr, cfg.lr_family) == (7, 4, 0.5, 2e-3, 2e-3)
        assert (cfg.rca_every, cfg.rca_samples, cfg.seed, cfg.checkpoint_every) == (3, 5, 9, 100)
        with pytest.raises(AtlasError, match="range=0.0 must be positive"):
            cls(range=0.0)
        with pytest.raises(AtlasError, match="batch_size=1 is too small"):
            cls(batch_size=1)
    assert (param_opt.Params().batch_size, param_opt.Params().range) == (32, SVD_RANGE)
    assert (param_hybrid.Params().batch_size, param_hybrid.Params().range) == (16, SPECTRUM_RANGE)
    from engine.discovery.latent_recon import Params as ReconParams  # TrainConfig.of: the same names

    cfg = ReconParams(eps_max=4.0, eps_min=1.0, lam=0.3, lr=2e-3, batch_size=8, steps=5).train_config()
    assert (cfg.eps_max, cfg.eps_min, cfg.lam, cfg.lr, cfg.lr_family, cfg.batch_size, cfg.steps) == (
        4.0,
        1.0,
        0.3,
        2e-3,
        2e-3,
        8,
        5,
    )
    extra = [f.name for f in dataclasses.fields(param_hybrid.Params)][len(shared) :]
    assert extra == ["spectrum", "basis_k", "distance", "samples", "tol", "spectrum_steps"]
