"""Running commands in tests the same way: on the CPU, one thread, quiet, job checkpoints in the test's folder."""

from __future__ import annotations

from cli.main import main


def discover(model, tmp_path, *extra: str) -> int:
    """``main.py discover --model MODEL ...extra``; returns the exit code."""
    args = ["discover", "--model", str(model), "--device", "cpu", "--threads", "1", "--quiet"]
    return main([*args, "--checkpoint-dir", str(tmp_path / "jobs"), *extra])
