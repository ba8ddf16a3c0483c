"""Jobs (issue 11): prompt cancel inside long products, checkpoints that only move forward, a state
saved on cancel before the first periodic checkpoint, and a true rate after a resume."""

from __future__ import annotations

import re
import signal
import time

import torch

import engine.discovery.hessian as hessian
from engine.directions import DirectionSet
from engine.discovery import get_method
from engine.discovery.checkpoint import (
    Checkpointer,
    checkpoint_position,
    job_key,
    load_checkpoint,
    save_checkpoint,
    state_position,
)
from engine.jobs import Progress, run_job
from tests.engine.cli_runs import discover
from tests.engine.fake_clock import FakeClock
from tests.engine.tiny_generators import save_tiny_dcgan, tiny_dcgan


# ---- cancel latency -------------------------------------------------------------------------------
def test_a_slow_generator_still_yields_within_each_block_product(monkeypatch):
    """A generator taking 0.3 s per image (on a fake clock): param-spectrum yields at least every
    second, also inside the products (it used to yield once per iteration: 9 images = 2.7 s)."""
    clock = FakeClock(0.3)
    monkeypatch.setattr(hessian, "_clock", clock)
    gen = tiny_dcgan(nz=8)
    real_decode = gen.decode

    def slow_decode(code, *args, **kw):
        out = real_decode(code, *args, **kw)
        clock.render(out.shape[0])
        return out

    monkeypatch.setattr(gen, "decode", slow_decode)
    spec = get_method("param-spectrum")
    params = spec.make_params(k=2, guard=1, layer="main.6", distance="pixel", samples=3, steps=1, tol=0.0)
    stamps, records = [clock.now], []
    result = run_job(spec.run(gen, params), lambda rec: stamps.append(clock.now) or records.append(rec))
    gaps = [b - a for a, b in zip(stamps, stamps[1:] + [clock.now])]
    assert max(gaps) <= 1.0, max(gaps)
    assert clock.images >= 3 * 3 + 2 * 3  # the first product, and the final residuals, did run
    assert sum(r.state is not None for r in records) == 2  # iterations 0 and 1, each with its state
    assert len(records) > 3 * 3  # many more yields than iterations
    assert result.metrics["iterations"] == 1


def test_product_passes_agree_with_the_fixed_schedule():
    from engine.distances import load_distance

    gen = tiny_dcgan(nz=8)
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    d = load_distance("pixel")
    fixed = hessian.LayerHessian(gen, "main.6", d, z, chunk=8, pass_seconds=None)
    timed = hessian.LayerHessian(gen, "main.6", d, z, chunk=8, pass_seconds=1e-9)  # one image per pass
    V = torch.randn(fixed.n, 3, generator=torch.Generator().manual_seed(1))
    a, b = fixed.matvec(V), timed.matvec(V)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6 * float(a.abs().max()))
    ticks = list(iter_job(timed.matvec_job(V)))
    assert len(ticks) == 3 * 3 and ticks[-1] == hessian.ProductProgress(9, 9)


def iter_job(job):
    while True:
        try:
            yield next(job)
        except StopIteration:
            return


# ---- checkpoints --------------------------------------------------------------------------------------
def test_a_checkpoint_never_moves_back_unless_asked(tmp_path):
    path = tmp_path / "job.ckpt"
    assert save_checkpoint(path, {"step": 6, "x": torch.ones(3)}, key="k") == path
    assert save_checkpoint(path, {"step": 2, "x": torch.zeros(3)}, key="k") is None
    assert load_checkpoint(path, key="k")["step"] == 6 and checkpoint_position(path, key="k") == (0, 6)
    assert save_checkpoint(path, {"step": 2}, key="k", replace_later=True) == path
    assert load_checkpoint(path)["step"] == 2
    assert save_checkpoint(path, {"step": 3}, key="k") == path  # forward again
    # a two-stage job orders its stages: any training state is after every spectrum state
    assert state_position({"stage": "train", "position": [1, 2]}) > state_position({"position": [0, 40]})


def test_cancel_before_the_first_checkpoint_saves_the_same_run(tmp_path, monkeypatch):
    import engine.jobs

    # the pacers see no time pass: both runs group their images alike (see engine.jobs.Pacer)
    monkeypatch.setattr(engine.jobs, "_clock", FakeClock())
    gen = tiny_dcgan(nz=8)
    spec = get_method("latent-recon")
    params = spec.make_params(k=3, steps=4, batch_size=4, rca_every=100, rca_samples=8, checkpoint_every=100)
    full = run_job(spec.run(gen, params))
    path = tmp_path / "job.ckpt"
    keeper = Checkpointer(path, "k")
    assert run_job(keeper.run(spec.run(gen, params)), lambda rec: rec.step < 2) is None  # cancelled at step 2
    assert keeper.saved == (0, 2) and load_checkpoint(path, key="k")["step"] == 2
    resumed = run_job(spec.run(gen, params, state=load_checkpoint(path, key="k")))
    assert torch.equal(resumed.directions[0].vector, full.directions[0].vector)
    assert resumed.metrics["rca"] == full.metrics["rca"]


