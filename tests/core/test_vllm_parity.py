"""Block manager and scheduler rules taken from vLLM v1's own code and tests (docs/vllm-parity.md
names the sources): duplicate hashes, free order with caching off, reset_prefix_cache,
preemption statistics, long_prefill_token_threshold, the windowed prefix-cache hit rate."""
import pytest

from nanosim.core.block_manager import BlockManager
from tests.core.test_block_manager import C, admit, seq
from tests.core.test_scheduler import step
from tests.core.toy import make_engine, req


# ---- every physical copy of a hash stays reachable ---------------------------------------
def duplicate_hash_state():
    """A (48 tokens = 3 full blocks) and B (the same 48 tokens) both hold a block hashed H3:
    B's hit stops at 47 tokens, so it recomputes the last block into a block of its own."""
    bm = BlockManager(5, 16)
    a = seq(0, C)
    admit(bm, a)
    b = seq(1, C)
    ok, hits = admit(bm, b)
    assert ok and hits == [0, 1] and b.block_table == [0, 1, 3]
    assert bm.block_hash[2] == bm.block_hash[3] is not None
    return bm, a, b


def test_evicting_one_copy_keeps_the_other_reachable():
    bm, a, b = duplicate_hash_state()
    h3 = bm.block_hash[3]
    bm.free_seq(a)  # block 2 (A's copy of H3) goes to the free queue, still hashed
    d = seq(2, [9] * 32)
    admit(bm, d)  # takes blocks 4 and 2: A's copy of H3 is evicted
    assert sorted(d.block_table) == [2, 4] and bm.block_hash[2] != h3
    e = seq(3, C + [5] * 4)
    assert bm.lookup(e) == [0, 1, 3]  # B's copy, still in memory, is found
    bm.check([b, d])


def test_check_finds_a_hashed_block_missing_from_the_map():
    bm, a, b = duplicate_hash_state()
    h = bm.block_hash[3]
    bm.cached[h].pop(3)  # block 3 holds H3 but the map no longer leads to it
    with pytest.raises(AssertionError, match="unreachable"):
        bm.check([a, b])


# ---- free order: vLLM's FreeKVCacheBlockQueue.prepend_n for unhashed blocks --------------
def test_free_order_with_caching_off_reuses_the_last_freed_request_tail_first():
    bm = BlockManager(4, 16, enable_caching=False)
    a, b = seq(0, [1] * 32), seq(1, [2] * 32)
    admit(bm, a)
    admit(bm, b)
    assert (a.block_table, b.block_table) == ([0, 1], [2, 3])
    bm.free_seq(a)
    bm.free_seq(b)
    taken = []
    for i in range(4):
        s = seq(10 + i, [3] * 10)
        admit(bm, s)
        taken += s.block_table
    assert taken == [3, 2, 1, 0]


def test_free_order_with_caching_on_prepends_unhashed_appends_hashed():
    bm = BlockManager(6, 16)
    a = seq(0, [1] * 20)  # one full (hashed) block, one partial
    admit(bm, a)
    bm.free_seq(a)
    assert list(bm.free) == [1, 2, 3, 4, 5, 0]


# ---- reset_prefix_cache -----------------------------------------------------------------
def test_reset_prefix_cache_refuses_while_blocks_are_held_then_drops_every_hash():
    bm = BlockManager(10, 16)
    a = seq(0, C + [3] * 7)
    admit(bm, a)
    before = (dict((h, dict(v)) for h, v in bm.cached.items()), list(bm.block_hash), list(bm.free))
    assert bm.reset_prefix_cache() is False
    assert (dict((h, dict(v)) for h, v in bm.cached.items()), list(bm.block_hash), list(bm.free)) == before
    bm.free_seq(a)
    assert bm.reset_prefix_cache() is True
    assert not bm.cached and all(h is None for h in bm.block_hash) and bm.num_free == 10
    assert bm.lookup(seq(1, C + [3] * 7)) == []
    bm.check([])


def test_engine_reset_prefix_cache_between_runs():
    e = make_engine(num_blocks=16)
    e.add_request(req(0, 48, out=2, ids=C))
    assert e.reset_prefix_cache() is True  # nothing holds blocks yet
    step(e)
    assert e.reset_prefix_cache() is False  # request 0 runs and holds hashed blocks
    while e.has_work:
        step(e)
    assert e.reset_prefix_cache() is True
    r = e.add_request(req(1, 48, out=2, ids=C))
    step(e)
    assert r.num_cached_tokens == 0  # the cache was dropped


def run(e, t=0.0):
    """Engine steps (metrics recorded) until idle, checking invariants; returns the end time."""
    while e.has_work:
        t += e.step(t)
        e.check()
    return t


