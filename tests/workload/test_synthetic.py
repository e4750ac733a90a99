"""Named suites, fitted/resampled traffic, sessions, system prompts, priorities."""
import numpy as np
import pytest

from nanosim.workload import load_trace, make_workload, trace_stats
from nanosim.workload.synthetic import (SUITES, LogNormalLengths, UniformLengths, generate,
                                        like_trace, make_sessions, with_priorities,
                                        with_system_prompts)
from nanosim.workload.generators import poisson_arrivals


def _canonical(trace):
    assert [r.request_id for r in trace] == list(range(len(trace)))
    t = np.array([r.arrival_s for r in trace])
    assert t[0] == 0.0 and (np.diff(t) >= 0).all()


@pytest.mark.parametrize("name", sorted(SUITES))
def test_suite_means_rate_and_determinism(name):
    w = make_workload(name, 50.0, num_requests=20_000, seed=1)
    _canonical(w)
    assert len(w) == 20_000
    s = trace_stats(w)
    pm, om = SUITES[name]
    assert s["prompt_tokens"]["mean"] == pytest.approx(pm, rel=0.03)
    assert s["output_tokens"]["mean"] == pytest.approx(om, rel=0.03)
    assert s["prompt_tokens"]["max"] <= 4 * pm
    assert s["mean_rate_rps"] == pytest.approx(50.0, rel=0.03)
    assert s["interarrival_cv"] == pytest.approx(1.0, rel=0.05)
    assert make_workload(name, 50.0, num_requests=200, seed=1) == w[:200]
    assert make_workload(name, 50.0, num_requests=200, seed=2) != w[:200]


def test_suite_by_duration_and_bursty():
    w = make_workload("chatbot", 4.0, duration_s=2000.0, seed=3, cv=3.0)
    s = trace_stats(w)
    assert s["span_s"] < 2000.0 and len(w) == pytest.approx(8000, rel=0.1)
    assert s["interarrival_cv"] == pytest.approx(3.0, rel=0.15)
    with pytest.raises(ValueError, match="known"):
        make_workload("nope", 1.0, num_requests=1)


def test_lengths_independent_of_arrival_stream():
    a = make_workload("code", 1.0, num_requests=50, seed=9)
    b = make_workload("code", 7.0, num_requests=50, seed=9)
    assert [(r.prompt_tokens, r.output_tokens) for r in a] == \
        [(r.prompt_tokens, r.output_tokens) for r in b]


def test_other_length_distributions():
    t = poisson_arrivals(1.0, num_requests=5000, seed=0)
    u = generate(t, UniformLengths((100, 1024), (100, 1024)), seed=0)
    p = np.array([r.prompt_tokens for r in u])
    assert p.min() >= 100 and p.max() <= 1024 and p.mean() == pytest.approx(562, rel=0.03)
    ln = LogNormalLengths(1000, 10, cv=1.0, max_factor=50)
    x, y = ln.sample(100_000, np.random.default_rng(0))
    assert x.mean() == pytest.approx(1000, rel=0.03) and y.std() / y.mean() == pytest.approx(
        1.0, rel=0.1)


def test_like_trace_resamples_lengths_at_any_rate(shared_traces):
    src = load_trace(shared_traces / "azure2023_conv_first20min.csv")
    more = like_trace(src, rate_rps=20.0, num_requests=30_000, seed=0, cv=1.0)
    _canonical(more)
    s, s0 = trace_stats(more), trace_stats(src)
    assert s["mean_rate_rps"] == pytest.approx(20.0, rel=0.03)
    for k in ("prompt_tokens", "output_tokens"):
        assert s[k]["mean"] == pytest.approx(s0[k]["mean"], rel=0.03)
        assert s[k]["p50"] == pytest.approx(s0[k]["p50"], rel=0.05)
    pairs = {(r.prompt_tokens, r.output_tokens) for r in src}
    assert all((r.prompt_tokens, r.output_tokens) in pairs for r in more)
    default = like_trace(src, seed=1)  # same size, rate and burstiness as the source
    d = trace_stats(default)
    assert len(default) == len(src)
    assert d["mean_rate_rps"] == pytest.approx(s0["mean_rate_rps"], rel=0.1)
    assert d["interarrival_cv"] == pytest.approx(s0["interarrival_cv"], rel=0.15)


def test_sessions_share_growing_prefixes():
    trace = make_sessions(0.01, num_sessions=1, seed=0, turns_mean=8, think_time_s=5.0,
                          system_prompt_tokens=100, content_block_tokens=64)
    _canonical(trace)
    assert len(trace) >= 3
    for a, b in zip(trace, trace[1:]):
        assert b.prompt_tokens > a.prompt_tokens + a.output_tokens
        ta, tb = a.token_ids(), b.token_ids()
        # the next turn's prompt starts with this turn's prompt AND its answer
        assert np.array_equal(ta, tb[:len(ta)])
        assert b.prefix_blocks[:len(a.prefix_blocks) - 1] == a.prefix_blocks[:-1]
    assert trace[0].prompt_tokens > 128  # 100-token system prompt rounded up to 128
    assert make_sessions(0.01, num_sessions=1, seed=0, turns_mean=8, think_time_s=5.0,
                         system_prompt_tokens=100, content_block_tokens=64) == trace


def test_sessions_reuse_and_system_prompts():
    trace = make_sessions(2.0, num_sessions=300, seed=1, system_prompt_tokens=256,
                          num_system_prompts=3, max_prompt_tokens=4096)
    _canonical(trace)
    assert max(r.prompt_tokens for r in trace) <= 4096
    s = trace_stats(trace, block_size_tokens=16)
    assert s["block_reuse_ratio"] > 0.5  # later turns re-send the whole history
    heads = {r.token_ids()[:256].tobytes() for r in trace}
    assert len(heads) == 3  # three shared system prompts
    assert len({r.prefix_blocks[4] for r in trace}) > 250  # sessions diverge after them


def test_with_system_prompts():
    base = make_workload("chatbot", 5.0, num_requests=2000, seed=0)
    sp = with_system_prompts(base, num_groups=4, system_prompt_tokens=300, seed=0)
    assert [r.prompt_tokens - 300 for r in sp] == [r.prompt_tokens for r in base]
    groups = {}
    for r in sp:
        groups.setdefault(r.prefix_blocks, []).append(r)
    assert len(groups) == 4
    for members in groups.values():
        a, b = members[0].token_ids(), members[1].token_ids()
        assert np.array_equal(a[:300], b[:300]) and (a[300:310] != b[300:310]).any()
    s = trace_stats(sp, block_size_tokens=100)
    # every request but the first of each group reuses its 3 system blocks
    assert s["reused_prompt_blocks"] == 3 * (2000 - 4)
    zipf = with_system_prompts(base, num_groups=10, system_prompt_tokens=50, zipf_a=1.5)
    counts = np.bincount([r.prefix_blocks[0] for r in zipf])
    assert counts[0] > counts[1] > counts[5]
    with pytest.raises(ValueError):
        with_system_prompts(sp, num_groups=2, system_prompt_tokens=10)


def test_with_priorities():
    base = make_workload("rag", 5.0, num_requests=10_000, seed=0)
    pr = with_priorities(base, {0: 0.2, 1: 0.8}, seed=3)
    assert trace_stats(pr)["priorities"][0] == pytest.approx(2000, rel=0.08)
    assert pr == with_priorities(base, {0: 0.2, 1: 0.8}, seed=3)
    assert make_workload("rag", 1.0, num_requests=3, priority=2)[0].priority == 2
