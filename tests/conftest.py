"""Shared test set-up: offscreen Qt, small thread budget, fixture paths and tiny generators."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
import torch  # noqa: E402

# One torch thread per process, as the editor and ``--threads 1`` use on a 2-core machine: the suite
# runs on two worker processes (pyproject.toml), which keep both cores busy. The models are tiny, and
# on a busy machine a second thread makes every parallel op wait at a barrier for a thread that is
# not scheduled (a tiny StyleGAN3's param-spectrum: 54 CPU s with two threads at load 10, 2.9 s with
# one). Tests that need more threads set them; ``_torch_threads`` restores the count.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture(autouse=True)
def _torch_threads():
    """Every test gets the suite's torch thread budget back afterwards (commands cap it in-process)."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny models avoid thread hand-off costs on a busy 2-core
    machine. Modules use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path, monkeypatch):
    """Crash logs (``engine.crash_log``) and other per-user files go to a temporary folder."""
    monkeypatch.setenv("GAN_ATLAS_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """``../shared/fixtures`` beside the repository.

    CI always has it: there (``CI`` set) a missing folder fails the tests that need it instead of
    skipping them, so a broken checkout cannot pass silently. Modules that need it say
    ``pytestmark = pytest.mark.usefixtures("shared_fixtures")``.
    """
    return require_fixtures(SHARED_FIXTURES)


def require_fixtures(folder: Path) -> Path:
    """``folder`` if it holds the fixtures; else fail under CI and skip elsewhere."""
    if not (folder / "manifest.json").is_file():
        msg = f"the reference fixtures are missing: {folder} (../shared beside the repository)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return folder


@pytest.fixture(scope="session")
def digiface():
    """The real default model (weights from the gan-face-generate wheel)."""
    from engine.models import load_generator

    return load_generator("digiface-dcgan-64", device="cpu")


@pytest.fixture
def tiny_dcgan():
    """A DCGAN with random weights and randomised BatchNorm statistics: 16x16, latent 8."""
    from engine.models.dcgan import DCGANGenerator

    torch.manual_seed(0)
    g = DCGANGenerator(nz=8, ngf=4, nc=3, n_up=2)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.2)
                m.bias.normal_(0, 0.1)
    g.name, g.identity = "tiny-dcgan", "0" * 64
    return g.eval()
