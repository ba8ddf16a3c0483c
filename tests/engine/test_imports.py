"""Every module of ours imports on its own, first, with none of our other modules loaded.

That is what a fresh interpreter does when a user runs ``python -c "import engine.checkpoints.rosinality"``:
an import cycle between our packages shows up only when the first module imported is the one
inside the cycle. One subprocess checks every module, forgetting all of ours (``engine``, ``cli``,
``desktop``) before each import; third-party packages stay loaded, which is what keeps it fast.
"""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHECK = r"""
import importlib, sys, traceback
ours = ("engine", "cli", "desktop")
failed = []
for name in sys.argv[1:]:
    for m in [m for m in sys.modules if m.split(".")[0] in ours]:
        del sys.modules[m]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {exc.__class__.__name__}: {exc}")
print("\n".join(failed))
sys.exit(1 if failed else 0)
"""


def _modules() -> list[str]:
    out = []
    for pkg in ("engine", "cli", "desktop"):
        for path in sorted((REPO / pkg).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out.append(".".join(parts))
    return out


def test_every_module_imports_first_in_a_fresh_interpreter():
    mods = _modules()
    assert "engine.checkpoints.rosinality" in mods
    env = {"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", CHECK, *mods], cwd=REPO, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]


def test_missing_fixtures_fail_under_ci_and_skip_elsewhere(tmp_path, monkeypatch):
    from tests.conftest import require_fixtures

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="fixtures are missing"):
        require_fixtures(tmp_path)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require_fixtures(tmp_path)
