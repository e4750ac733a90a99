"""core/clock.run_virtual (the real replay's virtual clock) gives the simulator's tables for
one engine without fast-forward, to the bit."""
import numpy as np
import pytest

from nanosim.config import EngineConfig, get_gpu, get_model
from nanosim.core.clock import run_virtual
from nanosim.core.engine import Engine
from nanosim.sim.backend import SimBackend
from nanosim.sim.costmodel import RooflineCostModel
from nanosim.sim.simulator import simulate
from nanosim.workload import make_workload


def _engine(cfg):
    cost = RooflineCostModel(get_model("qwen3-0.6b"), get_gpu("h100"))
    return Engine(cfg, SimBackend(cost), 64)


@pytest.mark.parametrize("chunked", [True, False])
def test_run_virtual_equals_simulate(chunked):
    cfg = EngineConfig(max_num_seqs=8, max_num_batched_tokens=512, chunked_prefill=chunked)
    reqs = make_workload("chatbot", 20.0, num_requests=60, seed=3)
    a, b = _engine(cfg), _engine(cfg)
    seen = []
    end_a = run_virtual(a, reqs, progress=lambda n, t: seen.append((n, t)))
    end_b = simulate(b, reqs, fast_forward=False)
    assert end_a == end_b and seen[-1] == (60, end_a)
    for ta, tb in zip(a.results(), b.results()):
        assert list(ta.columns) == list(tb.columns)
        for c in ta.columns:
            np.testing.assert_array_equal(ta[c].to_numpy(), tb[c].to_numpy(), err_msg=c)
