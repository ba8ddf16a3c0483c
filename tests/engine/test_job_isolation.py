"""Jobs run on worker threads beside the editor's preview, which renders from the same generator:
no job may change that generator (its ``requires_grad`` flags, its ``.grad``, its weights)."""

from __future__ import annotations

import threading

import torch

from engine.discovery import latent_recon
from engine.discovery.hessian import LayerHessian
from engine.distances import load_distance
from engine.jobs import run_job
from engine.render import render_batch, to_uint8


def _state(gen):
    return tuple(p.requires_grad for p in gen.parameters()), [p.detach().clone() for p in gen.parameters()]


class PreviewThread(threading.Thread):
    """Renders as the preview does, and records every set of flags it finds on the generator."""

    def __init__(self, gen) -> None:
        super().__init__(daemon=True)
        self.gen, self.stop, self.flags, self.images = gen, threading.Event(), set(), []
        self.z = gen.seed_latents([0, 1])

    def run(self) -> None:
        while not self.stop.is_set():
            self.flags.add(tuple(p.requires_grad for p in self.gen.parameters()))
            with torch.no_grad():
                self.images.append(to_uint8(render_batch(self.gen, self.z)))


def _beside_preview(gen, job) -> PreviewThread:
    preview = PreviewThread(gen)
    preview.start()
    try:
        job()
    finally:
        preview.stop.set()
        preview.join()
    return preview


def test_hessian_products_leave_the_shared_generator_alone(tiny_dcgan):
    gen = tiny_dcgan
    flags, weights = _state(gen)
    assert all(flags)  # as loaded: nn.Module defaults

    def job():
        H = LayerHessian(gen, "main.3", load_distance("pixel"), gen.sample_latents(4, seed=0))
        V = torch.randn(gen.layer_weight("main.3").numel(), 3, generator=torch.Generator().manual_seed(0))
        HV = H.matvec(V)
        assert HV.shape == V.shape and torch.isfinite(HV).all() and HV.abs().sum() > 0
        H.gradient(torch.zeros_like(gen.layer_weight("main.3")))

    preview = _beside_preview(gen, job)
    assert preview.flags == {flags}
    assert _state(gen)[0] == flags
    assert all(p.grad is None for p in gen.parameters())
    assert all(torch.equal(a, b) for a, b in zip(weights, _state(gen)[1], strict=True))
    assert all((im == preview.images[0]).all() for im in preview.images)


def test_reconstructor_training_leaves_the_shared_generator_alone(tiny_dcgan):
    gen = tiny_dcgan
    flags, weights = _state(gen)
    params = latent_recon.Params(k=4, steps=6, batch_size=4, rca_every=3, rca_samples=8, checkpoint_every=3)
    result = {}

    def job():
        result["set"] = run_job(latent_recon.run(gen, params))

    preview = _beside_preview(gen, job)
    assert len(result["set"]) == 4
    assert preview.flags == {flags}
    assert all(p.grad is None for p in gen.parameters())
    assert all(torch.equal(a, b) for a, b in zip(weights, _state(gen)[1], strict=True))


def test_a_detached_generator_shares_the_weights_and_renders_the_same(tiny_dcgan):
    view = tiny_dcgan.detached()
    for p, q in zip(tiny_dcgan.parameters(), view.parameters(), strict=True):
        assert q.data_ptr() == p.data_ptr() and not q.requires_grad and p.requires_grad
    z = tiny_dcgan.seed_latents([3])
    with torch.no_grad():
        torch.testing.assert_close(view(z), tiny_dcgan(z), rtol=0, atol=0)
    with torch.no_grad():  # an in-place change of the shared weights shows in the view: no copy
        tiny_dcgan.layer_weight("main.3").mul_(2)
        torch.testing.assert_close(view(z), tiny_dcgan(z), rtol=0, atol=0)
