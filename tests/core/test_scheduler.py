"""Scheduler semantics on hand-worked cases (../shared/SCENARIOS.md section C)."""
import pytest

from nanosim.core.request import Request
from nanosim.core.sequence import Status
from tests.core.toy import make_engine, req


def step(e, now=0.0):
    """One engine step; returns (prefill chunks as (id, tokens), decode seq ids, duration)."""
    sched = e.scheduler
    batch = sched.schedule()
    chunks = [(c.seq.seq_id, c.num_tokens) for c in batch.prefills]
    decodes = sorted(sched.group.members) if batch.shape.num_decode_seqs else []
    from nanosim.core.batch import StepResult
    sched.postprocess(batch, StepResult(0.001), now + 0.001)
    e._collect()
    e.check()
    return chunks, decodes


def test_s22_everything_fits_one_step():
    e = make_engine(num_blocks=100, max_num_batched_tokens=8192, max_num_seqs=16)
    for i in range(10):
        e.add_request(req(i, 10, ids=[i] * 10))
    chunks, _ = step(e)
    assert chunks == [(i, 10) for i in range(10)]
    assert len(e.scheduler.waiting) == 0 and list(e.scheduler.running) == list(range(10))


def test_s23_token_budget_limits_admission():
    e = make_engine(num_blocks=100, max_num_batched_tokens=100)
    for i in range(3):
        e.add_request(req(i, 50))
    chunks, _ = step(e)
    assert chunks == [(0, 50), (1, 50)] and len(e.scheduler.waiting) == 1


def test_s24_max_num_seqs():
    e = make_engine(num_blocks=100, max_num_seqs=2, max_num_batched_tokens=1000)
    for i in range(4):
        e.add_request(req(i, 10))
    chunks, _ = step(e)
    assert [c[0] for c in chunks] == [0, 1] and len(e.scheduler.waiting) == 2


@pytest.mark.parametrize("chunked,expected", [(True, [(0, 800), (1, 224)]), (False, [(0, 800)])])
def test_s25_long_prompts_with_and_without_chunking(chunked, expected):
    e = make_engine(num_blocks=200, max_num_batched_tokens=1024, max_num_seqs=3,
                    chunked_prefill=chunked)
    for i, n in enumerate([800, 800, 10, 10]):
        e.add_request(req(i, n))
    chunks, _ = step(e)
    assert chunks == expected  # no skipping ahead to the short requests


def test_s27a_single_long_prompt_chunks_and_samples_after_last_chunk():
    e = make_engine(num_blocks=100, max_num_batched_tokens=50, max_num_seqs=16)
    s = e.add_request(req(0, 80, out=3))
    assert step(e)[0] == [(0, 50)] and s.first_token_s is None and s.num_tokens == 80
    assert step(e)[0] == [(0, 30)] and s.first_token_s is not None and s.num_tokens == 81


def test_s27b_chunk_gets_budget_left_after_decodes():
    e = make_engine(num_blocks=100, max_num_batched_tokens=50, max_num_seqs=16)
    e.add_request(req(0, 4, out=10))
    assert step(e)[0] == [(0, 4)]
    chk = e.add_request(req(1, 80, out=2))
    assert step(e) == ([(1, 49)], [0])
    assert len(chk.block_table) == 4  # blocks for computed + new tokens only (ceil(49/16))
    assert step(e) == ([(1, 31)], [0])


def test_s27b_prefill_first_defers_decodes():
    e = make_engine(num_blocks=100, max_num_batched_tokens=50, max_num_seqs=16,
                    chunked_prefill=False)
    e.add_request(req(0, 4, out=10))
    step(e)
    e.add_request(req(1, 80, out=5))
    assert step(e) == ([(1, 50)], [])
    assert step(e) == ([(1, 30)], [])
    assert step(e) == ([], [0, 1])


def admission_order(policy, prios_arrivals, outs=None):
    e = make_engine(num_blocks=100, max_num_seqs=1, policy=policy)
    reqs = [req(i, 8 + (outs or [0] * 8)[i], out=1, t=a, prio=p) for i, (p, a) in enumerate(prios_arrivals)]
    for r in sorted(reqs, key=lambda r: r.request_id):
        e.add_request(r)
    order = []
    while e.has_work:
        chunks, _ = step(e)
        order += [c[0] for c in chunks]
    return order


def test_s28_priority_order():
    assert admission_order("priority", [(2, 1), (0, 2), (1, 3)]) == [1, 2, 0]
    assert admission_order("priority", [(2, 1), (1, 3), (1, 2), (0, 4)]) == [3, 2, 1, 0]
    assert admission_order("priority", [(0, 4), (0, 1), (0, 3), (0, 2)]) == [1, 3, 2, 0]


