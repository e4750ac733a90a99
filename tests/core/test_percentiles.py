"""The summary's percentiles (core/metrics.percentiles) without np.percentile, which imports
numpy.ma through np.unique (~7 ms of a simulate run's start-up)."""
import numpy as np

from nanosim.core.metrics import percentiles


def test_percentiles_equal_numpy():
    """np.percentile's floats: sizes 1..59 and larger, ties, the ends 0 and 100."""
    rng = np.random.default_rng(0)
    for n in [*range(1, 60), 999, 1000, 1001, 5985]:
        for v in (rng.lognormal(-3, 2, n), rng.integers(0, 5, n) * 0.1, rng.random(n)):
            qs = (50, 90, 99, 0, 100, *rng.uniform(0, 100, 3).tolist())
            assert percentiles(v, qs) == np.percentile(v, qs).tolist(), n
