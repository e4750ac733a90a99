"""StepJitter draws ahead in blocks; interleaved single draws (taken 4096 at a time) and runs
of n must hand out the factors that drawing each request's at once gives."""
import random

import numpy as np

from nanosim.sim.jitter import StepJitter


class _AtOnce:
    """The reference: each request drawn from the generator when asked."""

    def __init__(self, q, seed):
        self.q = np.asarray(q, dtype=np.float64)
        self.p = np.linspace(0.0, 1.0, len(q))
        self.rng = np.random.default_rng(seed)
        self.buf = []

    def draw(self, n=None):
        if n is not None:
            return np.interp(self.rng.random(n), self.p, self.q)
        if not self.buf:
            self.buf = np.interp(self.rng.random(4096), self.p, self.q)[::-1].tolist()
        return self.buf.pop()


def test_interleaved_draws_equal_drawing_at_once():
    q = [0.9, 0.97, 1.0, 1.02, 1.1, 1.6, 3.0]
    rng = random.Random(1)
    for seed in (0, [3, 1]):
        j, ref = StepJitter(q, seed), _AtOnce(q, seed)
        for _ in range(3000):
            r = rng.random()
            if r < 0.6:
                assert j.draw() == ref.draw()
            elif r < 0.8:
                n = rng.choice((1, 2, 7, 64, 300, 5000, 20000))
                assert j.draw_list(n) == ref.draw(n).tolist()
            else:
                n = rng.randint(1, 100)
                got = j.draw(n)
                assert got.dtype == np.float64 and np.array_equal(got, ref.draw(n))
