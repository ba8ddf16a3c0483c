"""The editor on a ProGAN checkpoint and on an MLP adapter: open, render, discover, edit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt

from tests.conftest import require_fixtures
from tests.desktop.test_editor import wait_preview

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "proggan"
GLD = FIXTURES / "proggan_gld_res32.pth"


def _load(qtbot, win, spec: str, family: str) -> None:
    win.load_model(spec)
    qtbot.waitUntil(lambda: win.ws.gen is not None and win.ws.gen.family == family, timeout=30000)
    wait_preview(qtbot, win)


def _discover_and_drag(qtbot, win, method: str, **params):
    panel = win.discovery
    win.show_dock("discovery")
    i = panel.method.findData(method)
    assert i >= 0 and panel.method.model().item(i).isEnabled(), panel.method.itemData(i, Qt.ItemDataRole.ToolTipRole)
    panel.select_method(method)
    for key, value in params.items():
        panel.form.set_value(key, value)
    with qtbot.waitSignal(panel.setFinished, timeout=60000) as blocker:
        qtbot.mouseClick(panel.start_btn, Qt.MouseButton.LeftButton)
    entry = blocker.args[0]
    assert entry.dset.method == method and len(entry.dset) == params.get("k", len(entry.dset))
    win.ws.select(entry, 0)
    qtbot.waitUntil(lambda: len(win.preview.sliders()) == 1)
    wait_preview(qtbot, win)
    before = win.preview.image().copy()
    win.preview.sliders()[0].setValue(entry.dset.directions[0].range[1])
    qtbot.waitUntil(lambda: len(win.preview.current_request().shifts) == 1)
    qtbot.waitUntil(lambda: np.abs(win.preview.image().astype(int) - before).mean() > 0.5, timeout=15000)
    return entry


def test_editor_opens_a_proggan_checkpoint_and_edits_it(qtbot, make_window):
    require_fixtures(FIXTURES)
    win = make_window()
    _load(qtbot, win, str(GLD), "proggan")
    assert win.ws.gen.resolution == 32 and "proggan_gld_res32" in win.windowTitle()
    assert "GANLatentDiscovery" in win.ws.gen.format
    # every method is offered: ProGAN has a first latent layer, early activations and editable convs
    panel = win.discovery
    for name in ("sefa", "ganspace", "latent-recon", "param-svd"):
        i = panel.method.findData(name)
        assert i >= 0 and panel.method.model().item(i).isEnabled(), name
    _discover_and_drag(qtbot, win, "sefa", k=4)
    entry = _discover_and_drag(qtbot, win, "param-svd", k=3, layer="layer3")
    assert entry.dset.directions[0].layer == "layer3"


def test_editor_runs_sefa_and_param_svd_on_an_mlp_adapter(qtbot, make_window):
    win = make_window()
    _load(qtbot, win, "resources/examples/mlp_adapter.py", "adapter")
    _discover_and_drag(qtbot, win, "sefa", k=4)
    entry = _discover_and_drag(qtbot, win, "param-svd", k=3, layer="net.2")
    assert entry.dset.directions[0].layer == "net.2"
