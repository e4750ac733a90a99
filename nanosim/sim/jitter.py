"""Step-time jitter: real steps of one shape do not all take the same time.

A profile point's duration is the median of many timed runs, and the cost model predicts
that median. Latencies, though, add steps up: a TPOT is the mean of a request's steps, and a
few slow steps (host hiccups on a shared machine, 2-4x the median) move means and tails, so
a simulation of medians runs fast (our H100 replays: decode steps' mean 1.03-1.04x their
median). The profiler therefore also records the distribution of run / median over all its
timed runs (``Profile.step_jitter``: quantiles at evenly spaced probabilities), and a
simulation draws one factor per step from it (inverse CDF, a seeded generator).

Per-step predictions (validate's step errors) stay the deterministic medians. With jitter a
fast-forwarded run and step-by-step simulation agree in distribution, not step for step
(a run the engine prices and then shortens has drawn factors for steps it never takes).
"""
from __future__ import annotations

import numpy as np


class StepJitter:
    """Multiplicative factors drawn from quantiles q at probabilities linspace(0, 1, len(q))."""

    def __init__(self, quantiles, seed: int | list[int] = 0) -> None:
        q = np.asarray(quantiles, dtype=np.float64)
        if q.ndim != 1 or len(q) < 2 or not np.all(np.isfinite(q)) or q[0] <= 0 or np.any(np.diff(q) < 0):
            raise ValueError(f"step jitter needs >= 2 positive non-decreasing quantiles, got {quantiles!r}")
        self.quantiles = q
        self.probs = np.linspace(0.0, 1.0, len(q))
        self.rng = np.random.default_rng(seed)
        self._buf: list[float] = []  # single draws, made 4096 at a time (a step costs ~30 us)

    @property
    def mean(self) -> float:
        """The factors' mean (piecewise-linear inverse CDF: trapezoids between quantiles)."""
        return float(np.mean((self.quantiles[1:] + self.quantiles[:-1]) / 2))

    def quantile(self, p: float) -> float:
        """The factor at probability p (0..1)."""
        return float(np.interp(p, self.probs, self.quantiles))

    def draw(self, n: int | None = None):
        """One factor (a float), or an array of n."""
        if n is not None:
            return np.interp(self.rng.random(n), self.probs, self.quantiles)
        if not self._buf:
            self._buf = np.interp(self.rng.random(4096), self.probs, self.quantiles)[::-1].tolist()
        return self._buf.pop()

    @classmethod
    def of(cls, cost_model, seed: int | list[int] = 0) -> "StepJitter | None":
        """The jitter of a profile-driven cost model whose profile recorded one, else None."""
        profile = getattr(cost_model, "profile", None)
        quantiles = getattr(profile, "step_jitter", ())
        return cls(quantiles, seed) if len(quantiles) else None