# ---- preemption statistics ----------------------------------------------------------------
def preempting_engine():
    """Two requests in 4 blocks of 16: the second is preempted (recompute) and re-admitted,
    hitting its own cached prompt blocks."""
    e = make_engine(num_blocks=4, max_num_batched_tokens=200, max_num_seqs=4)
    a = e.add_request(req(0, 16, out=10, ids=[1] * 16))
    b = e.add_request(req(1, 33, out=20, ids=[2] * 33))
    return e, a, b


def test_readmission_after_preemption_counts_apart_from_first_admissions():
    e, a, b = preempting_engine()
    run(e)
    assert b.num_preemptions >= 1 and a.num_preemptions == 0
    bm = e.bm
    assert (bm.stat_requests, bm.stat_query_tokens, bm.stat_hit_tokens) == (2, 49, 0)
    assert bm.stat_preempted_requests == b.num_preemptions
    assert bm.stat_preempted_query_tokens > 33  # prompt + the tokens generated before preemption
    assert bm.stat_preempted_hit_tokens >= 32  # its own two full prompt blocks
    _, steps = e.results()
    assert steps.preemptions.sum() == b.num_preemptions
    assert steps.prefix_cache_requests.sum() == 2 and steps.prefix_cache_queries.sum() == 49
    assert steps.prefix_cache_preempted_requests.sum() == bm.stat_preempted_requests
    assert steps.prefix_cache_preempted_queries.sum() == bm.stat_preempted_query_tokens
    assert steps.prefix_cache_preempted_hits.sum() == bm.stat_preempted_hit_tokens


def test_summary_reports_readmissions_apart():
    from nanosim.core.metrics import summarize
    from nanosim.output import format_summary

    e, a, b = preempting_engine()
    run(e)
    req, steps = e.results()
    s = summarize(req, steps, e.bm.stat_hit_tokens, e.bm.stat_query_tokens)
    assert (s["preemptions"], s["preempted_requests"]) == (b.num_preemptions, 1)
    assert s["prefix_cache_preempted_hits"] == e.bm.stat_preempted_hit_tokens
    assert s["prefix_cache_hit_rate"] == 0.0  # the victim's own hits do not count here
    assert f"re-admitted   {b.num_preemptions} times after preemption" in format_summary(s)


# ---- long_prefill_token_threshold ----------------------------------------------------------
def test_long_prefill_threshold_caps_each_prompt_chunk():
    e = make_engine(num_blocks=100, max_num_batched_tokens=1000, long_prefill_token_threshold=64)
    e.add_request(req(0, 200))
    e.add_request(req(1, 10))
    assert step(e)[0] == [(0, 64), (1, 10)]  # the long prompt no longer crowds out the short one
    assert step(e)[0] == [(0, 64)]
    assert step(e)[0] == [(0, 64)]
    assert step(e)[0] == [(0, 8)]


def test_long_prefill_threshold_zero_is_off():
    e = make_engine(num_blocks=100, max_num_batched_tokens=1000)
    e.add_request(req(0, 200))
    assert step(e)[0] == [(0, 200)]


def test_long_prefill_threshold_applies_in_prefill_first_mode():
    e = make_engine(num_blocks=100, max_num_batched_tokens=1000, chunked_prefill=False,
                    long_prefill_token_threshold=50)
    e.add_request(req(0, 120))
    e.add_request(req(1, 30))
    assert step(e)[0] == [(0, 50), (1, 30)]


def test_long_prefill_threshold_must_not_be_negative():
    from nanosim.config import ConfigError, EngineConfig

    with pytest.raises(ConfigError, match="long_prefill_token_threshold"):
        EngineConfig(long_prefill_token_threshold=-1)


# ---- windowed prefix-cache hit rate (vLLM CachingMetrics) ----------------------------------
def test_caching_metrics_window_drops_oldest_observations():
    from nanosim.core.cache_stats import CachingMetrics

    m = CachingMetrics(max_recent_requests=4)
    m.observe(2, 100, 0)
    m.observe(2, 100, 100)
    assert m.hit_rate == 0.5
    m.observe(1, 100, 100)  # 5 requests > 4: the oldest observation leaves
    assert m.hit_rate == 1.0
    m.observe(0, 0, 0)  # an idle step does not push history out
    assert m.hit_rate == 1.0
    m.observe(9, 100, 0)  # bigger than the window alone: kept (the latest is never dropped)
    assert m.hit_rate == 0.0
    m.observe(1, 50, 50, reset=True)  # a reset clears the window before this observation
    assert m.hit_rate == 1.0


def test_steps_table_has_windowed_hit_rate():
    e = make_engine(num_blocks=64)
    e.add_request(req(0, 48, out=2, ids=C))
    t = run(e)
    e.add_request(req(1, 48, out=2, ids=C))
    run(e, t)
    _, steps = e.results()
    rates = steps.prefix_cache_hit_rate_window.tolist()
    assert rates[0] == 0.0  # first request: 48 queried, nothing hit
    assert rates[-1] == pytest.approx(32 / 96)  # second: 32 of 48 hit (the last block recomputed)
    assert all(r in (0.0, pytest.approx(32 / 96)) for r in rates)

