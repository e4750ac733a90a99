"""Cluster simulation: routers, determinism, prefix affinity on a session workload."""
import pandas as pd
import pytest

from nanosim.config import EngineConfig, get_gpu, get_model
from nanosim.sim.job import run_simulation
from nanosim.workload.synthetic import make_sessions

MODEL, GPU = get_model("qwen3-0.6b"), get_gpu("h100")
CFG = EngineConfig(block_size_tokens=64, num_kv_blocks=3000, max_model_len=16384)


@pytest.fixture(scope="module")
def sessions():
    return make_sessions(0.5, num_sessions=60, seed=3, turns_mean=5, think_time_s=5,
                         system_prompt_tokens=512, num_system_prompts=4, max_prompt_tokens=8000)


def run(reqs, router, replicas=4):
    return run_simulation(reqs, MODEL, GPU, CFG, replicas=replicas, router=router)


def test_prefix_affinity_raises_hit_rate_over_round_robin(sessions):
    rr = run(sessions, "round_robin")[2]
    px = run(sessions, "prefix")[2]
    assert px["prefix_cache_hit_rate"] > rr["prefix_cache_hit_rate"] + 0.1
    assert px["finished"] == rr["finished"] == len(sessions)


@pytest.mark.parametrize("router", ["round_robin", "least_tokens", "least_kv", "prefix"])
def test_every_router_serves_everything_and_is_deterministic(sessions, router):
    r1, s1, sum1 = run(sessions, router, replicas=3)
    r2, s2, _ = run(sessions, router, replicas=3)
    pd.testing.assert_frame_equal(r1, r2, check_exact=True)
    pd.testing.assert_frame_equal(s1, s2, check_exact=True)
    assert sum1["finished"] == len(sessions)
    assert sorted(r1.replica.unique()) == [0, 1, 2]
    assert sum(r["requests"] for r in sum1["replicas"]) == len(sessions)


def test_round_robin_balances_request_counts(sessions):
    req = run(sessions, "round_robin")[0]
    counts = req.replica.value_counts()
    assert counts.max() - counts.min() <= 1


def test_one_replica_cluster_equals_single_engine(sessions):
    single = run_simulation(sessions, MODEL, GPU, CFG)
    cluster = run_simulation(sessions, MODEL, GPU, CFG, replicas=1, router="least_kv")
    pd.testing.assert_frame_equal(single[0], cluster[0], check_exact=True)
    pd.testing.assert_frame_equal(single[1], cluster[1], check_exact=True)
