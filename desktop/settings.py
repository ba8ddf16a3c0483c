"""Persistent settings of the editor, in an INI file under the platform's config directory.

``GAN_ATLAS_CONFIG_DIR`` / ``GAN_ATLAS_DATA_DIR`` override the folders (tests point them at a
temporary directory so a user's real settings are never read or written).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import platformdirs
from PySide6.QtCore import QByteArray, QSettings

APP = "gan-atlas"
RECENT_LIMIT = 10


def config_dir() -> Path:
    return Path(os.environ.get("GAN_ATLAS_CONFIG_DIR") or platformdirs.user_config_dir(APP))


def data_dir() -> Path:
    return Path(os.environ.get("GAN_ATLAS_DATA_DIR") or platformdirs.user_data_dir(APP))


class Settings:
    """Typed access to the editor's QSettings (INI format, one file)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else config_dir() / "settings.ini"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.q = QSettings(str(self.path), QSettings.Format.IniFormat)

    # ---- plain values ----------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        raw = self.q.value(key)
        if raw is None:
            return default
        try:
            return json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            return default

    def set(self, key: str, value: Any) -> None:
        self.q.setValue(key, json.dumps(value))
        self.q.sync()

    @property
    def device(self) -> str:
        return str(self.get("engine/device", "auto"))

    @device.setter
    def device(self, value: str) -> None:
        self.set("engine/device", value)

    @property
    def threads(self) -> int:
        return int(self.get("engine/threads", 0) or 0)

    @threads.setter
    def threads(self, value: int) -> None:
        self.set("engine/threads", int(value))

    @property
    def library(self) -> Path:
        """The folder where finished discoveries are saved (one sub-folder per model)."""
        value = self.get("library/folder")
        return Path(value) if value else data_dir() / "sets"

    @library.setter
    def library(self, value: str | Path) -> None:
        self.set("library/folder", str(value))

    # ---- recent lists ----------------------------------------------------------------------
    def recent(self, kind: str) -> list[str]:
        value = self.get(f"recent/{kind}", [])
        return [str(v) for v in value] if isinstance(value, list) else []

    def add_recent(self, kind: str, item: str) -> None:
        items = [item] + [x for x in self.recent(kind) if x != item]
        self.set(f"recent/{kind}", items[:RECENT_LIMIT])

    def remove_recent(self, kind: str, item: str) -> None:
        self.set(f"recent/{kind}", [x for x in self.recent(kind) if x != item])

    # ---- window layout ---------------------------------------------------------------------
    def save_bytes(self, key: str, data: QByteArray) -> None:
        self.set(key, bytes(data.toBase64()).decode("ascii"))

    def load_bytes(self, key: str) -> QByteArray | None:
        value = self.get(key)
        return QByteArray.fromBase64(value.encode("ascii")) if isinstance(value, str) and value else None
