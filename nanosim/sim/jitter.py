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

_AHEAD = 16384  # factors drawn ahead at a time (~0.2 ms)


class StepJitter:
    """Multiplicative factors drawn from quantiles q at probabilities linspace(0, 1, len(q))."""

    def __init__(self, quantiles, seed: int | list[int] = 0) -> None:
        q = np.asarray(quantiles, dtype=np.float64)
        if q.ndim != 1 or len(q) < 2 or not np.all(np.isfinite(q)) or q[0] <= 0 or np.any(np.diff(q) < 0):
            raise ValueError(f"step jitter needs >= 2 positive non-decreasing quantiles, got {quantiles!r}")
        self.quantiles = q
        self.probs = np.linspace(0.0, 1.0, len(q))
        self.rng = np.random.default_rng(seed)
        self._buf: list[float] = []  # single draws, taken 4096 at a time (a step costs ~30 us)
        # factors drawn ahead, in the generator's order: the next to hand out is _ahead[_pos].
        # rng.random(a) then rng.random(b) give the values of rng.random(a + b), and np.interp
        # maps each value alone, so drawing ahead in blocks hands out the same factors, in the
        # same order, as drawing each request's at once (runs ask for a few to a few hundred)
        self._ahead: list[float] = []
        self._pos = 0

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
            return np.array(self.draw_list(n), dtype=np.float64)
        if not self._buf:
            buf = self.draw_list(4096)
            buf.reverse()  # popped from the end
            self._buf = buf
        return self._buf.pop()

    def draw_list(self, n: int) -> list[float]:
        """The next n factors, as a list of floats (a decode run's, one per step)."""
        ahead, pos = self._ahead, self._pos
        if pos + n > len(ahead):
            rest = ahead[pos:]
            more = max(n - len(rest), _AHEAD)
            ahead = self._ahead = rest + np.interp(self.rng.random(more), self.probs,
                                                   self.quantiles).tolist()
            pos = 0
        self._pos = pos + n
        return ahead[pos:pos + n]

    @classmethod
    def of(cls, cost_model, seed: int | list[int] = 0) -> "StepJitter | None":
        """The jitter of a profile-driven cost model whose profile recorded one, else None."""
        profile = getattr(cost_model, "profile", None)
        quantiles = getattr(profile, "step_jitter", ())
        return cls(quantiles, seed) if len(quantiles) else None
