"""Every size a job takes is bounded before any work (issue 11): a count that would allocate is
refused in one line naming the parameter and its limit, never an "internal error" after minutes."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch

import engine.selection
from cli.main import main
from engine.analysis import ANALYSES
from engine.directions import DirectionSet, model_ref
from engine.discovery import get_method, methods
from engine.errors import AtlasError, BadValueError
from engine.jobs import run_job
from engine.models import load_generator
from tests.engine.tiny_generators import save_tiny_dcgan, tiny_dcgan


@pytest.fixture
def tiny(tmp_path):
    ckpt = save_tiny_dcgan(tmp_path / "tiny.pt", nz=8)
    gen = load_generator(ckpt, device="cpu")
    torch.manual_seed(0)
    dset = DirectionSet.latent("test", model_ref(gen), torch.randn(3, 8), range_=(-2.0, 2.0))
    dset.save(tmp_path / "set.json")
    return ckpt, tmp_path / "set.json"


def _int_fields(params: type) -> list[dataclasses.Field]:
    hints = typing.get_type_hints(params)
    return [f for f in dataclasses.fields(params) if int in (hints[f.name], *typing.get_args(hints[f.name]))]


@pytest.mark.parametrize(
    "params",
    [s.params for s in methods()] + [s.params for s in ANALYSES.values()],
    ids=[s.name for s in methods()] + list(ANALYSES),
)
def test_every_count_of_every_method_and_analysis_has_a_ceiling(params):
    """Counts (fields with a lower bound) all have an upper one, checked by ``validate_params``."""
    for f in _int_fields(params):
        if "min" in f.metadata:
            assert "max" in f.metadata, f"{params.__module__}.{f.name} has no max"
            with pytest.raises(BadValueError, match=rf"{f.name}=.*at most {f.metadata['max']}"):
                params(**{f.name: f.metadata["max"] + 1})


def _one_line(capsys, argv) -> str:
    code = main([str(a) for a in argv])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), (argv, code, err)
    return err[0]


@pytest.mark.parametrize(
    "argv, name, limit",
    [
        (["analyze", "locality", "--samples", "2000000000"], "samples", "1000000"),
        (["analyze", "locality", "--shifts", "2000000000"], "shifts", "10000"),
        (["analyze", "curves", "--seeds", "2000000000"], "seeds", "100000"),
        (["analyze", "curves", "--steps", "2000000000"], "steps", "1001"),
        (["analyze", "curves", "--set", "batch_size=2000000000"], "batch_size", "4096"),
        (["analyze", "fid", "--reference", "2000000000"], "reference", "1000000"),
        (["analyze", "reproduce", "--set", "eval_samples=2147483648"], "eval_samples", "1000000"),
        (["analyze", "reproduce", "--opt-steps", "2000000000"], "steps", "1000000"),
    ],
)
def test_analysis_sizes_are_refused_in_one_line(tiny, tmp_path, capsys, argv, name, limit):
    ckpt, set_path = tiny
    line = _one_line(capsys, [*argv, "-d", set_path, "--model", ckpt, "--out", tmp_path / "a.png"])
    assert f"{name}=" in line and f"at most {limit}" in line and "internal error" not in line


def test_an_analysis_flag_of_another_analysis_is_refused(tiny, tmp_path, capsys):
    ckpt, set_path = tiny
    line = _one_line(capsys, ["analyze", "curves", "--samples", "5", "-d", set_path, "--out", tmp_path / "a.png"])
    assert "--samples does not apply to analysis 'curves'" in line
    line = _one_line(capsys, ["analyze", "reproduce", "--steps", "5", "-d", set_path, "--out", tmp_path / "a.png"])
    assert "--opt-steps" in line


@pytest.mark.parametrize(
    "method, setting, limit",
    [
        ("ganspace", "n_samples=2000000000", "100000000"),
        ("ganspace", "batch_size=2000000000", "10000"),
        ("latent-recon", "batch_size=2000000000", "4096"),
        ("latent-recon", "rca_samples=2000000000", "10000000"),
        ("param-spectrum", "samples=2000000000", "100000"),
        ("param-hybrid", "basis_k=2000000000", "4096"),
    ],
)
def test_method_sizes_are_refused_in_one_line(tiny, tmp_path, capsys, method, setting, limit):
    ckpt, _ = tiny
    argv = ["discover", "--model", ckpt, "--method", method, "--set", setting, "--out", tmp_path / "s.json"]
    line = _one_line(capsys, argv)
    assert setting.split("=")[0] in line and f"at most {limit}" in line


def test_the_eigensolver_blocks_are_bounded_by_memory_before_any_work(monkeypatch):
    """k within its ceiling but k + guard weight-sized blocks beyond the memory budget: refused
    before the distance network is even loaded (it used to allocate them, or die trying)."""
    import engine.discovery.param_spectrum as param_spectrum

    monkeypatch.setattr(engine.selection, "job_memory_budget", lambda: 10 * 1024**2)  # 10 MiB
    monkeypatch.setattr(param_spectrum, "load_distance", lambda *a, **k: pytest.fail("loaded the distance"))
    gen = tiny_dcgan(nz=8)
    spec = get_method("param-spectrum")
    # main.0, 1024 weights: k = 1020 (+ 4 guard) blocks of ten 4 KiB vectors each is 40 MiB
    layer = max(gen.editable_layers(), key=lambda info: torch.Size(info.shape).numel())
    n = torch.Size(layer.shape).numel()
    k = min(4096, n) - 4
    with pytest.raises(BadValueError, match=rf"k={k} is too large: the eigensolver's blocks .* at most \d+ here"):
        run_job(spec.run(gen, spec.make_params(k=k, layer=layer.name, distance="pixel")))
    hyb = get_method("param-hybrid")
    with pytest.raises(BadValueError, match=rf"basis_k={k} is too large"):
        run_job(hyb.run(gen, hyb.make_params(basis_k=k, layer=layer.name, distance="pixel")))


def test_kept_images_and_latents_are_bounded_by_memory(monkeypatch):
    from engine.analysis import curves, locality

    monkeypatch.setattr(engine.selection, "job_memory_budget", lambda: 1024**2)  # 1 MiB
    gen = tiny_dcgan(nz=8)
    dset = DirectionSet.latent("test", model_ref(gen), torch.randn(1, 8), range_=(-2.0, 2.0))
    with pytest.raises(BadValueError, match=r"seeds=100000 is too large: the latents and their unedited images"):
        run_job(curves.run(gen, dset, None, curves.Params(seeds=100_000, distance="pixel")))
    with pytest.raises(BadValueError, match=r"samples=1000000 is too large: the latents and their shifts"):
        run_job(locality.run(gen, dset, None, locality.Params(samples=1_000_000)))


def test_training_projection_and_regressor_sizes_are_bounded():
    from engine.projection import ProjectParams
    from engine.training.regressor import RegressorParams
    from engine.training.stylegan2 import TrainConfig

    with pytest.raises(BadValueError, match="batch_size=2147483648: expected at most 4,096"):
        TrainConfig.make(batch_size=2**31)
    with pytest.raises(BadValueError, match="sample_grid=1000: expected at most 32"):
        TrainConfig.make(sample_grid=1000)
    with pytest.raises(BadValueError, match="eval_n=1000000000"):
        RegressorParams(eval_n=10**9)
    with pytest.raises(AtlasError, match="candidates 2147483648: must be a whole number from 1 to 100,000"):
        ProjectParams(candidates=2**31).check(tiny_dcgan(nz=8))
