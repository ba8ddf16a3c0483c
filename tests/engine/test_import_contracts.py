"""engine/ never imports Qt: the import-linter contracts in pyproject.toml must hold."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_linter_contracts_hold():
    exe = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(exe)], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "broken" in res.stdout and "0 broken" in res.stdout
