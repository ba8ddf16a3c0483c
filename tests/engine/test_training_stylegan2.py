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
