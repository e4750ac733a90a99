"""The profile cost model's precomputed decode tables (DecodePricer, Grid2D.row_at) and its
median give the same floats, bit for bit, as the general path they replace
(decode_price.uniform_decode_s over Grid2D.at / at_y, np.median)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from nanosim.config import GPUS, MODELS, EngineConfig
from nanosim.core.batch import DECODE_PATHS, STEADY
from nanosim.sim.cost_select import make_cost_model
from nanosim.sim.decode_price import PYTHON_RUN_STEPS, uniform_decode_s
from nanosim.sim.grid import median


@pytest.fixture(scope="module")
def cm():
    return make_cost_model(MODELS["qwen3-8b"], GPUS["h100"], EngineConfig(), "auto")


def _contexts(rng, ys):
    """Contexts on the grid's nodes, just off them, inside cells, and outside the grid."""
    nodes = np.array(ys)
    out = [nodes, np.nextafter(nodes, 0), np.nextafter(nodes, np.inf), nodes[:1] * 0.3, nodes[-1:] * 3,
           rng.uniform(1.0, ys[-1] * 1.5, 300)]
    return np.concatenate(out)


@pytest.mark.parametrize("path", DECODE_PATHS)
def test_scalar_price_equals_the_general_path(cm, path):
    rng = np.random.default_rng(0)
    grid = cm._path_grids[path]
    for b in [1, 2, 3, 8, 17, 64, 100, 256, 512, 1000]:
        g = cm._graph_size(b)
        pr = cm._pricer(path, g)
        for c in _contexts(rng, grid.ys).tolist():
            assert pr.scalar(c) == uniform_decode_s(cm.roofline, grid, g, c), (path, g, c)


def test_run_price_equals_the_general_path(cm):
    """Runs inside one cell (looked up once), across cells, and beyond the grid."""
    rng = np.random.default_rng(1)
    grid, n_cells = cm._decode, 0
    for _ in range(400):
        g = cm._graph_size(int(rng.integers(1, 300)))
        start = float(rng.uniform(1.0, grid.ys[-1] * 1.2))
        k = int(rng.integers(1, 200))
        c = (start * g + np.arange(k) * int(rng.integers(1, g + 1))) / g
        if rng.random() < 0.5:  # as decode_run_s's tail context makes them
            a, w = cm._tail_pair(g)
            longest = np.arange(k, dtype=np.float64) + start * 1.5
            c = np.maximum(c + a * np.maximum(longest - c, 0.0), w * longest)
        got_t, got_in = cm._pricer(STEADY, g).vector(c)
        want_t, want_in = uniform_decode_s(cm.roofline, grid, g, c)
        assert got_t.tobytes() == want_t.tobytes()
        assert got_in == np.count_nonzero(want_in)
        j = np.searchsorted(grid.ys, c, side="right")
        n_cells += len(set(j.tolist())) == 1
    assert 50 < n_cells < 400  # both the one-cell path and the gather ran


def _model():
    return make_cost_model(MODELS["qwen3-8b"], GPUS["h100"], EngineConfig(), "auto")


def _runs(rng, ys, lengths, count: int = 600):
    """(seqs, steps, summed context, longest row's context or 0) of random decode runs: in
    one grid cell, across cells and beyond the grid."""
    for _ in range(count):
        n = int(rng.integers(1, 300))
        k = int(rng.choice(lengths))
        ctx = int(n * rng.uniform(1.0, ys[-1] * 1.2))
        yield n, k, ctx, int(rng.choice([0, ctx // n + int(rng.integers(0, 3000))]))


@pytest.mark.parametrize("path", DECODE_PATHS)
def test_run_list_equals_decode_run_s(path):
    """decode_run_list (a short run in Python floats) gives decode_run_s's floats and
    counters: runs in one cell, across cells, beyond the grid, with and without the longest
    row's context, on every first-step path."""
    rng = np.random.default_rng(4)
    a, b, python = _model(), _model(), 0
    for n, k, ctx, longest in _runs(rng, a._decode.ys, [1, 2, 5, 17, 24, 25, 64, 130]):
        got = a.decode_run_list(n, ctx, k, longest, path)
        want = b.decode_run_s(n, ctx, k, longest, path)
        assert type(got) is list and np.asarray(got).tobytes() == want.tobytes(), (n, ctx, k, longest)
        assert (a.total_steps, a.extrapolated_steps) == (b.total_steps, b.extrapolated_steps)
        g = a._graph_size(n)
        python += k <= PYTHON_RUN_STEPS and a._pricer(STEADY, g).run(ctx, n, k, longest, *(a._tail_pair(g) if longest else (0.0, 0.0))) is not None
    assert 100 < python < 600  # both the Python floats and decode_run_s ran


def test_grid_row_equals_grid_at(cm):
    rng = np.random.default_rng(2)
    for grid in (cm._decode, cm._prefill, cm._decode_rows):
        for x in [*grid.xs, grid.xs[0] / 2, grid.xs[-1] * 2, *rng.uniform(grid.xs[0], grid.xs[-1], 5)]:
            row = grid.row_at(x)
            for y in _contexts(rng, grid.ys).tolist():
                assert row.at(y) == grid.at(x, y)


def test_median_equals_numpy():
    rng = np.random.default_rng(3)
    for n in range(1, 12):
        for _ in range(200):
            v = (rng.lognormal(-6, 3, n) * rng.choice([1, 1e-3, 1e3], n)).tolist()
            assert median(v) == float(np.median(v))
    assert median([2, 1, 4, 3]) == 2.5 and np.isnan(median([1.0, float("nan")]))


def test_fitting_a_profile_does_not_import_numpy_ma():
    code = ("import sys; from nanosim.config import *; from nanosim.sim.cost_select import make_cost_model;"
            "make_cost_model(MODELS['qwen3-8b'], GPUS['h100'], EngineConfig(), 'auto');"
            "print('numpy.ma' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("path", DECODE_PATHS)
def test_a_cut_run_is_the_whole_runs_prefix(path):
    """decode_run_list with jitter factors and an arrival at until_s: the whole run's floats
    times the factors (one multiplication each), stopped after the first step that starts at
    or after until_s (starts summed left to right from start_s), and the whole run's counters
    (what is not priced is still counted, as pricing it all did)."""
    rng = np.random.default_rng(5)
    a, b, cut_long = _model(), _model(), 0
    for n, k, ctx, longest in _runs(rng, a._decode.ys, [1, 2, 5, 24, 25, 64, 130, 256]):
        factors = rng.uniform(0.9, 1.1, k).tolist()
        whole = [x * f for x, f in zip(b.decode_run_s(n, ctx, k, longest, path).tolist(), factors)]
        start = float(rng.uniform(0, 100))
        until = start + float(rng.uniform(0, 1.2)) * sum(whole)
        got = a.decode_run_list(n, ctx, k, longest, path, factors, start, until)
        t, i = start, 0
        while i < k - 1 and t < until:  # the first step starting at or after until: i
            t += whole[i]
            i += 1
        assert type(got) is list and got == whole[:len(got)] and len(got) in (i + 1, k), (n, ctx, k, longest)
        assert (a.total_steps, a.extrapolated_steps) == (b.total_steps, b.extrapolated_steps)
        cut_long += k > PYTHON_RUN_STEPS and len(got) < k
    assert cut_long > 50  # long runs were cut short, not priced whole
