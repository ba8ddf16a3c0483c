"""ruff's lint rules and its formatter (pyproject.toml) hold for the whole tree."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TREE = ["engine", "cli", "desktop", "tests", "bench", "scripts", "main.py"]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("ruff")
    return subprocess.run([str(exe), *args, *TREE], cwd=REPO, capture_output=True, text=True)


def test_ruff_check_clean():
    res = _ruff("check")
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_format_clean():
    res = _ruff("format", "--check")
    assert res.returncode == 0, "run `ruff format .`:\n" + res.stdout + res.stderr
