import importlib.resources

import numpy as np
import pytest
import torch

from engine.errors import CheckpointError
from engine.models import load_generator
from engine.models.dcgan import DCGANGenerator, load_dcgan_checkpoint


def test_digiface_loads_with_the_tutorial_architecture(digiface):
    assert digiface.z_dim == 100 and digiface.resolution == 64 and digiface.spaces == ("z",)
    assert sum(p.numel() for p in digiface.parameters()) == 3_576_704
    assert [i.name for i in digiface.editable_layers()] == ["main.0", "main.3", "main.6", "main.9", "main.12"]
    assert digiface.default_edit_layer == "main.6"
    assert len(digiface.identity) == 64


def test_digiface_output_matches_a_plain_torch_sequential(digiface):
    """Our module equals the tutorial's nn.Sequential loaded from the same state dict."""
    from torch import nn

    ref = nn.Sequential(
        nn.ConvTranspose2d(100, 512, 4, 1, 0, bias=False),
        nn.BatchNorm2d(512),
        nn.ReLU(True),
        nn.ConvTranspose2d(512, 256, 4, 2, 1, bias=False),
        nn.BatchNorm2d(256),
        nn.ReLU(True),
        nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False),
        nn.BatchNorm2d(128),
        nn.ReLU(True),
        nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(True),
        nn.ConvTranspose2d(64, 3, 4, 2, 1, bias=False),
        nn.Tanh(),
    )
    path = importlib.resources.files("gan_face_generate") / "weights.tar"
    ref.load_state_dict(
        {k[5:]: v for k, v in torch.load(str(path), map_location="cpu", weights_only=True)["netG_state_dict"].items()}
    )
    ref.eval()
    z = digiface.seed_latents([0, 1, 2])
    with torch.no_grad():
        torch.testing.assert_close(digiface(z), ref(z.reshape(3, 100, 1, 1)), atol=1e-6, rtol=0)


def test_batchnorm_stays_in_eval_mode(digiface):
    z = digiface.seed_latents([3])
    with torch.no_grad():
        a = digiface(z)
        digiface.train()
        b = digiface(torch.cat([z, digiface.seed_latents([4])]))[:1]
    assert not digiface.training
    torch.testing.assert_close(a, b)


def test_seed_latents_follow_the_numpy_recipe(digiface):
    z = digiface.seed_latents([7, 0])
    np.testing.assert_array_equal(z[0].numpy(), np.random.RandomState(7).randn(100).astype(np.float32))
    assert torch.equal(digiface.seed_latents([0])[0], z[1])


def test_missing_wheel_gives_install_hint(monkeypatch):
    def boom(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(importlib.resources, "files", boom)
    with pytest.raises(CheckpointError, match="pip install --no-deps gan-face-generate"):
        load_generator("digiface-dcgan-64", device="cpu")


def test_dcgan_checkpoint_roundtrip_infers_widths(tmp_path, tiny_dcgan):
    path = tmp_path / "g.pt"
    torch.save({"netG_state_dict": tiny_dcgan.state_dict()}, path)
    g = load_generator(str(path), device="cpu")
    assert isinstance(g, DCGANGenerator) and g.z_dim == 8 and g.resolution == 16
    z = tiny_dcgan.seed_latents([1, 2])
    with torch.no_grad():
        torch.testing.assert_close(g(z), tiny_dcgan(z))


def test_garbage_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="broken.pt"):
        load_dcgan_checkpoint(bad)
    with pytest.raises(CheckpointError, match="broken.pt"):
        load_generator(str(bad), device="cpu")
