"""Ground-truth score and regressor features with the shipped procedural factor regressor.

The generator here is the procedural renderer itself (factors = Phi(z)), so the right answers
are known: latent axis f moves factor f alone.
"""

import numpy as np
import pytest
import torch

from engine.analysis import realism, score  # noqa: E402
from engine.analysis.factors import procedural_factors  # noqa: E402
from engine.data.procedural import FACTOR_NAMES  # noqa: E402
from engine.jobs import run_job  # noqa: E402
from tests.engine.analysis_toys import ProceduralRenderer, latent_set  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def factors():
    return procedural_factors()


def test_axis_directions_of_the_renderer_are_pure_and_cover_every_factor(factors):
    gen = ProceduralRenderer()
    F = len(FACTOR_NAMES)
    mixed = np.zeros(F)
    mixed[[0, 4]] = 1 / np.sqrt(2)  # pos_x and face_hue together
    dset = latent_set(gen, np.vstack([np.eye(F), mixed]), range_=(-1.5, 1.5))
    r = run_job(score.run(gen, dset, None, score.Params(seeds=16, steps=5), factors=factors))
    assert list(r.main_factor[:F]) == list(range(F))
    assert r.purity[:F].min() > 0.85, dict(zip(FACTOR_NAMES, r.purity[:F].round(3)))
    assert r.coverage == F and all(r.clean[:F])
    assert r.purity[F] < 0.6 and not r.clean[F]
    assert set(np.argsort(r.effect[F])[-2:]) == {0, 4}


def test_regressor_feature_distance_grows_with_the_shift(factors):
    gen = ProceduralRenderer()
    dset = latent_set(gen, [np.eye(len(FACTOR_NAMES))[4]], range_=(-2.0, 2.0))
    r = run_job(
        realism.run(
            gen,
            dset,
            None,
            realism.Params(samples=200, reference=200, steps=5, features="regressor", batch_size=100),
            factors=factors,
        )
    )
    d = r.distance[0]
    assert "penultimate" in r.features_label and r.features == "regressor"
    assert d[2] < d[1] < d[0] and d[2] < d[3] < d[4]
    feats = factors.features(torch.zeros(2, 3, 32, 32))
    assert feats.shape == (2, 256)
