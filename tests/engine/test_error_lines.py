"""Errors reach the user as one line, in the editor as on the command line (issue 11): loaders that
wrap a library's failure pass its text through ``engine.errors.describe_exception``, so no terminal
codes, C++ stack traces or torch's advice to load with ``weights_only=False`` get through."""

from __future__ import annotations

import pytest
import torch

from engine.errors import AtlasError

# what torch can put in an exception: bold terminal codes, a refusal with its unsafe advice, C++ frames
NASTY = (
    "Error(s) in loading state_dict:\n\t\x1b[1msize mismatch\x1b[0m for main.0.weight\n"
    "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely "
    "succeed, but it can result in arbitrary code execution. Check the documentation of torch.load: "
    "https://pytorch.org/docs/stable/generated/torch.load.html.\n"
    "Exception raised from check at /pytorch/c10/core/Foo.cpp:12 (most recent call first):\n"
    "frame #0: c10::Error::Error() + 0x1a\n"
)


def assert_one_clean_line(text: str) -> None:
    assert "\n" not in text and "\x1b" not in text, text
    assert "Exception raised from" not in text and "frame #" not in text, text
    assert "weights_only" not in text and "False" not in text, text


def _raise(*_a, **_k):
    raise RuntimeError(NASTY)


def test_a_dcgan_whose_weights_do_not_fit_says_so_in_one_line(tmp_path, monkeypatch):
    import engine.models.dcgan as dcgan
    from engine.checkpoints.torchfile import StateMismatch
    from engine.models.dcgan import load_dcgan_checkpoint
    from tests.engine.tiny_generators import save_tiny_dcgan

    def mismatch(*_a, **_k):
        raise StateMismatch(NASTY)

    path = save_tiny_dcgan(tmp_path / "g.pt", nz=8)
    monkeypatch.setattr(dcgan, "load_into", mismatch)
    with pytest.raises(AtlasError) as err:
        load_dcgan_checkpoint(path)
    assert_one_clean_line(str(err.value))
    assert "size mismatch for main.0.weight" in str(err.value)


def test_the_regressor_and_a_training_checkpoint_say_so_in_one_line(tmp_path, monkeypatch):
    from engine.data.regressor import BUILTIN_REGRESSOR, FactorRegressor, load_regressor
    from engine.models.stylegan2 import StyleGAN2Generator
    from engine.training.checkpoint import atomic_save
    from engine.training.stylegan2 import TrainConfig, build_state, load_state, state_payload

    cfg = TrainConfig.make(
        resolution=16, z_dim=8, w_dim=8, mapping_layers=1, batch_size=2, mbstd_group=2, kimg=0.002,
        g_channels={4: 8, 8: 8, 16: 8}, d_channels={4: 8, 8: 8, 16: 8}, sample_grid=1,
    )  # fmt: skip
    atomic_save(state_payload(build_state(cfg, torch.device("cpu"))), tmp_path / "run" / "checkpoint.pt")
    monkeypatch.setattr(FactorRegressor, "load_state_dict", _raise)
    monkeypatch.setattr(StyleGAN2Generator, "load_state_dict", _raise)
    for load in (
        lambda: load_regressor(BUILTIN_REGRESSOR),
        lambda: load_state(tmp_path / "run" / "checkpoint.pt", "cpu"),
    ):
        with pytest.raises(AtlasError) as err:
            load()
        assert_one_clean_line(str(err.value))


def test_damaged_sets_and_latents_say_so_in_one_line(tmp_path, monkeypatch):
    import safetensors.torch

    from engine.directions import DirectionSet, model_ref
    from engine.latents import Latent, load_latent, save_latent
    from tests.engine.tiny_generators import tiny_dcgan

    gen = tiny_dcgan(nz=8)
    dset = DirectionSet.latent("test", model_ref(gen), torch.randn(2, 8), range_=(-1.0, 1.0))
    dset.save(tmp_path / "s.json")
    save_latent(Latent(code=torch.randn(1, 8), space="z", model=model_ref(gen)), tmp_path / "a.latent")
    monkeypatch.setattr(safetensors.torch, "load", _raise)
    for load in (lambda: DirectionSet.load(tmp_path / "s.json"), lambda: load_latent(tmp_path / "a.latent")):
        with pytest.raises(AtlasError) as err:
            load()
        assert_one_clean_line(str(err.value))
