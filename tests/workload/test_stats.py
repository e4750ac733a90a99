"""trace_stats, format_stats, write_canonical round trips, and the committed demo trace."""
import importlib.util

import numpy as np
import pytest

from nanosim.core.request import Request
from nanosim.workload import (format_stats, load_trace, make_workload, trace_stats,
                              write_canonical)
from nanosim.workload.synthetic import make_sessions, with_priorities, with_system_prompts

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def test_stats_small_by_hand():
    t = [Request(0, 0.0, 10, 1), Request(1, 30.0, 20, 3), Request(2, 70.0, 30, 5),
         Request(3, 130.0, 40, 7)]
    s = trace_stats(t, bucket_s=60.0)
    assert s["num_requests"] == 4 and s["span_s"] == 130.0
    assert s["mean_rate_rps"] == pytest.approx(3 / 130)
    assert s["rate_per_bucket_rps"] == pytest.approx([2 / 60, 1 / 60, 1 / 60])
    assert s["prompt_tokens"] == pytest.approx({"p50": 25.0, "p90": 37.0, "p99": 39.7,
                                                "mean": 25.0, "max": 40})
    assert s["output_tokens"]["max"] == 7 and s["total_output_tokens"] == 16
    assert s["block_reuse_ratio"] is None and s["priorities"] == {0: 4}
    text = format_stats(s)
    for word in ("requests", "mean rate", "p99", "input", "output"):
        assert word in text


def test_format_stats_with_prefixes(shared_traces):
    s = trace_stats(load_trace(shared_traces / "mooncake_synthetic_first340s.jsonl"),
                    block_size_tokens=512)
    text = format_stats(s)
    assert "block reuse @512 tok" in text and "20.4%" in text and "19.5%" in text


def _rich_trace():
    base = make_workload("code", 3.0, num_requests=50, seed=4)
    sp = with_priorities(with_system_prompts(base, num_groups=3, system_prompt_tokens=70),
                         {0: 1, 5: 1, -2: 1})
    sess = make_sessions(1.0, num_sessions=10, seed=2, system_prompt_tokens=32,
                         content_block_tokens=16)
    ids = [Request(0, 0.125, 3, 2, 1, (7, 8, 9)), Request(1, 1e-9, 2, 2, 0, (1, 151935))]
    from nanosim.workload.transforms import merge

    return merge([sp, sess, ids])


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_write_canonical_round_trip(tmp_path, suffix):
    t = _rich_trace()
    assert any(r.prompt_token_ids for r in t) and any(r.prefix_blocks for r in t)
    assert {r.priority for r in t} >= {-2, 0, 5}
    path = tmp_path / f"t{suffix}"
    write_canonical(t, path)
    assert load_trace(path) == t
    plain = make_workload("chatbot", 2.0, num_requests=100, seed=0)
    write_canonical(plain, path)
    assert load_trace(path) == plain
    with pytest.raises(ValueError):
        write_canonical(plain, tmp_path / "t.txt")


def test_demo_trace_is_what_make_demo_makes():
    path = REPO / "traces" / "demo_chatbot.csv"
    spec = importlib.util.spec_from_file_location("make_demo", REPO / "traces" / "make_demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    demo = load_trace(path)
    assert demo == mod.make()
    s = trace_stats(demo)
    assert s["num_requests"] == 300 and 1.5 < s["mean_rate_rps"] < 2.5
    assert 100 < s["prompt_tokens"]["mean"] < 160 and 220 < s["output_tokens"]["mean"] < 290


def test_stats_are_json_serialisable(shared_traces):
    import json

    s = trace_stats(load_trace(shared_traces / "azure2023_conv_first20min.csv"))
    assert json.loads(json.dumps(s))["num_requests"] == 5985
    assert np.isclose(sum(s["rate_per_bucket_rps"]) * s["bucket_s"], 5985)
