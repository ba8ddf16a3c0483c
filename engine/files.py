"""Writing the user's files safely: atomic replacement, and removing only what we wrote.

``atomic_write(path, data)`` writes a temporary file beside ``path`` and renames it over
``path``, so a reader (or a crash at any moment) sees the old file or the new one, never half of
one. The new file gets the mode an editor would create (``0666 & ~umask``), not ``mkstemp``'s
0600. Temporary files that an earlier, killed save of the same target left behind are removed.

``remove_own_file(folder, name, pattern, sha256)`` is how a save drops the companion file
(tensors, tuned weights) that an *earlier save of the same file* wrote: it removes ``name`` only if
it is a plain file directly in ``folder``, its name matches the save's own ``pattern`` and its
content has the sha256 the old manifest recorded. A manifest that names anything else
(``face.png``, ``../x``, a symlink) never makes us delete it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path

from engine.errors import AtlasError

STALE_TMP_SECONDS = 60.0  # a temp file of the same target older than this is a killed save's leftover


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temps(path: Path, older_than: float = STALE_TMP_SECONDS) -> int:
    """Remove ``.NAME.*.tmp`` files of target ``path`` older than ``older_than`` seconds; returns how many."""
    removed = 0
    prefix = _tmp_prefix(path)
    now = time.time()
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return 0
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime > older_than:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            pass
    return removed


def ensure_folder(folder: str | Path, name: str = "") -> Path:
    """``folder``, created if missing; ``AtlasError`` naming it if it (or a folder above it) is a
    file, or if it cannot be created. ``name`` is the file about to be saved there, for the message."""
    folder = Path(folder)
    what = name or "the file"
    for above in (folder, *folder.parents):
        if above.exists() or above.is_symlink():
            if not above.is_dir():
                raise AtlasError(f"{above}: is a file, not a folder; cannot save {what} under it")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AtlasError(f"{folder}: cannot create the folder to save {what} ({exc.strerror or exc})") from None
    if not folder.is_dir():
        raise AtlasError(f"{folder}: is not a folder; cannot save {what} there")
    return folder


def atomic_write(path: str | Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half of one.

    Raises ``AtlasError`` naming the folder when it cannot be created or written.
    """
    path = Path(path)
    folder = ensure_folder(path.parent, path.name)
    remove_stale_temps(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=folder)
    except OSError as exc:
        raise AtlasError(f"{folder}: cannot write {path.name} there ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise AtlasError(f"{folder}: cannot write {path.name} there ({exc.strerror or exc})") from None
        raise


def sha256_of_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def own_file(folder: Path, name: object, pattern: re.Pattern[str], sha256: object) -> Path | None:
    """``folder / name`` if it is a file an earlier save wrote (see the module docstring), else ``None``."""
    if not isinstance(name, str) or not isinstance(sha256, str) or len(sha256) != 64:
        return None
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name or not pattern.fullmatch(name):
        return None
    candidate = folder / name
    try:
        if candidate.is_symlink() or not candidate.is_file():
            return None
        if candidate.resolve().parent != folder.resolve():
            return None
        if sha256_of_file(candidate) != sha256:
            return None
    except OSError:
        return None
    return candidate


def remove_own_file(folder: Path, name: object, pattern: re.Pattern[str], sha256: object) -> bool:
    """Remove ``folder / name`` if ``own_file`` accepts it; returns whether a file was removed."""
    target = own_file(folder, name, pattern, sha256)
    if target is None:
        return False
    try:
        target.unlink()
    except OSError:
        return False
    return True
