"""The shipped procedural StyleGAN2: a built-in with w / w+, whose samples show the eight factors."""

from __future__ import annotations

import torch

from engine.data.procedural import FACTORS
from engine.data.regressor import predict_factors
from engine.models import builtin_models, load_generator


def test_builtin_procedural_stylegan2_shows_the_factors():
    assert "procedural-stylegan2-32" in {m.name for m in builtin_models()}
    gen = load_generator("procedural-stylegan2-32", device="cpu")
    assert gen.spaces == ("z", "w", "w+") and gen.resolution == 32 and gen.default_edit_layer
    with torch.no_grad():
        z = gen.seed_latents(range(256))
        x = gen(z)
        truncated = gen.decode(gen.encode(z, "w", psi=0.5), "w")
    pred = predict_factors(x)
    std = dict(zip([f.name for f in FACTORS], pred.std(0).tolist()))
    # uniform factors have std 0.289: position and both hues are covered fully; every factor varies
    for name in ("pos_x", "pos_y", "face_hue", "bg_hue"):
        assert std[name] > 0.2, std
    assert min(std.values()) > 0.05, std
    # truncation pulls samples towards the average face
    assert predict_factors(truncated).std(0).mean() < pred.std(0).mean()
