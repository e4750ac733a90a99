"""Arrival processes: sorted arrival times in seconds from the start of the process (t = 0).

Every function is deterministic for its ``seed`` (numpy PCG64) and returns a float64 array.
Give either ``num_requests`` (exactly that many arrivals) or ``duration_s`` (every arrival in
[0, duration_s)) where both are offered. Turning times into a trace (``synthetic.generate``)
shifts them so that the first request arrives at 0.0.

* ``poisson_arrivals``: exponential gaps, rate ``rate_rps`` (CV of gaps = 1).
* ``gamma_arrivals``: Gamma gaps with mean 1/rate and coefficient of variation ``cv``
  (shape 1/cv^2): cv > 1 bursty, cv = 1 Poisson, cv < 1 smoother, cv = 0 evenly spaced.
* ``rate_curve_arrivals``: Poisson with a piecewise-constant rate (one value per bucket),
  e.g. a measured per-minute rate curve.
* ``diurnal_arrivals``: Poisson with rate
  mean * (1 + amplitude * cos(2 pi (t - peak_s) / period_s)), by thinning.
* ``onoff_arrivals``: on/off bursts (a two-state Markov-modulated Poisson process): "on"
  periods with mean length ``mean_on_s`` at ``on_rate_rps`` alternate with "off" periods of
  mean ``mean_off_s`` at ``off_rate_rps``; period lengths are exponential; it starts "on".
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream])


def _one_of(num_requests: int | None, duration_s: float | None) -> None:
    if (num_requests is None) == (duration_s is None):
        raise ValueError("give exactly one of num_requests and duration_s")
    if num_requests is not None and num_requests < 1:
        raise ValueError("num_requests must be >= 1")
    if duration_s is not None and not duration_s > 0:
        raise ValueError("duration_s must be > 0")


def _renewal(gaps_fn, rate_rps: float, num_requests: int | None, duration_s: float | None,
             ) -> np.ndarray:
    """Cumulative sums of i.i.d. gaps, to n arrivals or up to duration_s."""
    if num_requests is not None:
        return np.cumsum(gaps_fn(num_requests))
    chunks, t_end = [], 0.0
    while t_end < duration_s:
        n = int(rate_rps * (duration_s - t_end) * 1.1) + 16
        t = t_end + np.cumsum(gaps_fn(n))
        chunks.append(t)
        t_end = float(t[-1])
    t = np.concatenate(chunks)
    return t[t < duration_s]


def poisson_arrivals(rate_rps: float, *, num_requests: int | None = None,
                     duration_s: float | None = None, seed: int = 0) -> np.ndarray:
    """Homogeneous Poisson process at ``rate_rps`` requests/s."""
    if not rate_rps > 0:
        raise ValueError("rate_rps must be > 0")
    _one_of(num_requests, duration_s)
    rng = _rng(seed, 1)
    return _renewal(lambda n: rng.exponential(1.0 / rate_rps, n), rate_rps, num_requests,
                    duration_s)


def gamma_arrivals(rate_rps: float, cv: float, *, num_requests: int | None = None,
                   duration_s: float | None = None, seed: int = 0) -> np.ndarray:
    """Renewal process with Gamma gaps: mean gap 1/rate_rps, CV of gaps ``cv`` (burstiness)."""
    if not rate_rps > 0:
        raise ValueError("rate_rps must be > 0")
    if not cv >= 0:
        raise ValueError("cv must be >= 0")
    _one_of(num_requests, duration_s)
    rng = _rng(seed, 2)
    mean = 1.0 / rate_rps
    if cv == 0:
        gaps = lambda n: np.full(n, mean)  # noqa: E731
    else:
        shape = 1.0 / cv**2
        gaps = lambda n: rng.gamma(shape, mean / shape, n)  # noqa: E731
    return _renewal(gaps, rate_rps, num_requests, duration_s)


def rate_curve_arrivals(rates_rps: Sequence[float], bucket_s: float, *, seed: int = 0,
                        ) -> np.ndarray:
    """Poisson arrivals whose rate is ``rates_rps[k]`` during [k*bucket_s, (k+1)*bucket_s).

    Exact: a Poisson count per bucket, placed uniformly inside it. Total span
    len(rates_rps) * bucket_s.
    """
    rates = np.asarray(rates_rps, dtype=np.float64)
    if rates.ndim != 1 or len(rates) == 0 or not np.isfinite(rates).all() or (rates < 0).any():
        raise ValueError("rates_rps must be a non-empty sequence of finite rates >= 0")
    if not bucket_s > 0:
        raise ValueError("bucket_s must be > 0")
    rng = _rng(seed, 3)
    counts = rng.poisson(rates * bucket_s)
    starts = np.repeat(np.arange(len(rates)) * bucket_s, counts)
    return np.sort(starts + rng.uniform(0.0, bucket_s, counts.sum()))


def diurnal_arrivals(mean_rate_rps: float, duration_s: float, *, period_s: float = 86400.0,
                     amplitude: float = 0.5, peak_s: float = 0.0, seed: int = 0) -> np.ndarray:
    """Poisson arrivals with a sinusoidal rate: mean_rate * (1 + amplitude * cos(phase)).

    ``amplitude`` in [0, 1] (peak/trough = (1+a)/(1-a)); the rate peaks at ``peak_s``
    (+ whole periods). Lewis-Shedler thinning of a Poisson process at the peak rate.
    """
    if not mean_rate_rps > 0 or not duration_s > 0 or not period_s > 0:
        raise ValueError("mean_rate_rps, duration_s and period_s must be > 0")
    if not 0 <= amplitude <= 1:
        raise ValueError("amplitude must be in [0, 1]")
    peak = mean_rate_rps * (1 + amplitude)
    rng = _rng(seed, 4)
    t = _renewal(lambda n: rng.exponential(1.0 / peak, n), peak, None, duration_s)
    rate = mean_rate_rps * (1 + amplitude * np.cos(2 * np.pi * (t - peak_s) / period_s))
    return t[rng.uniform(0.0, peak, len(t)) < rate]


def onoff_arrivals(on_rate_rps: float, duration_s: float, *, mean_on_s: float,
                   mean_off_s: float, off_rate_rps: float = 0.0, seed: int = 0) -> np.ndarray:
    """On/off bursts; long-run mean rate = (on*mean_on + off*mean_off) / (mean_on + mean_off)."""
    if not on_rate_rps > 0 or not duration_s > 0 or off_rate_rps < 0:
        raise ValueError("need on_rate_rps > 0, duration_s > 0, off_rate_rps >= 0")
    if not mean_on_s > 0 or not mean_off_s > 0:
        raise ValueError("mean_on_s and mean_off_s must be > 0")
    rng = _rng(seed, 5)
    # alternate period lengths until duration_s is covered
    n = int(2 * duration_s / (mean_on_s + mean_off_s)) + 4
    while True:
        lengths = rng.exponential(1.0, 2 * n) * np.tile([mean_on_s, mean_off_s], n)
        ends = np.cumsum(lengths)
        if ends[-1] >= duration_s:
            break
        n *= 2
    starts = ends - lengths
    rates = np.tile([on_rate_rps, off_rate_rps], n)
    counts = rng.poisson(rates * lengths)
    t = np.repeat(starts, counts) + rng.uniform(0.0, 1.0, counts.sum()) * np.repeat(lengths,
                                                                                     counts)
    t = np.sort(t)
    return t[t < duration_s]
