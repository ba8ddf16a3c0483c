"""Damaged and hostile checkpoint files: clear one-line errors, and no code from a file ever runs."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from cli.main import main
from engine.errors import CheckpointError
from engine.models import load_generator

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
needs_fixtures = pytest.mark.skipif(not (FIXTURES / "manifest.json").is_file(),
                                    reason=f"StyleGAN2 reference fixtures not found at {FIXTURES}")


@needs_fixtures
def test_truncated_rosinality_pt_is_a_clear_error(tmp_path, capsys):
    data = (FIXTURES / "rosinality_s32_narrow.pt").read_bytes()
    bad = tmp_path / "half.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="half.pt: not a readable rosinality StyleGAN2 checkpoint"):
        load_generator(str(bad), device="cpu")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "half.pt" in err[0]


def test_garbage_pt_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "noise.pt"
    bad.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(CheckpointError, match="noise.pt: not recognised"):
        load_generator(str(bad), device="cpu")
    assert main(["info", str(bad)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_pt_with_g_ema_of_the_wrong_kind(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(8, 8), "input.input": torch.zeros(1, 8, 4, 4)}}, path)
    with pytest.raises(CheckpointError, match="odd.pt: g_ema is not a rosinality StyleGAN2 generator"):
        load_generator(str(path), device="cpu")


def test_pt_with_code_in_it_is_refused(tmp_path):
    """A .pt whose pickle would call a function is refused by weights_only loading."""
    sentinel = tmp_path / "SENTINEL"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (sentinel,))

    path = tmp_path / "evil.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2), "input.input": torch.zeros(1)}, "x": Evil(),
                "args": argparse.Namespace(size=4)}, path)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_generator(str(path), device="cpu")
    assert not sentinel.exists()
