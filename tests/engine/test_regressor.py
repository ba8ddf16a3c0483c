"""The factor regressor: the shipped weights read the factors back from held-out images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.data.procedural import FACTOR_NAMES, N_FACTORS, ProceduralFaces
from engine.data.regressor import (
    BUILTIN_REGRESSOR,
    FactorRegressor,
    RegressorConfig,
    evaluate,
    held_out_set,
    load_regressor,
    predict_factors,
    regressor_payload,
)
from engine.errors import CheckpointError
from engine.jobs import run_job
from engine.training.regressor import RegressorParams, train_regressor

pytestmark = pytest.mark.usefixtures("one_thread")

# measured on 4096 held-out images: every factor R^2 >= 0.995, MAE <= 0.016 (README)
MIN_R2 = 0.98
MAX_MAE = 0.03


def test_shipped_regressor_is_accurate_on_held_out_images():
    assert BUILTIN_REGRESSOR.stat().st_size < 2_000_000
    model = load_regressor()
    scores = evaluate(model, n=512)
    assert list(scores) == list(FACTOR_NAMES)
    for name, s in scores.items():
        assert s["r2"] > MIN_R2, (name, s)
        assert s["mae"] < MAX_MAE, (name, s)


def test_predict_factors_api_and_resolution():
    images, factors = held_out_set(8)
    pred = predict_factors(images)
    assert pred.shape == (8, N_FACTORS) and pred.dtype == torch.float32
    # a 64 px rendering of the same factors reads the same (inputs are resized)
    big, _ = ProceduralFaces(8, seed=1_000_003, resolution=64).batch(np.arange(8))
    assert (predict_factors(big) - pred).abs().max() < 0.05
    assert (pred - factors).abs().mean() < 0.03


def test_bad_regressor_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_regressor(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_regressor(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a GAN Atlas factor regressor"):
        load_regressor(foreign)
    payload = regressor_payload(FactorRegressor(RegressorConfig(widths=(4, 4, 4, 4))))
    payload["factor_names"] = ["a"] * N_FACTORS
    torch.save(payload, foreign)
    with pytest.raises(CheckpointError, match="predicts factors"):
        load_regressor(foreign)


def test_training_job_learns(tmp_path):
    params = RegressorParams(steps=30, batch_size=32, widths=(8, 8, 16, 16), lr=3e-3, eval_every=30, eval_n=64)
    losses = []
    job = train_regressor(params)
    try:
        while True:
            rec = next(job)
            if "loss" in rec.metrics:  # a step's record (others: pieces of the held-out set and R^2)
                losses.append(rec.metrics["loss"])
    except StopIteration as stop:
        model, metrics = stop.value
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
    assert set(metrics["per_factor"]) == set(FACTOR_NAMES)
    torch.save(regressor_payload(model, metrics), tmp_path / "r.pt")
    again = load_regressor(tmp_path / "r.pt")
    x = held_out_set(4)[0]
    assert torch.allclose(predict_factors(x, again), predict_factors(x, model.eval()), atol=0.02)
    assert run_job(train_regressor(RegressorParams(steps=1, batch_size=8, widths=(4, 4, 4, 4), eval_n=16)))
