"""``main.py analyze`` and ``main.py score`` end to end on a tiny DCGAN checkpoint."""

import importlib.util
import json

import pytest
import torch

from cli.main import main
from engine.analysis import load_result
from engine.directions import Direction, DirectionSet, model_ref
from engine.models.dcgan import DCGANGenerator, load_dcgan_checkpoint


@pytest.fixture
def tiny(tmp_path):
    """(checkpoint path, latent set path, parameter set path) of a 16 px DCGAN."""
    torch.manual_seed(0)
    g = DCGANGenerator(nz=8, ngf=4, nc=3, n_up=2)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.ConvTranspose2d):
                m.weight.normal_(0, 0.3)
    ckpt = tmp_path / "tiny.pt"
    torch.save({"netG_state_dict": g.state_dict()}, ckpt)
    gen = load_dcgan_checkpoint(ckpt)
    lat = DirectionSet.latent("test", model_ref(gen), torch.eye(8)[:3])
    lat.save(tmp_path / "lat.json")
    w = gen.layer_weight("main.3").detach()
    delta = torch.randn(w.shape) * w.norm() / w.numel() ** 0.5
    par = DirectionSet(
        "test-param", model_ref(gen), [Direction("param", layer="main.3", delta=delta, range=(-0.5, 0.5))]
    )
    par.save(tmp_path / "par.json")
    return str(ckpt), str(tmp_path / "lat.json"), str(tmp_path / "par.json")


def _analyze(*args):
    return main(["analyze", *args, "--device", "cpu", "--threads", "1", "--quiet"])


def test_analyze_curves_and_locality_write_png_json_npz(tiny, tmp_path, capsys):
    ckpt, lat, _ = tiny
    out = tmp_path / "res" / "curves.png"
    assert (
        _analyze(
            "curves",
            "--model",
            ckpt,
            "--directions",
            lat,
            "--index",
            "0,2",
            "--seeds",
            "3",
            "--steps",
            "5",
            "--distance",
            "pixel",
            "--out",
            str(out),
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "direction 0: pixel distance by t" in text and "direction 2" in text
    r = load_result(out.with_suffix(".json"))
    assert r.kind == "curves" and r.mean.shape == (2, 5) and r.mean[0, 2] == 0
    assert out.is_file() and out.with_suffix(".npz").is_file()
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["result"]["distance"] == "pixel"

    # the set records the model's file: --model may be left out
    out = tmp_path / "loc.json"
    assert (
        _analyze("locality", "--directions", lat, "--index", "1", "--samples", "6", "--shifts", "3", "--out", str(out))
        == 0
    )
    assert "hottest 10% of pixels" in capsys.readouterr().out
    r = load_result(out)
    assert r.heatmap.shape == (1, 16, 16) and (tmp_path / "loc.png").is_file()


def test_analyze_reproduce_and_its_errors(tiny, tmp_path, capsys):
    ckpt, lat, par = tiny
    out = tmp_path / "rep.png"
    assert (
        _analyze(
            "reproduce",
            "--model",
            ckpt,
            "--directions",
            par,
            "--opt-steps",
            "5",
            "--t",
            "-0.4",
            "--set",
            "batch_size=4",
            "--set",
            "eval_samples=8",
            "--out",
            str(out),
        )
        == 0
    )
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("direction 0: t = -0.4, h in z: relative residual")
    r = load_result(out)
    assert r.t[0] == -0.4 and 0 < r.residual[0] < 1.5 and r.loss_curve.shape == (1, 5)

    assert _analyze("reproduce", "--model", ckpt, "--directions", lat, "--out", str(out)) == 1
    assert _analyze("curves", "--model", ckpt, "--directions", lat, "--set", "nope=1", "--out", str(out)) == 2
    assert _analyze("curves", "--model", ckpt, "--directions", lat, "--index", "9", "--out", str(out)) == 2
    assert _analyze("curves", "--model", ckpt, "--directions", lat, "--out", str(tmp_path / "x.gif")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert all(e.startswith("error: ") for e in err) and len(err) == 4
    assert "latent direction" in err[0] and "nope" in err[1] and "out of range" in err[2]


def test_analyze_fid_without_inception_weights_says_which_file(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ckpt, lat, _ = tiny
    assert (
        _analyze(
            "fid",
            "--model",
            ckpt,
            "--directions",
            lat,
            "--samples",
            "4",
            "--reference",
            "4",
            "--out",
            str(tmp_path / "fid.png"),
        )
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pt_inception-2015-12-05-6726825d.pth" in err
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in err


def test_score_cli(tiny, tmp_path, capsys):
    ckpt, lat, par = tiny
    args = [
        "score",
        lat,
        par,
        "--model",
        ckpt,
        "--seeds",
        "4",
        "--steps",
        "3",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(tmp_path / "scores"),
    ]
    if importlib.util.find_spec("engine.data") is None or importlib.util.find_spec("engine.data.regressor") is None:
        assert main(args) == 1
        assert "no procedural factor regressor" in capsys.readouterr().err
        return
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "main factor" in text and "coverage" in text and "mean purity" in text
    assert (tmp_path / "scores" / "lat.score.json").is_file()


def test_a_registered_analysis_runs_from_the_cli_without_cli_edits(tiny, tmp_path, capsys):
    import tests.engine.toy_analysis  # noqa: F401  (registers "toy-change")

    ckpt, lat, _ = tiny
    assert _analyze("toy-change", "--model", ckpt, "--directions", lat, "--out", str(tmp_path / "toy.png")) == 0
    out = capsys.readouterr().out
    assert "direction 0: mean |change|" in out and (tmp_path / "toy.png").is_file()
    assert load_result(tmp_path / "toy.json").kind == "toy-change"
