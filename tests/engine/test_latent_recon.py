"""Latent reconstructor: learning, baselines, resume after cancel, checkpoints, parameter checks."""

import dataclasses

import pytest
import torch

from engine.directions import DirectionSet
from engine.discovery import get_method
from engine.discovery.checkpoint import job_key, load_checkpoint, save_checkpoint
from engine.discovery.latent_recon import Params, build_family
from engine.discovery.rca import rca_of_set
from engine.discovery.reconstructor import TrainConfig, build_reconstructor, evaluate_rca, train_reconstructor
from engine.discovery.shifts import LatentShifts, ParamShifts, family_from_set, param_pair
from engine.errors import AtlasError, CheckpointError
from engine.jobs import run_job
from tests.engine.rca_checks import assert_rca_is_an_accuracy
from tests.engine.tiny_generators import tiny_dcgan, tiny_stylegan2

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = get_method("latent-recon")


def test_reconstructor_learns_distinguishable_directions():
    gen = tiny_dcgan(nz=8, seed=0)
    params = SPEC.make_params(k=3, steps=100, lr=1e-3, rca_every=100, rca_samples=192)
    dset = run_job(SPEC.run(gen, params))
    assert len(dset) == 3 and dset.method == "latent-recon"
    assert dset.metrics["rca"] > 0.55  # chance is 1/3
    assert dset.metrics["history"]["rca"][-1][0] == 100
    A = torch.stack([d.vector for d in dset.directions])
    torch.testing.assert_close(A @ A.T, torch.eye(3), atol=1e-5, rtol=0)  # ortho parametrization


@pytest.mark.parametrize("kind", ["linear", "unit", "ortho"])
def test_parametrizations(kind):
    fam = LatentShifts(torch.randn(6, 3), kind)
    A = fam.matrix()
    if kind == "unit":
        torch.testing.assert_close(A.norm(dim=0), torch.ones(3))
    if kind == "ortho":
        torch.testing.assert_close(A.T @ A, torch.eye(3), atol=1e-6, rtol=0)
    assert fam.trainable


def test_baselines_keep_A_fixed():
    gen = tiny_dcgan(nz=8)
    for baseline in ("random", "coordinate"):
        p = SPEC.make_params(k=3, steps=3, baseline=baseline, rca_samples=16)
        fam = build_family(gen, p)
        assert not fam.trainable
        before = fam.matrix().clone()
        dset = run_job(SPEC.run(gen, p))
        torch.testing.assert_close(torch.stack([d.vector for d in dset.directions]).T, before)
        torch.testing.assert_close(before.T @ before, torch.eye(3), atol=1e-6, rtol=0)
    assert torch.equal(build_family(gen, SPEC.make_params(k=3, baseline="coordinate")).matrix(), torch.eye(8)[:, :3])


def test_pair_in_one_forward_equals_two_forwards():
    gen = tiny_dcgan(nz=8)
    fam = LatentShifts(torch.randn(8, 3), "unit")
    assert fam.resolved_pair_mode() == "two"  # trainable latent family: two passes
    z, k, eps = torch.randn(5, 8), torch.tensor([0, 1, 2, 1, 0]), torch.tensor([1.0, -2.0, 3.0, 0.5, -6.0])
    with torch.no_grad():
        ref = gen(z + eps[:, None] * fam.matrix().T[k])
    pairs, grads = {}, {}
    for mode in ("one", "two"):
        fam.pair_mode = mode
        fam.zero_grad()
        x0, x1 = fam.pair(gen, z, k, eps)
        assert not x0.requires_grad or mode == "one"
        (x1.square().sum() + x0.sum()).backward()
        pairs[mode], grads[mode] = (x0.detach(), x1.detach()), fam.M.grad.clone()
    for a, b in zip(pairs["one"], pairs["two"]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pairs["one"][1], ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads["one"], grads["two"], atol=1e-4, rtol=1e-4)
    fam.pair_mode = "sideways"
    with pytest.raises(AtlasError, match="pair mode"):
        fam.pair(gen, z, k, eps)


@pytest.mark.parametrize("model", ["dcgan", "stylegan2"])
def test_param_pair_modes_agree_in_images_and_gradients(model):
    """One forward with a shared prefix (and t = 0 rows skipped) equals two passes, values and gradients."""
    gen = tiny_dcgan(nz=8) if model == "dcgan" else tiny_stylegan2()
    assert gen.supports_shared_prefix
    layer = gen.default_edit_layer
    W = gen.layer_weight(layer).detach()
    z, k = torch.randn(4, gen.z_dim), torch.tensor([0, 1, 1, 0])
    t = torch.tensor([0.1, -0.2, 0.05, 0.3])
    out = {}
    for mode in ("one", "two"):
        deltas = torch.randn(2, *W.shape, generator=torch.Generator().manual_seed(1)) * W.norm() / W.numel() ** 0.5
        deltas.requires_grad_(True)
        x0, x1 = param_pair(gen, z, layer, deltas, k, t, mode=mode)
        (x1.square().sum() + x0.sum()).backward()
        out[mode] = (x0.detach(), x1.detach(), deltas.grad)
    for a, b in zip(out["one"], out["two"]):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
    assert not torch.allclose(out["one"][0], out["one"][1], atol=1e-4)