def test_sjf_order_shortest_prompt_plus_output_first():
    # prompt = 8 + extra; output 1 for all
    assert admission_order("sjf", [(0, 0), (0, 1), (0, 2)], outs=[30, 10, 20]) == [1, 2, 0]


def test_fcfs_preempts_most_recently_admitted():
    e = make_engine(num_blocks=4, max_num_batched_tokens=200, max_num_seqs=4,
                    enable_prefix_caching=False)
    a = e.add_request(req(0, 16, out=40))
    b = e.add_request(req(1, 16, out=40))
    step(e)  # both prefilled: 1 block each
    for _ in range(40):
        step(e)
        if b.num_preemptions or a.num_preemptions:
            break
    assert b.num_preemptions == 1 and a.num_preemptions == 0
    assert b.status is Status.WAITING and e.scheduler.waiting.peek() is b


def test_s31_priority_preemption_and_recompute_resumption():
    e = make_engine(num_blocks=4, max_num_seqs=2, max_num_batched_tokens=200, policy="priority",
                    enable_prefix_caching=False)
    low = e.add_request(req(0, 30, out=10, prio=1, ids=[0] * 30))
    assert step(e)[0] == [(0, 30)] and low.num_tokens == 31
    high = e.add_request(req(1, 32, out=2, prio=0, ids=[1] * 32))
    assert step(e) == ([(1, 32)], [0])
    assert e.bm.num_free == 0 and low.num_tokens == 32 and high.num_tokens == 33
    chunks, decodes = step(e)  # high needs a 3rd block: low (lower priority) is preempted
    assert low.status is Status.WAITING and low.num_preemptions == 1
    assert chunks == [] and decodes == [1]
    assert high.status is Status.FINISHED
    chunks, _ = step(e)
    assert chunks == [(0, 32)]  # 30 prompt + 2 generated tokens recomputed


def test_swap_preemption_resumes_without_recompute():
    e = make_engine(num_blocks=4, max_num_batched_tokens=200, max_num_seqs=4,
                    preemption_mode="swap", enable_prefix_caching=False)
    a = e.add_request(req(0, 16, out=40))
    b = e.add_request(req(1, 16, out=40))
    while not b.num_preemptions:
        step(e)
    assert b.status is Status.SWAPPED and b.host_blocks and b.block_table == []
    while e.has_work:
        chunks, _ = step(e)
        assert all(c[0] != 1 for c in chunks)  # b is never re-prefilled
    assert a.status is b.status is Status.FINISHED and b.num_output_tokens == 40


def test_swap_of_a_prefill_one_token_short_resumes_its_prefill():
    """A prompt swapped out with one token left to prefill (computed == num_tokens - 1, as a
    decoding sequence's) resumes as a prefill on swap-in and gets its first token from it
    (found by tests/core/test_properties.py: it used to rejoin as a decode and finish with no
    first token)."""
    from nanosim.core.request import Request
    from nanosim.sim.simulator import simulate

    e = make_engine(num_blocks=17, block_size_tokens=3, max_num_seqs=4, max_num_batched_tokens=15,
                    chunked_prefill=False, policy="priority", preemption_mode="swap",
                    enable_prefix_caching=False, host_blocks=10, max_model_len=200)
    reqs = [Request(0, 0.0, 31, 2, priority=1), Request(1, 0.0, 1, 2), Request(2, 0.0, 1, 3),
            Request(3, 0.0, 12, 3), Request(4, 0.0, 1, 3)]
    simulate(e, reqs, fast_forward=False, check_every_step=True)
    long = e.seqs[0]
    assert long.num_preemptions == 1 and long.status is Status.FINISHED
    assert long.first_token_s is not None and long.num_output_tokens == 2
    assert long.first_token_s < long.finish_s


def test_swap_of_a_recomputing_prefill_resumes_its_prefill():
    """A sequence preempted by recompute (host pool too small to swap) and then swapped out
    part-way through re-prefilling its prompt and outputs resumes that prefill on swap-in:
    fast-forward and stepping agree (found by tests/core/test_properties.py)."""
    import pandas as pd

    from nanosim.core.request import Request
    from nanosim.sim.simulator import simulate

    spec = [(0, 0.0, 28, 7), (1, 0, 1, 1), (2, 0, 1, 1), (3, .0005, 1, 1), (4, .0005, 1, 1),
            (5, .0005, 3, 9), (6, .0035, 1, 1), (7, .0035, 3, 2), (8, .0035, 1, 1), (9, .0035, 7, 1)]
    tables = []
    for ff in (False, True):
        e = make_engine(num_blocks=12, block_size_tokens=3, max_num_seqs=6, max_num_batched_tokens=19,
                        chunked_prefill=True, policy="sjf", preemption_mode="swap",
                        enable_prefix_caching=False, host_blocks=2, max_model_len=200)
        simulate(e, [Request(i, t, p, o) for i, t, p, o in spec], fast_forward=ff, check_every_step=True)
        tables.append(e.results())
        assert all(s.status is Status.FINISHED for s in e.seqs.values())
    pd.testing.assert_frame_equal(tables[0][1], tables[1][1], check_exact=True)


