"""The README stays one document: each section once, no merge leftovers, the two commands intact."""

from collections import Counter
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_sections_appear_once_and_hold_no_conflict_markers():
    text = README.read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("## ") or line.startswith("### ")]
    twice = [h for h, n in Counter(headings).items() if n > 1]
    assert not twice, f"sections written twice: {twice}"
    for marker in ("<<<<<<< ", ">>>>>>> ", "\n=======\n"):
        assert marker not in text
    assert "bash scripts/setup.sh && .venv/bin/python main.py" in text
    assert "bash scripts/setup.sh && .venv/bin/python -m pytest" in text