def test_param_shift_family_pair():
    gen = tiny_dcgan(nz=8)
    layer = gen.default_edit_layer
    W = gen.layer_weight(layer).detach()
    deltas = torch.randn(2, *W.shape)
    fam = ParamShifts(layer, deltas, scale=torch.tensor([0.1, 0.2]))
    z, k, eps = torch.randn(3, 8), torch.tensor([0, 1, 1]), torch.tensor([1.0, -1.0, 2.0])
    with torch.no_grad():
        x0, x1 = fam.pair(gen, z, k, eps)
        torch.testing.assert_close(x0, gen(z))
        mod = gen.main[int(layer.split(".")[1])]
        mod.weight += 0.2 * -1.0 * deltas[1]
        ref = gen(z[1:2])
        mod.weight.copy_(W)
    torch.testing.assert_close(x1[1:2], ref, atol=1e-5, rtol=1e-4)


def _tensors(result):
    fam, R = result.family, result.reconstructor
    return {**{f"f.{k}": v for k, v in fam.state_dict().items()}, **{f"r.{k}": v for k, v in R.state_dict().items()}}


def test_resume_after_cancel_continues_the_same_run(tmp_path, fake_clock):
    # fake_clock: the pacer sees no time pass, so both runs group their images alike (a real clock
    # can group a step's images differently in two runs: the same result to rounding only)
    gen = tiny_dcgan(nz=8)
    cfg = TrainConfig(steps=7, batch_size=8, checkpoint_every=2, rca_every=100, rca_samples=16)

    def family():
        return LatentShifts(torch.eye(8)[:, :3], "ortho")

    full = run_job(train_reconstructor(gen, family(), cfg))

    saved = {}

    def cancel_at_4(rec):
        if rec.state is not None:
            saved["path"] = save_checkpoint(tmp_path / "job.ckpt", rec.state, key="k")
        return rec.step < 4  # False -> cancel

    assert run_job(train_reconstructor(gen, family(), cfg), cancel_at_4) is None
    state = load_checkpoint(saved["path"], key="k")
    assert state["step"] == 4
    resumed = run_job(train_reconstructor(gen, family(), cfg, state=state))
    assert resumed.step == full.step == 7
    a, b = _tensors(full), _tensors(resumed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert resumed.rca == full.rca


def test_checkpoint_errors_are_clear(tmp_path):
    p = save_checkpoint(tmp_path / "a.ckpt", {"step": 1}, key="one")
    with pytest.raises(CheckpointError, match="another run"):
        load_checkpoint(p, key="two")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.ckpt"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_job_key_ignores_step_count_but_not_trajectory():
    gen = tiny_dcgan(nz=8)
    a = job_key(gen, "latent-recon", Params(steps=10))
    assert a == job_key(gen, "latent-recon", Params(steps=99, rca_every=7))
    assert a != job_key(gen, "latent-recon", Params(steps=10, lr=1e-3))
    assert a != job_key(gen, "latent-recon", Params(steps=10), world_size=2)


def test_params_validation_messages():
    with pytest.raises(AtlasError, match="parametrization='qr'.*linear, unit, ortho"):
        Params(parametrization="qr")
    with pytest.raises(AtlasError, match="eps_min"):
        Params(eps_min=7.0)
    with pytest.raises(AtlasError, match="at least 2"):
        Params(k=1)
    with pytest.raises(AtlasError, match="has no parameter kk"):
        SPEC.make_params(kk=3)
    with pytest.raises(AtlasError, match="parameter k='many' must be a whole number"):
        SPEC.params_from_strings({"k": "many"})
    p = SPEC.params_from_strings({"k": "12", "lr": "3e-4", "baseline": "random"})
    assert (p.k, p.lr, p.baseline) == (12, 3e-4, "random")
    with pytest.raises(AtlasError, match="exceed the latent dimension 8"):
        build_family(tiny_dcgan(nz=8), Params(k=9))
    assert all("help" in f.metadata for f in dataclasses.fields(Params))


def test_reconstructor_networks_shapes():
    for kind, res in (("lenet", 16), ("resnet18", 32)):
        R = build_reconstructor(kind, 5, channels=3, resolution=res, max_input=16)
        logits, eps = R(torch.randn(4, 3, res, res), torch.randn(4, 3, res, res))
        assert logits.shape == (4, 5) and eps.shape == (4,)
    assert type(build_reconstructor("auto", 3, channels=3, resolution=64)).__name__ == "LeNetReconstructor"
    assert type(build_reconstructor("auto", 3, channels=3, resolution=128)).__name__ == "ResNetReconstructor"


def test_rca_of_saved_latent_and_param_sets(tmp_path):
    gen = tiny_dcgan(nz=8)
    lat = DirectionSet.latent("sefa", {"name": gen.name}, torch.eye(8)[:3], range_=(-3.0, 3.0))
    fam = family_from_set(gen, lat)
    torch.testing.assert_close(fam.scale, torch.full((3,), 0.5))
    cfg = TrainConfig(steps=3, batch_size=8, rca_samples=16)
    rep = run_job(rca_of_set(gen, lat, cfg))
    assert rep.K == 3 and rep.steps == 3
    assert_rca_is_an_accuracy(rep.rca, rep.per_direction, cfg, K=3, z_dim=8)
    # the report is the accuracy of the R that the same training gives, measured again on the same samples
    res = run_job(train_reconstructor(gen, family_from_set(gen, lat, eps_max=cfg.eps_max), cfg, stage="rca"))
    again, per = evaluate_rca(gen, res.family, res.reconstructor, cfg, device=torch.device("cpu"))
    assert again == rep.rca and torch.equal(per, rep.per_direction)

    from engine.directions import Direction

    layer = gen.default_edit_layer
    shape = gen.layer_weight(layer).shape
    par = DirectionSet(
        "param-svd",
        {"name": gen.name},
        [Direction("param", layer=layer, delta=torch.randn(shape), range=(-0.5, 0.5)) for _ in range(2)],
    )
    pf = family_from_set(gen, par)
    assert isinstance(pf, ParamShifts) and pf.K == 2
    assert run_job(rca_of_set(gen, par, cfg)).K == 2
    with pytest.raises(AtlasError, match="mixes latent and parameter"):
        family_from_set(gen, DirectionSet("x", {}, lat.directions[:1] + par.directions[:1]))


def test_latent_recon_on_stylegan2_trains_in_w():
    from tests.engine.tiny_generators import tiny_stylegan2

    gen = tiny_stylegan2()
    p = SPEC.make_params(k=3, steps=2, batch_size=4, rca_samples=8)
    fam = build_family(gen, p)
    assert fam.space == "w" and fam.dim == gen.w_dim
    z, k, eps = torch.randn(2, gen.z_dim), torch.tensor([0, 2]), torch.tensor([1.5, -2.0])
    with torch.no_grad():
        _, x1 = fam.pair(gen, z, k, eps)
        w = gen.encode(z, "w") + eps[:, None] * fam.matrix().T[k]
        torch.testing.assert_close(x1, gen.decode(w, "w"), atol=1e-5, rtol=1e-5)
    dset = run_job(SPEC.run(gen, p))
    assert dset[0].space == "w" and dset[0].vector.shape == (gen.w_dim,)


def test_partial_sets_come_before_the_first_rca():
    """The directions exist from step 0: the job shows them at once and as they train, long
    before the first RCA measurement (500 steps by default)."""
    gen = tiny_dcgan(nz=8, seed=0)
    params = SPEC.make_params(k=3, steps=25, rca_every=500, rca_samples=8, batch_size=4)
    partials = [(rec.step, rec.partial) for rec in SPEC.run(gen, params) if rec.partial is not None]
    steps = [s for s, _ in partials]
    assert steps[:3] == [0, 10, 20] and steps[-1] == 25  # and the RCA at the end of the run
    first = partials[0][1]
    assert isinstance(first, DirectionSet) and len(first) == 3 and "rca" not in first.metrics
    assert "rca" in partials[-1][1].metrics
    moved = torch.stack([d.vector for d in partials[2][1].directions]) - torch.stack([d.vector for d in first])
    assert moved.abs().max() > 0  # the partial at step 20 shows the trained directions, not the start


# ---- paced steps (issue 11: every job yields at least once a second) ------------------------------
@pytest.fixture
def fake_clock(monkeypatch):
    """The pacers' clock, advanced by the tiny DCGAN's decode (every instance, copies included)."""
    from engine.models.dcgan import DCGANGenerator
    from tests.engine.fake_clock import slow_generator

    return slow_generator(monkeypatch, DCGANGenerator, 0.0)


def _paced_cfg(**kw):
    return TrainConfig(**{"steps": 3, "batch_size": 8, "rca_every": 100, "rca_samples": 16, **kw})


def _latent_family():
    return LatentShifts(torch.eye(8)[:, :3], "ortho")


def test_a_slow_generator_yields_within_each_step(fake_clock):
    """0.3 s per image: a step of 8 pairs (16 images, 4.8 s) used to be one yield; now every piece of
    images yields, and no two yields are more than a second of (fake) rendering apart."""
    fake_clock.per_image = 0.3
    gen = tiny_dcgan(nz=8)
    stamps, records = [], []
    result = run_job(
        train_reconstructor(gen, _latent_family(), _paced_cfg()),
        lambda rec: stamps.append(fake_clock.now) or records.append(rec),
    )
    gaps = [b - a for a, b in zip([0.0, *stamps], [*stamps, fake_clock.now])]
    assert max(gaps) <= 1.0, max(gaps)
    assert fake_clock.images >= 16 * 3  # every step rendered its 16 images
    assert sum("loss" in r.metrics for r in records) == 3 and len(records) > 3 * 8
    assert result.step == 3


def test_paced_pieces_give_the_one_batch_step(fake_clock):
    """Pieces of 2 pairs (gradients accumulated over 4 backward passes) train A and R as one batch
    of 8 does, to rounding; and R's BatchNorm sees the whole batch, as before."""
    whole = run_job(train_reconstructor(tiny_dcgan(nz=8), _latent_family(), _paced_cfg(pass_seconds=None)))
    fake_clock.per_image = 0.05  # pieces of 2 pairs (0.2 s of images) fit the 0.3 s target
    sizes = []
    paced = run_job(
        train_reconstructor(tiny_dcgan(nz=8), _latent_family(), _paced_cfg()),
        lambda rec: sizes.append(rec.message) if rec.message == "step 3" else None,
    )
    assert len(sizes) == 8  # step 3: 4 forward and 4 backward pieces of 2 pairs
    a, b = _tensors(whole), _tensors(paced)
    assert not torch.equal(a["f.M"], torch.eye(8)[:, :3])  # A was trained
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-7, msg=name)
    assert paced.rca == whole.rca


