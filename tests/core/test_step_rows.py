"""The steps table kept as row tuples and decode-run records (core/step_rows.py) builds the
same columns as appending every step's values to per-column lists."""
import random

import numpy as np
import pytest

from nanosim.core.batch import StepShape
from nanosim.core.metrics import STEP_COLUMNS, MetricsRecorder
from nanosim.sim.simulator import simulate
from nanosim.core.request import Request
from tests.core.toy import make_engine


def _record(rng: random.Random, recorders, expected: list[list]) -> None:
    """One step or one decode run into every recorder; its expected rows into ``expected``."""
    t = expected[-1][1] + expected[-1][2] if expected else 0.0
    if rng.random() < 0.5:
        shape = StepShape(num_prefill_seqs=rng.randint(0, 3), prefill_tokens=rng.randint(0, 900),
                          num_decode_seqs=rng.randint(0, 9), decode_context_tokens=rng.randint(0, 5000),
                          decode_max_context_tokens=rng.randint(0, 900))
        dur, kv, pre = rng.uniform(1e-3, 5e-2), rng.randint(0, 50), rng.randint(0, 2)
        cache = tuple(rng.randint(0, 3) for _ in range(6))
        for m in recorders:
            m.record_step(t, dur, shape, kv, pre, cache)
        hit = recorders[0].window.hit_rate
        expected.append([len(expected), t, dur, shape.num_prefill_seqs, shape.prefill_tokens,
                         shape.num_decode_seqs, shape.decode_context_tokens,
                         shape.decode_max_context_tokens, kv, 50, pre, *cache, hit])
        return
    k, seqs, ctx0, max0 = rng.randint(1, 6), rng.randint(1, 8), rng.randint(0, 4000), rng.randint(1, 700)
    durs = np.array([rng.uniform(1e-3, 2e-2) for _ in range(k)])
    starts = np.cumsum(np.concatenate(([t], durs)))[:-1]
    kv = rng.randint(0, 40) if rng.random() < 0.5 else np.arange(k, dtype=np.int64) + rng.randint(0, 40)
    as_lists = rng.random() < 0.5  # the engine records lists of floats, lazy_cluster arrays
    for m in recorders:
        m.record_decode_run(*((starts.tolist(), durs.tolist()) if as_lists else (starts, durs)),
                            seqs, ctx0, max0, kv)
    hit = recorders[0].window.hit_rate
    for j in range(k):
        expected.append([len(expected), float(starts[j]), float(durs[j]), 0, 0, seqs, ctx0 + seqs * j,
                         max0 + j, kv if isinstance(kv, int) else int(kv[j]), 50, *[0] * 7, hit])


@pytest.mark.parametrize("seed", range(6))
def test_columns_equal_row_by_row(seed):
    rng = random.Random(seed)
    lazy, read = MetricsRecorder(50), MetricsRecorder(50)  # read: .steps asked now and then
    expected: list[list] = []
    for _ in range(rng.randint(1, 60)):
        _record(rng, (lazy, read), expected)
        if rng.random() < 0.1:
            assert read.steps["step"] == list(range(len(expected)))  # what a live reader sees
    want = dict(zip(STEP_COLUMNS, zip(*expected)))
    for m in (lazy, read):
        cols = m._steps.columns({c: np.float64 if c.endswith("_s") or c.endswith("window")
                                 else np.int64 for c in STEP_COLUMNS})
        for c in STEP_COLUMNS:
            assert cols[c].tolist() == list(want[c]), c
        assert {c: list(v) for c, v in m.steps.items()} == {c: list(want[c]) for c in STEP_COLUMNS}


def test_engine_columns_equal_frames():
    """A fast-forwarded replay: columns() (numpy, no pandas) holds the DataFrame's values."""
    e = make_engine(num_blocks=300, max_num_seqs=8)
    simulate(e, [Request(i, i * 0.04, 40 + 13 * i, 120 + 9 * i) for i in range(20)])
    req, steps = e.metrics.columns()
    _, frame = e.metrics.frames()
    assert len(frame) > 300
    for c in STEP_COLUMNS:
        assert steps[c].dtype == frame[c].dtype, c
        assert np.array_equal(steps[c], frame[c].to_numpy()), c
