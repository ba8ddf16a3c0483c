"""Running commands in tests the same way: on the CPU, one thread, quiet, job checkpoints in the test's folder."""

from __future__ import annotations

from cli.main import main


def discover(model, tmp_path, *extra: str) -> int:
    """``main.py discover --model MODEL ...extra``; returns the exit code."""
    args = ["discover", "--model", str(model), "--device", "cpu", "--threads", "1", "--quiet"]
    return main([*args, "--checkpoint-dir", str(tmp_path / "jobs"), *extra])


# discovery on one class of a class-conditional model: each method, small settings
CLASS_METHODS = [
    ("sefa", []),
    ("ganspace", ["--set", "n_samples=400", "--set", "batch_size=100"]),
    ("latent-recon", ["--steps", "10", "--set", "rca_every=10", "--set", "rca_samples=32", "--set", "batch_size=8"]),
    ("param-svd", []),
]


def check_discover_on_a_class(model, cls: str, others: str, tmp_path, method: str, extra: list[str]):
    """``discover --class cls`` records the class in the set; ``render --directions`` of that set is
    on the class by default, equal to ``--class cls`` and unlike ``--class others``. Returns the set
    and the default render (``[rows, C, H, W]``: directions 0-1 x their 7 shifts x seeds 0, 1)."""
    import numpy as np

    from engine.directions import DirectionSet

    out = tmp_path / f"{method}.json"
    assert discover(model, tmp_path, "--class", cls, "--method", method, "--k", "4", *extra, "--out", str(out)) == 0
    dset = DirectionSet.load(out)
    assert dset.classes == [int(c) for c in cls.split(",")] and len(dset) == 4
    grid = ["render", "--model", str(model), "--directions", str(out), "--index", "0-1", "--seeds", "0,1"]
    assert main([*grid, "--out", str(tmp_path / "default.npy")]) == 0  # on the set's class by default
    assert main([*grid, "--class", cls, "--out", str(tmp_path / "same.npy")]) == 0
    assert main([*grid, "--class", others, "--out", str(tmp_path / "other.npy")]) == 0
    default, same, other = (np.load(tmp_path / f"{n}.npy") for n in ("default", "same", "other"))
    assert np.array_equal(default, same) and np.abs(default - other).max() > 1e-3
    return dset, default