@pytest.mark.parametrize("where", ["forward", "backward", "rca"])
def test_cancel_within_a_step_resumes_the_same_run(fake_clock, tmp_path, where):
    """Cancelled in the middle of step 3 (while its images render, after R's forward has updated
    R's BatchNorm statistics, or while the RCA after step 2 is measured), the state saved on
    cancel is that of step 2 and the resumed run is the uninterrupted one, bit for bit."""
    from engine.discovery.checkpoint import Checkpointer

    fake_clock.per_image = 0.05
    cfg = _paced_cfg(steps=4, rca_every=2)
    gen = tiny_dcgan(nz=8)
    full = run_job(train_reconstructor(gen, _latent_family(), cfg))
    seen = []

    def go_on(rec):
        if where == "rca":
            return not rec.message.startswith("RCA")  # the first piece of the RCA after step 2
        if rec.message == "step 3":
            seen.append(rec)
        return len(seen) < (2 if where == "forward" else 6)  # pieces 1-4 render, 5-8 run backward

    keeper = Checkpointer(tmp_path / "job.ckpt", "k")
    assert run_job(keeper.run(train_reconstructor(gen, _latent_family(), cfg)), go_on) is None
    state = load_checkpoint(tmp_path / "job.ckpt", key="k")
    assert state["step"] == 2 and state["micro_batch"] == 2
    assert state.get("rca_pending", False) == (where == "rca")
    resumed = run_job(train_reconstructor(gen, _latent_family(), cfg, state=state))
    a, b = _tensors(full), _tensors(resumed)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert resumed.rca == full.rca and resumed.history["rca"] == full.history["rca"]


def test_rca_measurement_in_pieces_is_the_whole_measurement(fake_clock):
    from engine.discovery.reconstructor import evaluate_rca_job

    gen = tiny_dcgan(nz=8)
    family = _latent_family()
    R = build_reconstructor("lenet", 3, channels=3, resolution=gen.resolution)
    cfg = _paced_cfg(rca_samples=40, rca_batch=16)
    whole = run_job(evaluate_rca_job(gen, family, R, dataclasses.replace(cfg, pass_seconds=None), device="cpu"))
    fake_clock.per_image = 0.1  # pieces of 1-2 pairs
    ticks = []
    paced = run_job(evaluate_rca_job(gen, family, R, cfg, device="cpu"), ticks.append)
    assert paced[0] == whole[0] and torch.equal(paced[1], whole[1])
    assert len(ticks) > 3 and ticks[-1] == 40
