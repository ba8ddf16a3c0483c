"""ruff's lint rules (pyproject.toml) hold for the whole tree."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ruff_clean():
    exe = Path(sys.executable).with_name("ruff")
    res = subprocess.run([str(exe), "check", "engine", "cli", "desktop", "tests", "bench", "main.py"], cwd=REPO,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