def test_s35_never_fits_is_rejected_and_run_goes_on():
    e = make_engine(num_blocks=4)
    big = e.add_request(req(0, 256, out=4))
    ok = e.add_request(req(1, 10, out=2))
    assert big.status is Status.REJECTED and "KV blocks" in big.reject_reason
    while e.has_work:
        step(e)
    assert ok.status is Status.FINISHED


def test_prompt_longer_than_max_model_len_rejected():
    e = make_engine(num_blocks=400, max_model_len=100)
    s = e.add_request(req(0, 101))
    assert s.status is Status.REJECTED and "max_model_len" in s.reject_reason


def test_s36_no_leak_after_completion():
    e = make_engine(num_blocks=20)
    for i in range(5):
        e.add_request(req(i, 10, out=10, ids=[i] * 10))
        step(e)
    while e.has_work:
        step(e)
    assert e.bm.num_free == 20 and all(r == 0 for r in e.bm.ref)
    req_df, _ = e.results()
    assert list(req_df.output_tokens) == [10] * 5


def test_s19_cache_stats_counted_once_at_admission():
    e = make_engine(num_blocks=4, max_num_batched_tokens=200)
    e.add_request(req(0, 32, out=2, ids=[0] * 32))
    while e.has_work:
        step(e)
    blocker = e.add_request(req(1, 20, out=5, ids=[5] * 20))  # never needs a 3rd block
    step(e)  # blocker holds 2 blocks; 2 free (cached zeros)
    r = e.add_request(req(2, 48, out=2, ids=[0] * 48))
    step(e)  # R needs 3 blocks (2 hits are the 2 free blocks): admission fails
    assert r.status is Status.WAITING
    assert (e.bm.stat_requests, e.bm.stat_query_tokens, e.bm.stat_hit_tokens) == (2, 52, 0)
    while r.status is Status.WAITING:
        step(e)
    assert (e.bm.stat_requests, e.bm.stat_query_tokens, e.bm.stat_hit_tokens) == (3, 100, 32)
    assert r.num_cached_tokens == 32 and blocker.status is not Status.REJECTED


def test_prefill_first_swap_in_never_mixes_prefill_and_decode():
    from nanosim.core.step_plan import StepPlan

    e = make_engine(num_blocks=8, chunked_prefill=False, preemption_mode="swap", host_blocks=16)
    b = e.add_request(req(1, 16, out=40))
    step(e)
    step(e)
    e.scheduler._preempt(b, StepPlan(100))  # b goes to host memory while decoding
    assert b.status is Status.SWAPPED
    e.add_request(req(2, 16, out=3))
    chunks, decodes = step(e)  # b swapped back in and c admitted in the same step
    assert b.status is Status.RUNNING and chunks == [(2, 16)] and decodes == []
    chunks, decodes = step(e)
    assert chunks == [] and decodes == [1, 2]


def test_a_prefill_that_preempts_itself_does_not_stall_the_engine():
    """sjf: a running prefill that needs blocks preempts the running request with the
    largest key, here itself (recomputed: the host pool is full); that step then has nothing
    to run (vLLM runs it empty). The next step is planned at once: the other prefill runs,
    every request finishes, and fast-forward still equals stepping (found by
    test_properties' hypothesis search: it raised NoProgressError before)."""
    import pandas as pd

    from nanosim.sim.simulator import simulate

    reqs = [Request(0, 0.0, 1, 1), Request(1, 0.0, 1, 1), Request(2, 0.0, 15, 21), Request(3, 0.0, 1, 1),
            Request(4, 0.02, 16, 10), Request(5, 0.02, 2, 12)]
    tables = []
    for ff in (False, True):
        e = make_engine(num_blocks=37, block_size_tokens=1, max_num_seqs=3, max_num_batched_tokens=18,
                        policy="sjf", preemption_mode="swap", enable_prefix_caching=False, host_blocks=1,
                        max_model_len=200)
        simulate(e, reqs, fast_forward=ff, check_every_step=True)
        assert all(s.status is Status.FINISHED for s in e.seqs.values())
        tables.append(e.results())
    req, steps = tables[0]
    assert req.preemptions.sum() > 0
    pd.testing.assert_frame_equal(req, tables[1][0], check_exact=True)
    pd.testing.assert_frame_equal(steps, tables[1][1], check_exact=True)
