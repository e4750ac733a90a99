"""Lazily advanced replicas (sim/lazy_cluster.py) give the tables of stepping one by one,
with every router, while their decode runs span other replicas' arrivals."""
import copy
import random

import pandas as pd
import pytest

from nanosim.config import EngineConfig, get_gpu, get_model
from nanosim.core.block_manager import BlockManager
from nanosim.core.request import Request
from nanosim.core.sequence import Sequence
from nanosim.sim import lazy_cluster
from nanosim.sim.job import run_simulation
from nanosim.workload.synthetic import make_sessions

MODEL, GPU = get_model("qwen3-0.6b"), get_gpu("h100")


@pytest.fixture(scope="module")
def sessions():  # shared prefixes (prefix router), KV pressure with 300 blocks of 64
    return make_sessions(2.0, num_sessions=40, seed=5, turns_mean=4, think_time_s=2,
                         system_prompt_tokens=512, num_system_prompts=3, max_prompt_tokens=4000)


def _run(reqs, router, cfg, fast_forward, profile=None, replicas=3):
    return run_simulation(reqs, MODEL, GPU, cfg, profile, fast_forward=fast_forward, replicas=replicas,
                          router=router, step_jitter=False)


@pytest.mark.parametrize("router", ["round_robin", "least_tokens", "least_kv", "prefix"])
@pytest.mark.parametrize("chunked", [True, False])
def test_lazy_cluster_equals_stepping(sessions, router, chunked, monkeypatch):
    cfg = EngineConfig(block_size_tokens=64, num_kv_blocks=300, max_model_len=16384,
                       chunked_prefill=chunked)
    stepped = _run(sessions, router, cfg, fast_forward=False)
    cuts = []
    orig = lazy_cluster.LazyReplica._apply

    def spy(self, run, j):
        cuts.append((j, run.k))
        return orig(self, run, j)

    monkeypatch.setattr(lazy_cluster.LazyReplica, "_apply", spy)
    lazy = _run(sessions, router, cfg, fast_forward=True)
    pd.testing.assert_frame_equal(stepped[0], lazy[0], check_exact=True)
    pd.testing.assert_frame_equal(stepped[1], lazy[1], check_exact=True)
    drop = ("wall_s", "sim_speed_x", "note")  # note: counts of priced steps, not outcomes
    assert {k: v for k, v in stepped[2].items() if k not in drop} == \
        {k: v for k, v in lazy[2].items() if k not in drop}
    assert len(cuts) < len(stepped[1]) / 5  # runs: most steps were not stepped one by one
    assert any(j == k for j, k in cuts) and any(0 < j < k for j, k in cuts)


def test_lazy_cluster_with_profile_equals_stepping(sessions):
    cfg = EngineConfig(block_size_tokens=64, num_kv_blocks=400, max_model_len=16384)
    reqs = [Request(i, 0.02 * i, 200 + 37 * (i % 11), 30 + 17 * (i % 7)) for i in range(150)]
    model = get_model("qwen3-8b")
    a, b = (run_simulation(reqs, model, GPU, cfg, "auto", fast_forward=ff, replicas=4,
                           router="least_kv", step_jitter=False) for ff in (False, True))
    pd.testing.assert_frame_equal(a[0], b[0], check_exact=True)
    pd.testing.assert_frame_equal(a[1], b[1], check_exact=True)


def test_lookup_after_equals_taking_blocks():
    """lookup_after(probe, n) is the lookup once n blocks are taken from the free queue."""
    rng = random.Random(1)
    for trial in range(40):
        bm = BlockManager(24, 4)
        live = []
        for i in range(rng.randint(2, 8)):
            n = rng.randint(5, 30)
            req = Request(i, 0.0, n, 4, prompt_token_ids=tuple(rng.randint(0, 3) for _ in range(n)))
            s = Sequence(req)
            s.prompt_ids = req.token_ids()
            if bm.allocate(s, n, bm.lookup(s)):
                live.append(s)
        for s in rng.sample(live, k=len(live) // 2):
            bm.free_seq(s)
        m = rng.randint(6, 30)
        probe_req = Request(99, 0.0, m, 4, prompt_token_ids=tuple(rng.randint(0, 3) for _ in range(m)))
        probe = Sequence(probe_req)
        probe.prompt_ids = probe_req.token_ids()
        for n in range(bm.num_free + 1):
            after = copy.deepcopy(bm)
            for _ in range(n):
                after._take_free()
            assert after.lookup(probe) == bm.lookup_after(probe, n), (trial, n)
