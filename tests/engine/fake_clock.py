"""A fake clock for the pacers (``engine.jobs.Pacer``): time passes only while a generator renders.

Tests of "every job yields at least once a second" make a tiny generator slow on this clock instead
of sleeping: ``slow_generator(monkeypatch, DCGANGenerator, 0.2)`` patches ``engine.jobs._clock`` and
the class's ``decode`` (or another method) so that each call advances the clock by 0.2 s per image.
"""

from __future__ import annotations

import engine.jobs


class FakeClock:
    """Time that passes only while the (fake-slow) generator renders: ``per_image`` s per image.
    ``images`` counts what it rendered (tests check the work was done by that count, not by time)."""

    def __init__(self, per_image: float = 0.0) -> None:
        self.now, self.per_image, self.images = 0.0, per_image, 0

    def render(self, n: int) -> None:
        """``n`` images were rendered: the clock advances by their cost."""
        self.images += n
        self.now += self.per_image * n

    def __call__(self) -> float:
        return self.now


def slow_generator(monkeypatch, cls: type, per_image: float, method: str = "decode") -> FakeClock:
    """Make ``cls.method`` (every instance, copies included) cost ``per_image`` s per image of its
    output's (or first argument's) batch on a fake clock that the pacers read; returns the clock."""
    clock = FakeClock(per_image)
    monkeypatch.setattr(engine.jobs, "_clock", clock)
    real = getattr(cls, method)

    def slow(self, x, *args, **kw):
        out = real(self, x, *args, **kw)
        clock.render(x.shape[0])
        return out

    monkeypatch.setattr(cls, method, slow)
    return clock
