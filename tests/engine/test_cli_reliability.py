"""No command prints a traceback for any input, however wrong (issue 11, command line).

Every refusal is one line on stderr: exit 2 for a bad value on the command line, 1 for a file or
model problem; an internal error prints one line naming a log file with the traceback; Ctrl-C
exits 130.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cli.main import main
from engine.directions import DirectionSet, model_ref
from engine.models import load_generator
from engine.render import render_batch
from tests.engine.tiny_generators import save_tiny_dcgan

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny(tmp_path):
    """A tiny DCGAN checkpoint (latent 8) and a direction set found on it (one on digiface too)."""
    ckpt = save_tiny_dcgan(tmp_path / "tiny.pt", nz=8)
    gen = load_generator(ckpt, device="cpu")
    torch.manual_seed(0)
    own = DirectionSet.latent("test", model_ref(gen), torch.randn(3, 8), range_=(-2.0, 2.0))
    own.save(tmp_path / "tiny_set.json")
    return ckpt, gen, tmp_path / "tiny_set.json"


def _run(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    return code, lines[-1] if lines else ""


def _one_error_line(capsys, argv, code) -> str:
    got = main(list(argv))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert got == code, (argv, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
    return lines[0]


# ---- render / export use the set's own model ---------------------------------------------------
def test_render_without_model_uses_the_sets_own_model(tiny, tmp_path, capsys):
    ckpt, gen, set_path = tiny
    out = tmp_path / "grid.npy"
    argv = ["render", "--directions", str(set_path), "--index", "1", "--shifts", "2", "--seeds", "4", "--out", str(out)]
    assert main(argv) == 0
    dset = DirectionSet.load(set_path)
    with torch.no_grad():
        ref = render_batch(gen, gen.seed_latents([4]), [[(dset.directions[1], 2.0)]])
    np.testing.assert_allclose(np.load(out), ref.numpy(), atol=1e-5)
    gif = tmp_path / "m.gif"
    assert main(["export", "-d", str(set_path), "--frames", "2", "--size", "16", "--out", str(gif)]) == 0
    assert gif.stat().st_size > 0


def test_a_set_of_another_latent_size_is_refused_in_one_line(tiny, tmp_path, capsys):
    ckpt, gen, set_path = tiny
    for cmd in (["render"], ["export", "--frames", "2"]):
        suffix = ".png" if cmd[0] == "render" else ".gif"
        line = _one_error_line(
            capsys,
            [
                *cmd,
                "--model",
                "digiface-dcgan-64",
                "--directions",
                str(set_path),
                "--out",
                str(tmp_path / f"x{suffix}"),
            ],
            1,
        )
        assert "tiny_set.json: direction 0 has 8 components but digiface-dcgan-64's z has 100" in line
    # a set whose model file is gone: name it and ask for --model
    Path(ckpt).unlink()
    line = _one_error_line(capsys, ["render", "--directions", str(set_path), "--out", str(tmp_path / "x.png")], 1)
    assert "which is not here; pass --model" in line


# ---- bad values: one line, exit 2 --------------------------------------------------------------
BAD_VALUES = [
    (["render", "--batch-size", "0"], "--batch-size: 0: must be from 1 to"),
    (["render", "--batch-size", "-1"], "--batch-size: -1: must be from 1 to"),
    (["render", "--columns", "-1"], "--columns: -1: must be from 1 to"),
    (["render", "--seeds", "0-100000000"], "at most 1024"),
    (["render", "--truncation", "nan"], "not a finite number"),
    (["render", "--truncation", "inf"], "not a finite number"),
    (["render", "--threads", "-2"], "--threads: -2: must be from 0 (automatic) to 1024"),
    (["render", "--set-shifts"], "unrecognized arguments"),
]


@pytest.mark.parametrize("argv,message", BAD_VALUES)
def test_bad_render_values_are_one_line_usage_errors(argv, message, tmp_path, capsys):
    line = _one_error_line(capsys, [*argv, "--out", str(tmp_path / "a.png")], 2)
    assert message in line


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--shifts", "-3:3:100000000"], "the count must be from 1 to 1001"),
        (["--shifts", "nan:nan:2"], "must be a finite number"),
        (["--shifts", "0:inf:2"], "must be a finite number"),
        (["--shifts", ","], "no shifts given"),
        (["--shifts", "1,nan"], "must be a finite number"),
        (["--index", "abc"], "--index 'abc': 'abc' is not a direction index"),
        (["--index", "0-100000000"], "the set has 3 directions"),
    ],
)
def test_bad_grid_values_are_one_line_usage_errors(tiny, extra, message, tmp_path, capsys):
    _, _, set_path = tiny
    line = _one_error_line(
        capsys, ["render", "--directions", str(set_path), *extra, "--out", str(tmp_path / "g.png")], 2
    )
    assert message in line


def test_export_refuses_nan_shift_and_names_the_index_option(tiny, tmp_path, capsys):
    _, _, set_path = tiny
    gif = str(tmp_path / "m.gif")
    assert "not a finite number" in _one_error_line(
        capsys, ["export", "-d", str(set_path), "--shift", "nan", "--out", gif], 2
    )
    assert "not a finite number" in _one_error_line(
        capsys, ["export", "-d", str(set_path), "-T", "inf", "--out", gif], 2
    )
    assert _one_error_line(capsys, ["export", "-d", str(set_path), "--index", "x", "--out", gif], 2).startswith(
        "error: --index 'x'"
    )
    line = _one_error_line(capsys, ["export", "-d", str(tmp_path / "x.pt"), "--out", gif], 2)
    assert "expected a direction set's .json file" in line and "x.json" not in line


def test_train_batch_must_be_positive(tmp_path, capsys):
    for batch in ("0", "-1"):
        line = _one_error_line(capsys, ["train", "--batch", batch, "--out", str(tmp_path / "g.pt")], 2)
        assert f"--batch: {batch}: must be from 1 to" in line
    line = _one_error_line(capsys, ["train", "--out", str(tmp_path / "g.pt"), "--config", '{"betas": 5}'], 2)
    assert "betas=5: expected two numbers" in line
    line = _one_error_line(capsys, ["train", "--out", str(tmp_path / "g.pt"), "--config", '{"lr": NaN}'], 2)
    assert "lr=nan: expected a finite number" in line


def test_discover_set_nan_is_refused(tiny, tmp_path, capsys):
    ckpt, _, _ = tiny
    for value in ("nan", "inf", "-inf"):
        argv = ["discover", "--model", ckpt, "--method", "latent-recon", "--set", f"lr={value}"]
        line = _one_error_line(capsys, [*argv, "--out", str(tmp_path / "s.json")], 2)
        assert f"parameter lr='{value}' must be a finite number" in line


def test_empty_and_nan_latents_are_refused(tmp_path, capsys):
    np.save(tmp_path / "empty.npy", np.zeros((0, 100), np.float32))
    bad = np.zeros((3, 100), np.float32)
    bad[2, 5] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    out = str(tmp_path / "a.png")
    assert "holds no latents" in _one_error_line(
        capsys, ["render", "--latents", str(tmp_path / "empty.npy"), "--out", out], 1
    )
    assert "latent 2 holds NaN" in _one_error_line(
        capsys, ["render", "--latents", str(tmp_path / "nan.npy"), "--out", out], 1
    )
    assert "array of numbers" in _one_error_line(
        capsys, ["render", "--latents", str(tmp_path / "text.npy"), "--out", out], 1
    )


def test_threads_is_accepted_by_every_command(capsys):
    torch.set_num_threads(2)  # not the suite's 1: the assertion below then shows that --threads was applied
    assert main(["info", "--threads", "1", "digiface-dcgan-64"]) == 0
    assert main(["models", "--threads", "1"]) == 0
    assert main(["weights", "status", "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1


# ---- --out where nothing can be written ---------------------------------------------------------
def test_out_under_a_file_or_in_a_read_only_folder_names_the_folder(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    line = _one_error_line(capsys, ["render", "--seeds", "0", "--out", str(blocker / "sub" / "a.png")], 1)
    assert f"{blocker}: is a file, not a folder" in line
    line = _one_error_line(capsys, ["discover", "--method", "sefa", "--out", str(blocker / "s.json")], 1)
    assert f"{blocker}: is a file, not a folder" in line
    # a folder we may not write in (simulated: this suite may run as root, who writes anywhere)
    ro = tmp_path / "ro"
    ro.mkdir()
    import cli.common

    real = cli.common.os.access
    monkeypatch.setattr(cli.common.os, "access", lambda p, mode: False if Path(p) == ro else real(p, mode))
    line = _one_error_line(capsys, ["render", "--seeds", "0", "--out", str(ro / "a.png")], 1)
    assert f"{ro}: the folder is not writable" in line


def test_a_save_that_cannot_create_its_temp_file_names_the_folder(tiny, tmp_path, capsys, monkeypatch):
    """The set writer's own refusal (engine.files) reaches the user as one line naming the folder."""
    import tempfile

    ckpt, _, _ = tiny

    def refuse(*args, **kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    argv = [
        "discover",
        "--model",
        ckpt,
        "--method",
        "sefa",
        "--k",
        "2",
        "--quiet",
        "--out",
        str(tmp_path / "o" / "s.json"),
    ]
    line = _one_error_line(capsys, argv, 1)
    assert f"{tmp_path / 'o'}: cannot write s." in line and "Permission denied" in line


# ---- torch's refusal text ----------------------------------------------------------------------
def test_torch_refusal_has_no_terminal_codes_nor_unsafe_advice(tmp_path, capsys):
    from engine.discovery.checkpoint import load_checkpoint
    from engine.errors import CheckpointError

    path = tmp_path / "job.ckpt"
    torch.save({"format": "gan-atlas-job-state", "state": argparse.Namespace(x=1)}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "\x1b" not in msg and "weights_only" not in msg and "argparse.Namespace" in msg
    # a model file: whatever loader refuses it, the printed line is clean
    evil = tmp_path / "evil.pt"
    torch.save({"g_ema": argparse.Namespace(x=1)}, evil)
    assert main(["info", str(evil)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "weights_only" not in err and "Traceback" not in err


def test_one_line_rewrites_torchs_refusal():
    from engine.errors import describe_exception, one_line

    buf = io.BytesIO()
    torch.save({"a": argparse.Namespace(x=1)}, buf)
    buf.seek(0)
    with pytest.raises(Exception) as info:
        torch.load(buf, weights_only=True)
    raw = str(info.value)
    assert "\x1b[1m" in raw and "weights_only` set to `False" in raw  # what torch says
    text = describe_exception(info.value)
    assert text == "UnpicklingError: refused by the safe loader: it names argparse.Namespace, which could run code"
    assert one_line("a\x1b[31m red\x1b[0m\n\tline") == "a red line"


# ---- what main() does with each kind of failure --------------------------------------------------
def test_main_exit_codes_and_the_crash_log(tmp_path, monkeypatch, capsys):
    import cli.cmd_models as models
    from engine.errors import AtlasError, BadValueError

    def fail(exc):
        def run(args):
            raise exc

        return run

    monkeypatch.setattr(models, "run", fail(AtlasError("x.pt: damaged")))
    assert _run(capsys, "models") == (1, "error: x.pt: damaged")
    monkeypatch.setattr(models, "run", fail(BadValueError("--k 0: too small")))
    assert _run(capsys, "models") == (2, "error: --k 0: too small")
    monkeypatch.setattr(models, "run", fail(KeyboardInterrupt()))
    assert _run(capsys, "models") == (130, "interrupted")
    monkeypatch.setattr(models, "run", fail(RuntimeError("shape mismatch\nsecond line")))
    code = main(["models"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("internal error: RuntimeError: shape mismatch second line (details in ")
    log = Path(err.rsplit("details in ", 1)[1].rstrip(")\n"))
    assert log.parent == tmp_path / "data" / "logs" and log.is_file()
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: shape mismatch" in text
    assert "command: main.py models" in text
    monkeypatch.setattr(models, "run", fail(MemoryError()))
    code, line = _run(capsys, "models")
    assert code == 1 and line.startswith("internal error: MemoryError (details in ")


def test_crash_log_folder_defaults_to_the_platform_log_folder(monkeypatch):
    import platformdirs

    from engine.crash_log import log_folder

    monkeypatch.delenv("GAN_ATLAS_DATA_DIR", raising=False)
    assert log_folder() == Path(platformdirs.user_log_dir("gan-atlas"))


def test_the_process_prints_no_traceback(tmp_path):
    """Through the real entry point (argparse and signal handling included)."""
    (tmp_path / "a.png").write_bytes(b"")
    env_argv = [
        ["render", "--seeds", "0-100000000", "--out", str(tmp_path / "a.png")],
        ["render", "--out", str(tmp_path / "a.png" / "b.png"), "--seeds", "0"],
    ]
    for argv in env_argv:
        res = subprocess.run(
            [sys.executable, "main.py", *argv],
            cwd=REPO,
            capture_output=True,
            text=True,
            env={"GAN_ATLAS_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"},
        )
        assert res.returncode in (1, 2), (argv, res.stderr)
        assert "Traceback" not in res.stderr and res.stderr.strip().count("\n") == 0, (argv, res.stderr)


def test_more_columns_than_images_and_huge_integers(tmp_path, capsys):
    from engine.discovery import get_method
    from engine.errors import BadValueError

    out = tmp_path / "a.png"
    assert main(["render", "--seeds", "0,1", "--columns", "2147483647", "--out", str(out)]) == 0
    capsys.readouterr()
    assert "--batch-size: 99999999999999999999: must be from 1 to" in _one_error_line(
        capsys, ["render", "--batch-size", "99999999999999999999", "--out", str(out)], 2
    )
    with pytest.raises(BadValueError, match="seed=100000000000000000000 is out of range"):
        get_method("latent-recon").make_params(seed=10**20)


def test_one_line_cuts_cpp_stack_traces():
    from engine.errors import one_line

    msg = "value cannot be converted to type int64_t without overflow\nException raised from foo at x.h:79 (most"
    msg += " recent call first):\nframe #0: c10::Error::Error(...)\nframe #1: ..."
    assert one_line(msg) == "value cannot be converted to type int64_t without overflow"
