"""Arrival processes: deterministic per seed, on target rate / CV over large samples."""
import numpy as np
import pytest

from nanosim.workload.generators import (diurnal_arrivals, gamma_arrivals, onoff_arrivals,
                                         poisson_arrivals, rate_curve_arrivals)


def _rate_cv(t):
    g = np.diff(t)
    return (len(t) - 1) / (t[-1] - t[0]), g.std() / g.mean()


@pytest.mark.parametrize("make", [
    lambda s: poisson_arrivals(3.0, num_requests=1000, seed=s),
    lambda s: gamma_arrivals(3.0, 2.5, num_requests=1000, seed=s),
    lambda s: gamma_arrivals(3.0, 0.3, duration_s=100, seed=s),
    lambda s: rate_curve_arrivals([1, 5, 0, 2], 60.0, seed=s),
    lambda s: diurnal_arrivals(2.0, 3600, period_s=600, seed=s),
    lambda s: onoff_arrivals(10.0, 600, mean_on_s=5, mean_off_s=20, seed=s),
])
def test_deterministic_sorted_and_seeded(make):
    a, b, c = make(7), make(7), make(8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == np.float64 and (np.diff(a) >= 0).all() and a[0] >= 0


def test_poisson_rate_and_cv():
    t = poisson_arrivals(5.0, num_requests=200_000, seed=0)
    assert len(t) == 200_000
    rate, cv = _rate_cv(t)
    assert rate == pytest.approx(5.0, rel=0.01) and cv == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize("cv", [0.25, 1.0, 3.0])
def test_gamma_rate_and_cv(cv):
    t = gamma_arrivals(8.0, cv, num_requests=200_000, seed=1)
    rate, got = _rate_cv(t)
    assert rate == pytest.approx(8.0, rel=0.02) and got == pytest.approx(cv, rel=0.05)


def test_gamma_cv_zero_is_evenly_spaced():
    t = gamma_arrivals(4.0, 0.0, num_requests=5)
    assert np.allclose(np.diff(t), 0.25)


def test_duration_mode():
    t = poisson_arrivals(20.0, duration_s=5000.0, seed=2)
    assert t.max() < 5000.0 and len(t) == pytest.approx(100_000, rel=0.02)
    g = gamma_arrivals(20.0, 2.0, duration_s=5000.0, seed=2)
    assert g.max() < 5000.0 and len(g) == pytest.approx(100_000, rel=0.05)
    with pytest.raises(ValueError):
        poisson_arrivals(1.0, num_requests=3, duration_s=3)
    with pytest.raises(ValueError):
        poisson_arrivals(0.0, num_requests=3)


def test_rate_curve_counts_per_bucket():
    rates = [2.0, 20.0, 0.0, 10.0]
    t = rate_curve_arrivals(rates, 500.0, seed=3)
    counts = np.bincount((t // 500).astype(int), minlength=4)
    for c, r in zip(counts, rates):
        assert abs(c - r * 500) <= 5 * np.sqrt(r * 500) + 1e-9


def test_diurnal_mean_and_swing():
    t = diurnal_arrivals(10.0, 20 * 3600.0, period_s=3600.0, amplitude=0.8, peak_s=0.0, seed=4)
    assert len(t) / (20 * 3600) == pytest.approx(10.0, rel=0.02)
    phase = (t % 3600.0) / 3600.0
    near_peak = ((phase < 0.125) | (phase >= 0.875)).sum()
    near_trough = ((phase >= 0.375) & (phase < 0.625)).sum()
    # mean rate over those quarters: 1 +- 0.8 * sin(pi/4)/(pi/4) = 1 +- 0.72
    assert near_peak / near_trough == pytest.approx(1.72 / 0.28, rel=0.05)


def test_onoff_mean_rate_and_burstiness():
    t = onoff_arrivals(20.0, 100_000.0, mean_on_s=10.0, mean_off_s=30.0, off_rate_rps=1.0,
                       seed=5)
    expect = (20 * 10 + 1 * 30) / 40
    assert len(t) / 100_000 == pytest.approx(expect, rel=0.05)
    counts = np.bincount((t // 10).astype(int))
    assert counts.var() / counts.mean() > 5  # a Poisson process has index of dispersion 1
