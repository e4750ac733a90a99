"""Fast-forwarded decode runs give the same tables as stepping, and really skip steps."""
import pandas as pd

from nanosim.core.request import Request
from nanosim.sim.simulator import simulate
from tests.core.toy import make_engine


def test_fast_forward_skips_steps_with_identical_results(monkeypatch):
    reqs = [Request(i, i * 0.05, 30 + i, 200 + 10 * i) for i in range(12)]
    tables = []
    calls = {"step": 0}
    for ff in (False, True):
        e = make_engine(num_blocks=400, max_num_seqs=8)
        orig = e.step

        def counting(now, orig=orig):
            calls["step"] += 1
            return orig(now)

        monkeypatch.setattr(e, "step", counting)
        calls["step"] = 0
        simulate(e, reqs, fast_forward=ff)
        tables.append(e.results())
        if ff:
            ff_calls = calls["step"]
        else:
            plain_calls = calls["step"]
    pd.testing.assert_frame_equal(tables[0][0], tables[1][0], check_exact=True)
    pd.testing.assert_frame_equal(tables[0][1], tables[1][1], check_exact=True)
    assert plain_calls == len(tables[0][1]) > 500
    assert ff_calls < plain_calls / 10  # most decode steps were advanced in bulk
