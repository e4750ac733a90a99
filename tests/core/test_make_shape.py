"""make_shape (the scheduler's StepShape constructor, by the slots' setters) builds the same
frozen object as StepShape(...): equal, same hash and repr, still frozen; and
Engine._decode_durations' bisection over running sums cuts a run where a step-by-step loop
does."""
import dataclasses
import random

import pytest

from nanosim.core.batch import DECODE_PATHS, StepShape, make_shape
from nanosim.core.engine import Engine


def test_make_shape_equals_dataclass_init():
    rng = random.Random(0)
    for _ in range(500):
        v = (rng.randint(0, 9), rng.randint(0, 9999), rng.random() * 1e6, rng.randint(0, 9999),
             rng.randint(0, 512), rng.randint(0, 10**6), rng.randint(0, 9), rng.randint(0, 10**5),
             rng.choice(DECODE_PATHS))
        a, b = make_shape(*v), StepShape(*v)
        assert a == b and hash(a) == hash(b) and repr(a) == repr(b)
        assert type(a) is StepShape and dataclasses.astuple(a) == v
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.num_prefill_seqs = 1


def _loop_durations(durations: list[float], now: float, until_s: float):
    """The step-by-step form: each step's start summed left to right, stop at until_s."""
    starts, t = [], now
    for x in durations:
        if t >= until_s:
            break
        starts.append(t)
        t += x
    return starts, durations[:len(starts)], t


@pytest.mark.parametrize("cut", [False, True])
@pytest.mark.parametrize("seed", range(20))
def test_decode_durations_cut_like_a_loop(seed, cut):
    """cut: the pricer stops after the first step starting at or after until_s, as it may."""
    rng = random.Random(seed)
    k_max = rng.randint(2, 700)
    table = [rng.uniform(0.005, 0.05) for _ in range(k_max)]
    now = rng.uniform(0, 100)
    until = now + rng.uniform(0, sum(table) * 1.2)

    def run_s(num_seqs, ctx, m, max_ctx, path, start_s, until_s):
        n = (ctx - 1000) // num_seqs  # the steps priced before this chunk
        out = table[n:n + m]
        if cut:
            t = start_s
            for i, d in enumerate(out):
                if t >= until_s:
                    return out[:i + 1]
                t += d
        return out

    got = Engine._decode_durations(run_s, 3, 1000, 50, k_max, now, until, "packed")
    assert got == _loop_durations(table, now, until)


@pytest.mark.parametrize("seed", range(10))
def test_blocks_per_step_counts_the_appends_up_to_each_step(seed):
    """A fast-forwarded run's KV blocks in use per step: used0 plus the appends at offsets up
    to and including the step (several at one step included), as numpy's searchsorted gives."""
    import numpy as np

    from nanosim.core.engine import _blocks_per_step

    rng = random.Random(seed)
    k = rng.randint(1, 300)
    offsets = sorted(rng.randrange(k) for _ in range(rng.randint(1, 20)))
    want = (40 + np.searchsorted(np.array(offsets), np.arange(k), side="right")).tolist()
    assert _blocks_per_step(40, offsets, k) == want
