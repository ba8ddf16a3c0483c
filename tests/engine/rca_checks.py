"""What a reported RCA must be: an accuracy over the fixed "rca" sample stream (``evaluate_rca``)."""

from __future__ import annotations

import torch

from engine.discovery.reconstructor import TrainConfig
from engine.discovery.shifts import sample_shift_batch, stream_generator


def rca_stream_counts(cfg: TrainConfig, K: int, z_dim: int) -> torch.Tensor:
    """``[K]``: how many of the ``cfg.rca_samples`` evaluation pairs (rank 0) shift direction k."""
    counts = torch.zeros(K, dtype=torch.long)
    n_batches = -(-cfg.rca_samples // cfg.rca_batch)
    for i in range(n_batches):
        n = min(cfg.rca_batch, cfg.rca_samples - i * cfg.rca_batch)
        _, k, _ = sample_shift_batch(stream_generator("rca", cfg.seed, 0, i), n, z_dim, K, cfg.eps_max, cfg.eps_min)
        counts += torch.bincount(k, minlength=K)
    return counts


def assert_rca_is_an_accuracy(rca: float, per_direction, cfg: TrainConfig, K: int, z_dim: int, tol: float = 1e-6):
    """``rca`` is (hits / samples) on the evaluation stream, and the per-direction accuracies are
    (hits_k / count_k) of the same hits: whole numbers of hits, summing to ``rca * samples``.
    ``tol``: how far a per-direction figure may be from a whole number of hits (rounded reports)."""
    counts = rca_stream_counts(cfg, K, z_dim).double()
    per = torch.as_tensor(per_direction, dtype=torch.float64)
    assert per.shape == (K,)
    hits = per * counts
    assert torch.allclose(hits, hits.round(), atol=tol * counts.max().item() + 1e-9), (per, counts)
    whole = rca * cfg.rca_samples
    assert abs(whole - round(whole)) < 1e-9, rca  # a multiple of 1 / samples
    assert round(whole) == int(hits.round().sum()), (rca, per, counts)
