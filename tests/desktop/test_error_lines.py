"""The editor reports errors as one line, as the command line does (issue 11): dialogs, status lines
and the job process's failures pass through ``engine.errors.one_line`` / ``describe_exception``."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from desktop.job_process import _one_line
from desktop.widgets import error_text, show_error
from engine.errors import AtlasError
from tests.engine.test_error_lines import NASTY, assert_one_clean_line


def test_error_dialogs_show_one_clean_line(qtbot):
    parent = QWidget()
    qtbot.addWidget(parent)
    for exc, prefix in ((AtlasError(f"model.pt: {NASTY}"), "model.pt: "), (RuntimeError(NASTY), "Internal error: ")):
        box = show_error(parent, exc)
        assert isinstance(box, QMessageBox) and box.text().startswith(prefix)
        assert_one_clean_line(box.text())
        assert "size mismatch for main.0.weight" in box.text()
        box.close()


def test_status_lines_and_job_failures_are_one_clean_line():
    for exc in (AtlasError(NASTY), RuntimeError(NASTY), OSError(NASTY)):
        assert_one_clean_line(error_text(exc))
        assert_one_clean_line(_one_line(exc))
    assert _one_line(RuntimeError(NASTY)).startswith("RuntimeError: ")
    assert _one_line(AtlasError("x.pt: damaged")) == "x.pt: damaged"
