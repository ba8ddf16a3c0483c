"""StyleGAN2 training on the procedural set: steps run, checkpoints resume to the same state,
a cancelled job leaves a resumable checkpoint, and the exported file loads as a generator."""

from __future__ import annotations

import pytest
import torch

from engine.jobs import run_job
from engine.models import load_generator
from engine.training.discriminator import Discriminator, DiscriminatorConfig, minibatch_stddev
from engine.training.stylegan2 import TrainConfig, export_generator, load_state, train

TINY = dict(
    resolution=16,
    z_dim=16,
    w_dim=16,
    mapping_layers=2,
    batch_size=4,
    mbstd_group=2,
    g_channels={4: 16, 8: 8, 16: 8},
    d_channels={4: 16, 8: 8, 16: 8},
    sample_every_kimg=0.008,
    sample_grid=2,
    r1_interval=2,
    pl_weight=2.0,
    pl_interval=2,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(n_images: int, **kw) -> TrainConfig:
    return TrainConfig.make(**{**TINY, "kimg": n_images / 1000, **kw})


def test_minibatch_stddev_matches_its_definition():
    x = torch.randn(6, 4, 2, 2)
    y = minibatch_stddev(x, group=3, channels=2)
    assert y.shape == (6, 6, 2, 2)
    # group g holds samples {m, m + 2, m + 4}: the std over them, averaged per channel group
    m = 1
    members = x[[m, m + 2, m + 4]]
    want = members.std(dim=0, unbiased=False)[:2].mean()
    assert torch.allclose(y[m + 2, 4], want.expand(2, 2), atol=1e-5)
    D = Discriminator(DiscriminatorConfig(16, {4: 8, 8: 8, 16: 8}, mbstd_group=2))
    assert D(torch.randn(4, 3, 16, 16)).shape == (4, 1)


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    full = run_job(train(tiny(24), tmp_path / "full", checkpoint_seconds=1e9))
    run_job(train(tiny(12), tmp_path / "split", checkpoint_seconds=1e9))
    first = load_state(tmp_path / "split" / "checkpoint.pt", torch.device("cpu"))
    assert first.cur_nimg == 12 and first.step == 3
    resumed = run_job(train(tiny(24), tmp_path / "split", resume=True, checkpoint_seconds=1e9))
    assert resumed.cur_nimg == full.cur_nimg == 24
    a, b = full.G_ema.state_dict(), resumed.G_ema.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    sa = load_state(tmp_path / "full" / "checkpoint.pt", torch.device("cpu"))
    sb = load_state(tmp_path / "split" / "checkpoint.pt", torch.device("cpu"))
    for k, v in sa.D.state_dict().items():
        assert torch.allclose(v, sb.D.state_dict()[k], atol=1e-6), k
    # the weights moved away from their initialisation, and the EMA lags the raw G
    fresh = load_state(tmp_path / "split" / "checkpoint.pt", torch.device("cpu"))
    assert any(not torch.equal(p, q) for p, q in zip(fresh.G.parameters(), fresh.G_ema.parameters()))
    log = (tmp_path / "full" / "log.jsonl").read_text().splitlines()
    assert log and "loss_D" in log[-1]
    assert sorted(p.name for p in (tmp_path / "full" / "samples").iterdir())
    assert (tmp_path / "full" / "reals.png").is_file()


def test_cancel_saves_a_checkpoint_and_export_loads(tmp_path):
    job = train(tiny(400), tmp_path / "run", checkpoint_seconds=1e9)
    for rec in job:
        if rec.step >= 8:
            job.close()
            break
    st = load_state(tmp_path / "run" / "checkpoint.pt", torch.device("cpu"))
    assert st.cur_nimg == 8
    done = run_job(train(tiny(12), tmp_path / "run", resume=True, checkpoint_seconds=1e9))
    out = export_generator(done, tmp_path / "g.pt")
    gen = load_generator(str(out), device="cpu")
    assert gen.format == "gan-atlas-stylegan2" and gen.resolution == 16 and gen.num_ws == 6
    with torch.no_grad():
        img = gen(gen.seed_latents([0, 1]))
        ref = done.G_ema(gen.seed_latents([0, 1]))
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
    assert (img - ref).abs().max() < 2e-2  # float16 storage
    assert torch.equal(gen.truncation_center, done.G_ema.w_avg)
    saved = torch.load(out, weights_only=True)
    assert saved["state_dict"]["synthesis_net.b4.const"].dtype == torch.float16
    assert saved["state_dict"]["w_avg"].dtype == torch.float32


def test_train_cli_writes_the_generator_and_refuses_bad_settings(tmp_path, capsys):
    import json

    from cli.main import main

    over = json.dumps({k: v for k, v in TINY.items() if k not in ("resolution", "batch_size")})
    out = tmp_path / "g.pt"
    args = [
        "train",
        "--data",
        "procedural",
        "--out",
        str(out),
        "--res",
        "16",
        "--batch",
        "4",
        "--kimg",
        "0.008",
        "--threads",
        "1",
        "--config",
        over,
    ]
    assert main(args) == 0
    gen = load_generator(str(out), device="cpu")
    assert gen.resolution == 16 and gen.meta["kimg"] == 0.008
    assert (tmp_path / "g.run" / "checkpoint.pt").is_file()
    assert main(args) == 1  # the run folder has a checkpoint: resume or pick another folder
    assert "--resume" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0
    assert main(["train", "--out", str(out), "--config", '{"lr": 1, "nope": 2}']) == 2
    assert "unknown training setting nope" in capsys.readouterr().err


# ---- paced iterations (issue 11: every job yields at least once a second) -------------------------
@pytest.fixture
def slow_clock(monkeypatch):
    """The pacers' clock advances a second per reading: every piece is one minibatch-std group."""
    import itertools

    import engine.jobs

    ticks = itertools.count()
    monkeypatch.setattr(engine.jobs, "_clock", lambda: float(next(ticks)))


def _iteration(paced: bool):
    from engine.training.stylegan2 import StepPacers, build_state, train_step, train_step_job

    cfg = tiny(8)
    st = build_state(cfg, torch.device("cpu"))
    reals = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1
    if not paced:
        return st, train_step(st, reals), 1
    job, phases = train_step_job(st, reals, StepPacers.make(cfg, "cpu")), []
    while True:
        try:
            phases.append(next(job))
        except StopIteration as stop:
            return st, stop.value, phases


def test_an_iteration_in_pieces_is_the_whole_iteration(slow_clock):
    """Step 0 runs every phase (G, path length, D, R1); in pieces of one minibatch-std group each,
    with the losses' shares of the gradient added up, it gives the unpaced iteration to rounding:
    the same random numbers, groups and w_avg updates."""
    st_a, stats_a, _ = _iteration(paced=False)
    st_b, stats_b, phases = _iteration(paced=True)
    assert phases == ["G", "G", "PL", "PL", "D", "D", "R1", "R1"]  # PL: half a batch, one group
    for name, net in (("G", "G"), ("D", "D"), ("G_ema", "G_ema")):
        a, b = getattr(st_a, net).state_dict(), getattr(st_b, net).state_dict()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=f"{name}.{k}")
    torch.testing.assert_close(st_a.pl_mean, st_b.pl_mean)
    assert torch.equal(st_a.rng.get_state(), st_b.rng.get_state())  # the same random numbers were drawn
    assert stats_a.keys() == stats_b.keys() and all(stats_a[k] == pytest.approx(stats_b[k], rel=1e-5) for k in stats_a)


def test_cancel_within_an_iteration_keeps_the_state_before_it(tmp_path, slow_clock):
    full = run_job(train(tiny(12), tmp_path / "full", checkpoint_seconds=1e9))
    seen = []
    job = train(tiny(12), tmp_path / "split", checkpoint_seconds=1e9)
    # cancelled in iteration 2, after its G step changed G (at its first D piece)
    assert run_job(job, lambda rec: not (rec.message == "iteration 2: D" and not seen.append(rec))) is None
    st = load_state(tmp_path / "split" / "checkpoint.pt", torch.device("cpu"))
    assert st.cur_nimg == 4 and st.step == 1
    resumed = run_job(train(tiny(12), tmp_path / "split", resume=True, checkpoint_seconds=1e9))
    a, b = full.G_ema.state_dict(), resumed.G_ema.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
