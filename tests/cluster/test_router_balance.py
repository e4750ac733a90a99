"""The prefix router balances cache affinity against load as SGLang's cache-aware router does:
prefix match only while the in-flight imbalance is under both thresholds, the least loaded
replica otherwise (and when the best match is a small share of the prompt)."""
import json

import pytest

from nanosim.cli import main
from nanosim.config import EngineConfig, get_gpu, get_model
from nanosim.core.request import Request
from nanosim.sim.job import run_simulation
from nanosim.sim.router import RouterConfig

MODEL, GPU = get_model("qwen3-0.6b"), get_gpu("h100")
CFG = EngineConfig(block_size_tokens=64, num_kv_blocks=4000, max_model_len=4096)
SHARED = tuple(range(1000, 3048))  # 2048 tokens every prompt starts with


def shared_prefix_requests(n, gap_s, first_too_long=False, out=64):
    reqs = []
    for i in range(n):
        tail = (i,) * 64
        ids = SHARED + tail if not (first_too_long and i == 0) else SHARED * 3
        reqs.append(Request(i, i * gap_s, len(ids), out, prompt_token_ids=ids))
    return reqs


def counts(req_df, replicas=4):
    served = req_df[req_df.rejected == ""]
    return [int((served.replica == r).sum()) for r in range(replicas)]


@pytest.mark.parametrize("first_too_long", [False, True])
def test_no_replica_starves_when_every_prompt_shares_one_prefix(first_too_long):
    reqs = shared_prefix_requests(400, 0.002, first_too_long)
    req_df, _, summary = run_simulation(reqs, MODEL, GPU, CFG, replicas=4, router="prefix")
    got = counts(req_df)
    assert summary["rejected"] == int(first_too_long)
    assert min(got) >= 0.1 * sum(got), got  # every replica carries a real share
    assert summary["prefix_cache_hit_rate"] > 0.8  # affinity still pays off


def test_under_light_load_affinity_wins():
    """Load never exceeds the absolute threshold: requests follow the cached prefix."""
    reqs = shared_prefix_requests(40, 0.5)
    req_df, _, _ = run_simulation(reqs, MODEL, GPU, CFG, replicas=4, router="prefix")
    assert max(counts(req_df)) >= 38


def test_thresholds_are_options():
    reqs = shared_prefix_requests(40, 0.05)  # a few requests in flight at a time
    tight = RouterConfig("prefix", balance_abs_threshold=0, balance_rel_threshold=1.0,
                         cache_threshold=0.3)
    req_df, _, summary = run_simulation(reqs, MODEL, GPU, CFG, replicas=4, router=tight)
    assert min(counts(req_df)) >= 5  # any imbalance now sends work to the least loaded
    default, _, _ = run_simulation(reqs, MODEL, GPU, CFG, replicas=4, router="prefix")
    assert max(counts(default)) >= 38  # with SGLang's defaults the load stays "balanced"
    assert summary["router"] == "prefix"
    assert summary["router_config"]["balance_abs_threshold"] == 0


def test_low_match_share_goes_to_the_least_loaded():
    """A prompt whose cached prefix is under cache_threshold of its length is not routed by
    affinity: unrelated prompts that share only 64 tokens spread over the replicas."""
    reqs = [Request(i, i * 0.5, 1088, 16, prompt_token_ids=SHARED[:64] + (i + 7,) * 1024)
            for i in range(40)]
    req_df, _, _ = run_simulation(reqs, MODEL, GPU, CFG, replicas=4, router="prefix")
    assert min(counts(req_df)) >= 8


@pytest.mark.parametrize("bad", [dict(balance_abs_threshold=-1), dict(balance_rel_threshold=0.0),
                                 dict(cache_threshold=1.5), dict(policy="nope")])
def test_bad_router_options_fail_clearly(bad):
    with pytest.raises(ValueError):
        RouterConfig(**{"policy": "prefix", **bad})


def test_cli_router_thresholds(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n" +
                     "".join(f"{i * 0.05:.2f},{100 + i},{8}\n" for i in range(20)))
    out = tmp_path / "run"
    rc = main(["simulate", "--trace", str(trace), "--model", "qwen3-0.6b", "--replicas", "2",
               "--router", "prefix", "--router-balance-abs", "3", "--router-balance-rel", "1.2",
               "--router-cache-threshold", "0.5", "--out", str(out), "--no-progress"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["router_config"] == {"policy": "prefix", "balance_abs_threshold": 3,
                                  "balance_rel_threshold": 1.2, "cache_threshold": 0.5}
    rc = main(["simulate", "--trace", str(trace), "--model", "qwen3-0.6b", "--replicas", "2",
               "--router", "prefix", "--router-balance-rel", "0", "--out", str(out),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "balance_rel_threshold" in err and err.count("\n") == 1
