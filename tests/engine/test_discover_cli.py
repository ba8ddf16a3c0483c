"""``main.py discover`` and ``main.py rca`` end to end on a tiny DCGAN checkpoint."""

import json

import pytest

from cli.main import main
from engine.directions import DirectionSet
from engine.discovery.rca import rca_of_set
from engine.discovery.reconstructor import TrainConfig
from engine.jobs import run_job
from engine.models import load_generator
from tests.engine.cli_runs import discover
from tests.engine.rca_checks import assert_rca_is_an_accuracy
from tests.engine.tiny_generators import save_tiny_dcgan


@pytest.fixture
def tiny_ckpt(tmp_path):
    return save_tiny_dcgan(tmp_path / "tiny.pt", nz=8)


def test_latent_recon_cli_resume_and_rca(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "recon.json"
    common = [
        "--method",
        "latent-recon",
        "--k",
        "3",
        "--set",
        "rca_samples=16",
        "--set",
        "checkpoint_every=2",
        "--set",
        "batch_size=8",
        "--out",
        str(out),
    ]
    assert discover(tiny_ckpt, tmp_path, *common, "--steps", "4") == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("latent-recon: 3 directions in") and "RCA" in line and "chance 0.333" in line
    assert DirectionSet.load(out).metrics["steps"] == 4

    # the finished run is extended: same key (steps is not part of it), continues from step 4
    assert discover(tiny_ckpt, tmp_path, *common, "--steps", "6", "--resume") == 0
    assert "resuming latent-recon from step 4" in capsys.readouterr().err
    dset = DirectionSet.load(out)
    assert dset.metrics["steps"] == 6 and dset.params["k"] == 3

    assert (
        main(["rca", str(out), "--steps", "3", "--samples", "16", "--threads", "1", "--quiet", "--json", "--record"])
        == 0
    )
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["K"] == 3 and res["chance"] == pytest.approx(1 / 3) and res["steps"] == 3
    cfg = TrainConfig(steps=3, rca_samples=16, rca_every=3, checkpoint_every=3)  # what `rca` runs
    assert_rca_is_an_accuracy(res["rca"], res["per_direction"], cfg, K=3, z_dim=8, tol=1e-4)  # rounded to 4 places
    # the command reports what the engine measures for the same set and settings
    rep = run_job(rca_of_set(load_generator(tiny_ckpt), DirectionSet.load(out), cfg))
    assert res["rca"] == rep.rca and res["per_direction"] == [round(float(a), 4) for a in rep.per_direction]
    assert DirectionSet.load(out).metrics["rca_eval"]["steps"] == 3


def test_sefa_and_ganspace_cli(tiny_ckpt, tmp_path, capsys):
    assert discover(tiny_ckpt, tmp_path, "--method", "sefa", "--k", "4", "--out", str(tmp_path / "s.json")) == 0
    assert "top eigenvalues" in capsys.readouterr().out
    assert (
        discover(
            tiny_ckpt,
            tmp_path,
            "--method",
            "ganspace",
            "--k",
            "3",
            "--set",
            "n_samples=300",
            "--out",
            str(tmp_path / "g.json"),
        )
        == 0
    )
    assert "top variances" in capsys.readouterr().out
    assert len(DirectionSet.load(tmp_path / "g.json")) == 3


def test_bad_parameters_are_one_line_errors(tiny_ckpt, tmp_path, capsys):
    assert discover(tiny_ckpt, tmp_path, "--method", "sefa", "--set", "nope=1", "--out", str(tmp_path / "x.json")) == 2
    assert "method 'sefa' has no parameter nope" in capsys.readouterr().err
    assert (
        discover(
            tiny_ckpt, tmp_path, "--method", "latent-recon", "--baseline", "gaussian", "--out", str(tmp_path / "x.json")
        )
        == 2
    )
    assert "baseline='gaussian' is not allowed" in capsys.readouterr().err
    assert discover(tiny_ckpt, tmp_path, "--method", "sefa", "--resume", "--out", str(tmp_path / "x.json")) == 2
    assert "not resumable" in capsys.readouterr().err
