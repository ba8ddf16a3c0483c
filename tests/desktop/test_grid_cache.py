"""The grid keeps at most CACHE_ROWS rows of thumbnails, dropping the oldest first."""

from __future__ import annotations

import desktop.grid
from tests.desktop.conftest import make_set
from tests.desktop.test_editor import open_set


def test_row_cache_evicts_the_oldest_rows(qtbot, make_window, tiny_gen, tmp_path, monkeypatch):
    big = make_set(tiny_gen, tmp_path / "big.json", k=200)
    win = make_window([big.path])
    open_set(qtbot, win, big)
    win.show_dock("grid")
    model = win.grid.model
    n = len(big)

    def screen_done() -> bool:  # every visible row and the page ahead rendered, nothing in flight
        rows = [r for r in model.visible_rows() if 0 <= r < n]
        ahead = range(rows[-1] + 1, min(n, rows[-1] + 1 + desktop.grid.PAGE)) if rows else range(0)
        return bool(rows) and all(r in model.cache for r in [*rows, *ahead]) and not model.inflight

    qtbot.waitUntil(screen_done, timeout=30000)
    first = list(model.cache)
    # a cache just larger than one screen (visible rows and the page ahead): the next screen evicts the first
    limit = len(first) + 2
    monkeypatch.setattr(desktop.grid, "CACHE_ROWS", limit)
    win.grid.view.scrollToBottom()
    qtbot.waitUntil(lambda: 199 in model.cache and screen_done(), timeout=30000)
    assert len(model.cache) <= limit
    assert 0 not in model.cache and first[0] not in model.cache  # the oldest rows went first
    assert max(model.cache) == 199
    # scrolling back renders the evicted rows again, still within the limit
    win.grid.view.scrollToTop()
    qtbot.waitUntil(lambda: 0 in model.cache and screen_done(), timeout=30000)
    assert len(model.cache) <= limit
