"""Fixtures of the desktop tests: offscreen Qt, isolated settings, a tiny generator and set."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any Qt import: no display needed

import pytest  # noqa: E402
import torch  # noqa: E402

from engine.directions import DirectionSet, model_ref  # noqa: E402
from engine.models.dcgan import DCGANGenerator  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_settings(tmp_path, monkeypatch):
    """Keep the user's real settings and library out of the tests (napari's ``_fresh_settings``)."""
    monkeypatch.setenv("GAN_ATLAS_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("GAN_ATLAS_DATA_DIR", str(tmp_path / "data"))
    yield


@pytest.fixture(scope="session", autouse=True)
def _gc_on_the_ui_thread(qapp):
    """As the editor does (``desktop.app.collect_garbage_on_ui_thread``): a collection started by a
    worker thread would destroy the earlier tests' Qt objects there, and can deadlock."""
    import gc

    from desktop.app import collect_garbage_on_ui_thread

    collect_garbage_on_ui_thread(qapp)
    yield
    qapp._atlas_gc.timer.stop()
    gc.enable()


@pytest.fixture(scope="session")
def tiny_gen():
    """A random-weight DCGAN with 16 x 16 images: fast on any CPU."""
    torch.manual_seed(0)
    g = DCGANGenerator(nz=8, ngf=8, n_up=2).eval()
    with torch.no_grad():  # default init gives near-grey images; these weights give visible contrast
        for m in g.modules():
            if isinstance(m, torch.nn.ConvTranspose2d):
                m.weight.normal_(0.0, 0.35)
    g.name, g.identity, g.source = "tiny-dcgan", "tiny-dcgan-identity", "tiny-dcgan"
    return g


def make_set(gen, path, k: int = 6, seed: int = 1) -> DirectionSet:
    g = torch.Generator().manual_seed(seed)
    v = torch.nn.functional.normalize(torch.randn(k, gen.z_dim, generator=g), dim=1)
    s = DirectionSet.latent("test", model_ref(gen), v, scores=range(k, 0, -1), range_=(-6.0, 6.0))
    s.save(path)
    return s


@pytest.fixture()
def dirset(tiny_gen, tmp_path):
    return make_set(tiny_gen, tmp_path / "sets" / "tiny.json")


@pytest.fixture()
def make_window(qtbot, tiny_gen):
    """``make_window(open_sets=...)`` -> a shown MainWindow on the tiny generator; closed at the end."""
    from PySide6.QtCore import QThreadPool

    from desktop.app import configure_threads
    from desktop.main_window import MainWindow
    from desktop.settings import Settings

    windows = []

    def make(open_sets=(), gen=tiny_gen):
        settings = Settings()
        configure_threads(settings)
        win = MainWindow(settings, gen=gen, open_sets=[str(p) for p in open_sets])
        qtbot.addWidget(win)
        win.show()
        windows.append(win)
        return win

    yield make
    from desktop.workers import job_pool

    for win in windows:
        if win.isVisible():
            win.close()
    job_pool().waitForDone(20000)
    QThreadPool.globalInstance().waitForDone(20000)


@pytest.fixture(scope="session", autouse=True)
def _job_process():
    """The long-job process starts with the session, as it starts with the editor (spawn + torch import)."""
    from desktop.workers import job_process, shutdown_job_process

    job_process()
    yield
    shutdown_job_process()
