"""Engine.abort: a request ended early (a client disconnect in `nanosim serve`) leaves the
engine wherever it is, frees its GPU/host blocks, and the block manager's invariants hold."""
import pytest

from nanosim.core.sequence import Status
from tests.core.toy import make_engine, req


def run_until(e, cond, t=0.0, limit=200):
    for _ in range(limit):
        if cond():
            return t
        t += e.step(t)
        e.check()
    raise AssertionError("condition never met")


@pytest.mark.parametrize("policy", ["fcfs", "priority"])
def test_abort_waiting_prefilling_and_decoding(policy):
    e = make_engine(num_blocks=40, max_num_seqs=2, max_num_batched_tokens=64, policy=policy)
    for i in range(4):  # 0 decodes after step 1, 1 is chunked, 2 and 3 wait (max_num_seqs 2)
        e.add_request(req(i, 40 + i, out=50, ids=[i + 1] * (40 + i)))
    t = e.step(0.0)
    s = e.seqs
    assert s[0].group is not None and 1 in e.scheduler.prefilling and s[2].status is Status.WAITING
    assert e.abort(2, t) and s[2].status is Status.ABORTED  # waiting
    assert e.abort(1, t) and 1 not in e.scheduler.running  # mid-prefill
    e.check()
    t = run_until(e, lambda: s[0].group is not None and s[3].status is Status.RUNNING, t)
    used = e.bm.num_used
    assert e.abort(0, t) and e.bm.num_used < used  # decoding: its blocks went back
    e.check()
    assert not e.abort(0, t)  # already gone
    run_until(e, lambda: not e.has_work, t)
    req_df, _ = e.results()
    assert e.bm.num_used == 0 and e.bm.num_free == e.bm.num_blocks
    aborted = req_df[req_df.request_id.isin([0, 1, 2])]
    assert aborted.finish_s.isna().all() and (aborted.output_tokens == 0).all()
    assert req_df.set_index("request_id").loc[3, "output_tokens"] == 50


def test_abort_swapped_frees_host_blocks_and_stop_reason_finishes():
    e = make_engine(num_blocks=12, max_num_seqs=4, max_num_batched_tokens=512,
                    preemption_mode="swap", host_blocks=32)
    for i in range(3):
        e.add_request(req(i, 40, out=60, ids=[i + 1] * 40))
    t = run_until(e, lambda: bool(e.scheduler.swapped))
    victim = e.scheduler.swapped[0]
    host_free = len(e.bm.host_free)
    assert e.abort(victim.seq_id, t) and len(e.bm.host_free) > host_free
    e.check()
    live = next(iter(e.scheduler.running.values()))
    assert e.abort(live.seq_id, t, reason="stop")  # a stop string found by the server
    assert live.status is Status.FINISHED and live.finish_reason == "stop" and live.finish_s == t
    e.check()
    run_until(e, lambda: not e.has_work, t)
    assert e.bm.num_used == 0 and len(e.bm.host_free) == e.bm.num_host_blocks
