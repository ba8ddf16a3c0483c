"""One check shared by the tests that run the four parameter-space methods on a given layer."""

from __future__ import annotations

import numpy as np
import torch

from engine.discovery import get_method
from engine.jobs import run_job
from engine.render import materialize, render_batch


def check_param_methods_on_layer(
    gen,
    layer: str,
    *,
    steps: int,
    batch_size: int,
    rca_samples: int,
    spectrum: tuple[int, int],
    hybrid: tuple[int, int],
) -> None:
    """param-svd, param-opt, param-spectrum and param-hybrid (K = 3, pixel distance, tiny budgets)
    each find 3 directions on ``layer`` whose deltas have its weight's shape, and a shift of 0.2 along
    the first changes the rendered image. ``spectrum`` / ``hybrid``: (Hessian samples, eigensolver
    steps) of param-spectrum and of param-hybrid's basis."""
    small = {"k": 3, "layer": layer, "steps": steps, "batch_size": batch_size}
    small.update(rca_samples=rca_samples, rca_every=2)
    sets = {
        "param-svd": get_method("param-svd").make_params(k=3, layer=layer),
        "param-opt": get_method("param-opt").make_params(**small),
        "param-spectrum": get_method("param-spectrum").make_params(
            k=3, layer=layer, distance="pixel", samples=spectrum[0], steps=spectrum[1]
        ),
        "param-hybrid": get_method("param-hybrid").make_params(
            basis_k=4, distance="pixel", samples=hybrid[0], spectrum_steps=hybrid[1], **small
        ),
    }
    z = gen.seed_latents([0])
    for name, params in sets.items():
        dset = run_job(get_method(name).run(gen, params))
        assert len(dset.directions) == 3 and dset.directions[0].layer == layer, name
        d = materialize(dset, 0)
        assert tuple(d.delta.shape) == tuple(gen.layer_weight(layer).shape)
        with torch.no_grad():
            x = render_batch(gen, z.repeat(2, 1), [[(d, 0.0)], [(d, 0.2)]])
        assert np.isfinite(x.numpy()).all() and float((x[0] - x[1]).abs().max()) > 1e-4, name