def test_every_resumable_method_saves_a_state_on_cancel(tmp_path):
    gen = tiny_dcgan(nz=8)
    small = dict(k=2, layer="main.6", steps=3, rca_every=100, rca_samples=4, checkpoint_every=100, batch_size=2)
    cases = {
        "param-opt": small,
        "param-hybrid": {**small, "basis_k": 3, "distance": "pixel", "samples": 2, "spectrum_steps": 1},
        "param-spectrum": dict(k=2, guard=1, layer="main.6", distance="pixel", samples=2, steps=3, tol=0.0),
    }
    from engine.discovery import methods

    assert {m.name for m in methods() if m.resumable} == {"latent-recon", *cases}
    for name, over in cases.items():
        spec = get_method(name)
        path = tmp_path / f"{name}.ckpt"
        keeper = Checkpointer(path, name)
        seen = []

        def stop(rec, seen=seen, name=name):
            seen.append(rec)
            return not (rec.stage == "train" and rec.step == 2) if name != "param-spectrum" else rec.step < 2

        assert run_job(keeper.run(spec.run(gen, spec.make_params(**over))), stop) is None
        state = load_checkpoint(path, key=name)
        if name == "param-spectrum":
            assert state["step"] == 2
        elif name == "param-hybrid":
            assert state["stage"] == "train" and state["trainer"]["step"] == 2 and state["position"] == [1, 2]
        else:
            assert state["step"] == 2
        # the saved state resumes
        assert run_job(spec.run(gen, spec.make_params(**over), state=state)) is not None


def test_job_key_includes_what_makes_a_different_run():
    gen = tiny_dcgan(nz=8)
    hyb = get_method("param-hybrid")
    base = dict(layer="main.6", distance="pixel")
    a = job_key(gen, "param-hybrid", hyb.make_params(**base, steps=10))
    assert a == job_key(gen, "param-hybrid", hyb.make_params(**base, steps=99, rca_every=7, checkpoint_every=3))
    # the eigensolver's stopping point decides the basis the training runs on
    assert a != job_key(gen, "param-hybrid", hyb.make_params(**base, steps=10, spectrum_steps=41))
    spec = get_method("param-spectrum")
    assert job_key(gen, "param-spectrum", spec.make_params(steps=4)) == job_key(
        gen, "param-spectrum", spec.make_params(steps=40)
    )


# ---- the command line: shorter runs, Ctrl-C, the rate after a resume ---------------------------------------
def _discover(ckpt, tmp_path, *extra):
    """A short latent-recon run of ``ckpt`` into ``recon.json``."""
    common = ["--method", "latent-recon", "--k", "3", "--set", "rca_samples=8", "--set", "batch_size=4"]
    return discover(
        ckpt, tmp_path, *common, "--set", "checkpoint_every=2", "--out", str(tmp_path / "recon.json"), *extra
    )


def test_a_shorter_run_does_not_replace_a_longer_runs_checkpoint(tmp_path, capsys):
    ckpt = save_tiny_dcgan(tmp_path / "tiny.pt", nz=8)
    assert _discover(ckpt, tmp_path, "--steps", "6") == 0
    (saved,) = (tmp_path / "jobs").glob("latent-recon-*.ckpt")
    assert load_checkpoint(saved)["step"] == 6
    capsys.readouterr()
    assert _discover(ckpt, tmp_path, "--steps", "2") == 0  # a shorter run of the same settings
    assert "holds this run further along (step 6)" in capsys.readouterr().err
    assert load_checkpoint(saved)["step"] == 6
    assert _discover(ckpt, tmp_path, "--steps", "8", "--resume") == 0
    assert "resuming latent-recon from step 6" in capsys.readouterr().err
    assert DirectionSet.load(tmp_path / "recon.json").metrics["steps"] == 8
    assert _discover(ckpt, tmp_path, "--steps", "2", "--fresh") == 0  # asked: replace it
    assert load_checkpoint(saved)["step"] == 2


def test_ctrl_c_before_the_first_checkpoint_saves_one(tmp_path, capsys, monkeypatch):
    """Ctrl-C at step 3 of a run checkpointing every 100 steps: exit 130, a checkpoint at step 3,
    and --resume continues from it."""
    import dataclasses

    import engine.discovery.registry as registry

    ckpt = save_tiny_dcgan(tmp_path / "tiny.pt", nz=8)
    spec = registry.get_method("latent-recon")

    def interrupted_at_3(gen, params, **kw):
        job = spec.run(gen, params, **kw)
        while True:
            try:
                rec = next(job)
            except StopIteration as stop:
                return stop.value
            if rec.step == 3 and kw.get("state") is None:
                signal.raise_signal(signal.SIGINT)  # as a terminal's Ctrl-C: the handler defers it
            yield rec

    monkeypatch.setitem(registry._METHODS, "latent-recon", dataclasses.replace(spec, run=interrupted_at_3))
    assert _discover(ckpt, tmp_path, "--steps", "6", "--set", "checkpoint_every=100") == 130
    err = capsys.readouterr().err
    assert "interrupted; checkpoint at step 3" in err and "Traceback" not in err
    assert _discover(ckpt, tmp_path, "--steps", "6", "--set", "checkpoint_every=100", "--resume") == 0
    assert "resuming latent-recon from step 3" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_the_rate_after_a_resume_counts_only_this_runs_steps(capsys):
    from cli.common import drive

    def resumed_job():
        for step in range(3_400_000, 3_400_010):
            time.sleep(0.02)
            yield Progress(step, 4_000_000)
        return "done"

    assert drive(resumed_job(), "job") == "done"
    rates = [float(r) for r in re.findall(r"([\d.]+)step/s", capsys.readouterr().err)]
    assert rates and max(rates) < 1000  # about 50 steps/s; it showed about 3e7 before
