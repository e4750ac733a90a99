"""core/clock.run_virtual (the one-engine loop of the real replay's virtual clock and of the
simulator) gives the tables of the SimPy replay of one engine (sim/simulator._SimpyCluster),
to the bit: stepping one by one and fast-forwarding, with the shipped profile's step jitter
(the same draws in the same order) and with the roofline."""
import numpy as np
import pytest

from nanosim.config import EngineConfig, get_gpu, get_model
from nanosim.core.clock import run_virtual
from nanosim.sim.job import build_engine
from nanosim.sim.simulator import _SimpyCluster
from nanosim.workload import make_workload


@pytest.mark.parametrize("profile", ["auto", None])
@pytest.mark.parametrize("fast_forward", [False, True])
@pytest.mark.parametrize("chunked", [True, False])
def test_run_virtual_equals_the_simpy_replay(chunked, fast_forward, profile):
    cfg = EngineConfig(max_num_seqs=8, max_num_batched_tokens=512, chunked_prefill=chunked,
                       block_size_tokens=16, max_model_len=1024, num_kv_blocks=100)
    reqs = make_workload("chatbot", 20.0, num_requests=60, seed=3)

    def engine():
        return build_engine(get_model("qwen3-8b"), get_gpu("h100"), cfg, profile)

    a, b = engine(), engine()
    seen = []
    end_a = run_virtual(a, reqs, lambda n, t: seen.append((n, t)), fast_forward=fast_forward,
                        check=True)
    end_b = _SimpyCluster([b], reqs, None, fast_forward, None, False).run()
    assert end_a == end_b and seen[-1] == (60, end_a)
    assert a.metrics.num_steps == b.metrics.num_steps > 60
    assert a.scheduler.num_preemptions == b.scheduler.num_preemptions
    for ta, tb in zip(a.results(), b.results()):
        assert list(ta.columns) == list(tb.columns)
        for c in ta.columns:
            np.testing.assert_array_equal(ta[c].to_numpy(), tb[c].to_numpy(), err_msg=c)
