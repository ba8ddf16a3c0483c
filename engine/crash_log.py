"""Where unexpected errors leave their traceback: one small log file per failure.

A failure that is not the user's (anything but an ``AtlasError``) is a bug. The user sees one
line naming the log file; the file holds the traceback, the command and the versions, for a bug
report. The folder is ``$GAN_ATLAS_DATA_DIR/logs`` when that variable is set (tests point it at a
temporary folder), else the platform's log folder (platformdirs ``user_log_dir``: on Linux
``~/.local/state/gan-atlas/log``). Only the newest ``KEEP`` logs are kept.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

APP = "gan-atlas"
KEEP = 50


def log_folder() -> Path:
    """The folder crash logs go to (see the module docstring); not created here."""
    data = os.environ.get("GAN_ATLAS_DATA_DIR")
    if data:
        return Path(data) / "logs"
    import platformdirs

    return Path(platformdirs.user_log_dir(APP))


def write_crash_log(exc: BaseException, command: list[str] | None = None) -> Path | None:
    """Write ``exc``'s traceback (with the command and versions) to a new file in ``log_folder()``
    and return its path; falls back to the temporary folder, and returns ``None`` if nothing can
    be written (the caller still prints its one line)."""
    lines = [
        f"GAN Atlas internal error, {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"command: {' '.join(command) if command is not None else ' '.join(sys.argv)}",
        f"python {sys.version.split()[0]} on {platform.platform()}",
        f"torch {_version('torch')}, numpy {_version('numpy')}",
        "",
        *traceback.format_exception(type(exc), exc, exc.__traceback__),
    ]
    text = "\n".join(line.rstrip("\n") for line in lines) + "\n"
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in (log_folder(), Path(tempfile.gettempdir()) / APP):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(text, encoding="utf-8")
        except OSError:
            continue
        _prune(folder)
        return path
    return None


def _prune(folder: Path) -> None:
    try:
        logs = sorted(folder.glob("crash-*.log"), key=lambda p: p.stat().st_mtime)
        for old in logs[:-KEEP]:
            old.unlink()
    except OSError:
        pass


def _version(module: str) -> str:
    mod = sys.modules.get(module)
    return getattr(mod, "__version__", "not loaded") if mod is not None else "not loaded"
