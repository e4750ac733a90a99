"""Nonnegative least squares and the roofline coefficient fit."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from nanosim.config import GPUS, MODELS
from nanosim.core.batch import StepShape
from nanosim.sim.costmodel import RooflineCostModel
from nanosim.sim.fit import fit_roofline, nnls


def brute_force_nnls(A, b):
    """Best unconstrained least squares over every support whose solution is >= 0."""
    n = A.shape[1]
    best, best_r = np.zeros(n), np.linalg.norm(b)
    for k in range(1, n + 1):
        for S in itertools.combinations(range(n), k):
            z = np.linalg.lstsq(A[:, S], b, rcond=None)[0]
            if (z >= 0).all():
                x = np.zeros(n)
                x[list(S)] = z
                r = np.linalg.norm(A @ x - b)
                if r < best_r:
                    best, best_r = x, r
    return best, best_r


def test_nnls_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(300):
        m, n = int(rng.integers(1, 12)), int(rng.integers(1, 6))
        A = rng.normal(size=(m, n)) * 10.0 ** rng.uniform(-2, 2, size=n)
        b = rng.normal(size=m)
        x = nnls(A, b)
        assert (x >= 0).all()
        _, r_best = brute_force_nnls(A, b)
        assert np.linalg.norm(A @ x - b) <= r_best * (1 + 1e-9) + 1e-9 * np.linalg.norm(b)


def test_nnls_against_scipy_when_available():
    so = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(1)
    for _ in range(200):
        m, n = int(rng.integers(5, 40)), int(rng.integers(1, 9))
        A, b = rng.normal(size=(m, n)), rng.normal(size=m)
        ref = so.nnls(A, b)[0]
        assert np.linalg.norm(A @ nnls(A, b) - b) == pytest.approx(np.linalg.norm(A @ ref - b),
                                                                   rel=1e-9, abs=1e-12)


def shapes_grid():
    out = [StepShape(num_decode_seqs=b, decode_context_tokens=b * c)
           for b in (1, 4, 16, 64, 256) for c in (128, 1024, 8192)]
    out += [StepShape(num_prefill_seqs=1, prefill_tokens=q, prefill_attn_pairs=q * (p + (q + 1) / 2),
                      prefill_kv_tokens=p + q)
            for q in (32, 256, 2048, 8192) for p in (0, 4096)]
    return out


def test_fit_recovers_coefficients_of_a_roofline_gpu():
    """Data made by a roofline with other efficiencies and overheads is fitted exactly,
    and the identifiable coefficients come back; unidentifiable ones (link at tp=1, swap)
    stay at the prior."""
    m, g = MODELS["qwen3-0.6b"], GPUS["h100"]
    truth = RooflineCostModel(m, g, hbm_efficiency=0.8, gemm_efficiency=0.6, attn_efficiency=0.35,
                              step_overhead_s=1.2e-3, per_seq_overhead_s=3e-6)
    prior = RooflineCostModel(m, g)
    shapes = shapes_grid()
    y = [truth.step_time_s(s) for s in shapes]
    fit = fit_roofline(prior, shapes, y, ridge=1e-8)
    assert fit.rel_rms < 1e-4
    fm = fit.model
    assert fm.hbm_efficiency == pytest.approx(0.8, rel=1e-3)
    assert fm.gemm_efficiency == pytest.approx(0.6, rel=1e-3)
    assert fm.attn_efficiency == pytest.approx(0.35, rel=1e-2)
    assert fm.step_overhead_s == pytest.approx(1.2e-3, rel=1e-3)
    assert fm.per_seq_overhead_s == pytest.approx(3e-6, rel=2e-2)
    assert fm.link_efficiency == pytest.approx(prior.link_efficiency, rel=1e-6)
    assert fm.host_link_bytes_per_s == pytest.approx(prior.host_link_bytes_per_s, rel=1e-6)


def test_fit_tp2_learns_link_terms():
    m, g = MODELS["qwen3-8b"], GPUS["h100"]
    truth = RooflineCostModel(m, g, tp=2, link_efficiency=0.5, link_latency_s=9e-6)
    prior = RooflineCostModel(m, g, tp=2)
    shapes = shapes_grid()
    fit = fit_roofline(prior, shapes, [truth.step_time_s(s) for s in shapes], ridge=1e-8)
    assert fit.rel_rms < 1e-4
    fm = fit.model
    assert fm.link_efficiency == pytest.approx(0.5, rel=1e-3)
    # Hop latency is a constant per step at fixed tp, so only overhead + hops x latency is
    # identifiable (and all a prediction at this tp needs).
    assert (fm.step_overhead_s + fm._comm_hops * fm.link_latency_s
            == pytest.approx(truth.step_overhead_s + truth._comm_hops * 9e-6, rel=1e-4))


def test_fit_input_errors():
    prior = RooflineCostModel(MODELS["qwen3-0.6b"], GPUS["h100"])
    s = shapes_grid()[:2]
    with pytest.raises(ValueError):
        fit_roofline(prior, s, [1.0])
    with pytest.raises(ValueError):
        fit_roofline(prior, s, [1.0, -1.0])
