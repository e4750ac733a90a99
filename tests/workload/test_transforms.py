"""Transforms return new canonical traces and never modify their inputs."""
import numpy as np
import pytest

from nanosim.core.request import Request
from nanosim.workload import load_trace, make_workload, trace_stats
from nanosim.workload.transforms import (clip_lengths, concat, merge, rebase, sample, scale_rate,
                                         time_window, to_rate)


def _canonical(trace):
    assert [r.request_id for r in trace] == list(range(len(trace)))
    t = np.array([r.arrival_s for r in trace])
    assert t[0] == 0.0 and (np.diff(t) >= 0).all()


@pytest.fixture
def trace():
    return make_workload("chatbot", 10.0, num_requests=1000, seed=0)


def test_time_window(trace):
    w = time_window(trace, 20.0, 50.0)
    _canonical(w)
    inside = [r for r in trace if 20.0 <= r.arrival_s < 50.0]
    assert len(w) == len(inside)
    assert [r.prompt_tokens for r in w] == [r.prompt_tokens for r in inside]
    assert w[-1].arrival_s == pytest.approx(inside[-1].arrival_s - inside[0].arrival_s)
    assert len(time_window(trace, 50.0)) == sum(r.arrival_s >= 50 for r in trace)


def test_scale_and_to_rate(trace):
    before = list(trace)
    fast = scale_rate(trace, 2.0)
    _canonical(fast)
    assert trace == before
    assert [r.arrival_s for r in fast] == [r.arrival_s / 2.0 for r in trace]
    s0, s1 = trace_stats(trace), trace_stats(fast)
    assert s1["mean_rate_rps"] == pytest.approx(2 * s0["mean_rate_rps"])
    assert trace_stats(to_rate(trace, 3.0))["mean_rate_rps"] == pytest.approx(3.0)
    with pytest.raises(ValueError):
        scale_rate(trace, 0)


def test_sample(trace):
    half = sample(trace, fraction=0.5, seed=1)
    _canonical(half)
    assert len(half) == 500 and half == sample(trace, fraction=0.5, seed=1)
    assert half != sample(trace, fraction=0.5, seed=2)
    assert len(sample(trace, num_requests=10, seed=0)) == 10
    lengths = {(r.prompt_tokens, r.output_tokens) for r in trace}
    assert all((r.prompt_tokens, r.output_tokens) in lengths for r in half)
    with pytest.raises(ValueError):
        sample(trace, fraction=0.5, num_requests=3)


def test_clip_lengths_rule():
    t = [Request(0, 0.0, 100, 10), Request(1, 1.0, 5000, 10), Request(2, 2.0, 4000, 500),
         Request(3, 3.0, 10, 9000)]
    c = clip_lengths(t, 4096)
    assert [(r.prompt_tokens, r.output_tokens) for r in c] == [(100, 10), (4095, 1), (4000, 96),
                                                               (10, 4086)]
    assert all(r.prompt_tokens + r.output_tokens <= 4096 for r in c)
    d = clip_lengths(t, 4096, drop=True)
    assert [r.prompt_tokens for r in d] == [100]
    m = clip_lengths(t, 4096, max_output_tokens=64)
    assert [r.output_tokens for r in m] == [10, 1, 64, 64]


def test_clip_keeps_prompt_content(shared_traces):
    moon = load_trace(shared_traces / "mooncake_conversation_first20min.jsonl")[:200]
    c = clip_lengths(moon, 2048)
    for a, b in zip(moon, c):
        assert b.prompt_tokens == min(a.prompt_tokens, 2047)
        assert len(b.prefix_blocks) == -(-b.prompt_tokens // 512)
        assert np.array_equal(b.token_ids(), a.token_ids()[:b.prompt_tokens])
    ids = clip_lengths([Request(0, 0.0, 4, 4, prompt_token_ids=(1, 2, 3, 4))], 3)
    assert ids[0].prompt_token_ids == (1, 2) and ids[0].output_tokens == 1


def test_concat_and_merge():
    a = [Request(0, 0.0, 5, 1, prefix_blocks=(0, 1), prefix_block_tokens=4),
         Request(1, 2.0, 5, 1, prefix_blocks=(0, 2), prefix_block_tokens=4)]
    b = [Request(0, 10.0, 5, 1, prefix_blocks=(0, 1), prefix_block_tokens=4),
         Request(1, 11.0, 3, 1)]
    c = concat([a, b], gap_s=1.0)
    _canonical(c)
    assert [r.arrival_s for r in c] == [0.0, 2.0, 3.0, 4.0]
    assert [r.prefix_blocks for r in c] == [(0, 1), (0, 2), (3, 4), None]
    assert trace_stats(c, block_size_tokens=4)["reused_prompt_blocks"] == 1  # only within a
    shared = concat([a, b], share_block_ids=True)
    assert [r.arrival_s for r in shared] == [0.0, 2.0, 2.0, 3.0]
    assert trace_stats(shared, block_size_tokens=4)["reused_prompt_blocks"] == 2
    m = merge([a, b])
    _canonical(m)
    assert [(r.arrival_s, r.prompt_tokens) for r in m] == [(0.0, 5), (0.0, 5), (1.0, 3),
                                                           (2.0, 5)]
    assert m[1].prefix_blocks == (3, 4)


def test_rebase_sorts_stably():
    t = [Request(5, 3.0, 1, 1), Request(9, 1.0, 2, 1), Request(2, 1.0, 3, 1)]
    r = rebase(t)
    assert [(x.request_id, x.arrival_s, x.prompt_tokens) for x in r] == [(0, 0.0, 2), (1, 0.0, 3),
                                                                         (2, 2.0, 1)]
    assert rebase([]) == []
