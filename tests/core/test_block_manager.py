"""Block manager semantics on hand-worked cases (../shared/SCENARIOS.md, ids 0-based)."""
from nanosim.core.block_manager import BlockManager
from nanosim.core.request import Request
from nanosim.core.sequence import Sequence

C = [0] * 16 + [1] * 16 + [2] * 16  # 48 tokens = 3 full blocks of 16


def seq(i, ids, out=4):
    s = Sequence(Request(i, 0.0, len(ids), out, prompt_token_ids=tuple(ids)))
    s.prompt_ids = s.req.token_ids()
    return s


def admit(bm, s, num_slots=None):
    hits = bm.lookup(s)
    ok = bm.allocate(s, num_slots or s.num_tokens, hits)
    if ok:
        s.num_computed_tokens = num_slots or s.num_tokens
    return ok, hits


def test_s01_s02_s03_s04_first_alloc_hit_refcounts_free_order_reuse():
    bm = BlockManager(10, 16)
    a = seq(0, C + [3] * 7)
    ok, hits = admit(bm, a)
    assert ok and hits == [] and a.block_table == [0, 1, 2, 3]
    assert [bm.block_hash[b] is not None for b in range(4)] == [True, True, True, False]
    assert bm.ref[:4] == [1, 1, 1, 1]
    b = seq(1, C + [3] * 5)
    ok, hits = admit(bm, b)
    assert hits == [0, 1, 2] and b.block_table == [0, 1, 2, 4]
    assert bm.ref[:3] == [2, 2, 2] and bm.num_free == 5
    bm.free_seq(a)
    bm.free_seq(b)
    # unhashed partial blocks prepended; never-used in the middle; shared prefix tail-first
    assert list(bm.free) == [4, 3, 5, 6, 7, 8, 9, 2, 1, 0]
    c2 = seq(2, C + [3] * 6)
    ok, hits = admit(bm, c2)
    assert hits == [0, 1, 2] and c2.block_table == [0, 1, 2, 4] and bm.num_free == 6
    assert all(bm.ref[x] == 0 for x in bm.free)
    bm.check([c2])


def test_s06_block_hashed_only_when_full():
    bm = BlockManager(10, 16)
    a = seq(0, C + [3] * 7)
    admit(bm, a)
    a.output_ids = list(range(100, 123))  # generated tokens known (real mode)
    assert bm.allocate(a, 59) and len(a.block_table) == 4
    assert bm.block_hash[a.block_table[3]] is None
    assert bm.allocate(a, 78) and len(a.block_table) == 5
    assert bm.block_hash[a.block_table[3]] is not None and bm.block_hash[a.block_table[4]] is None


def test_s08_reused_block_loses_old_hash():
    bm = BlockManager(1, 16)
    a = seq(0, list(range(16)))
    admit(bm, a, 16)
    h = bm.block_hash[0]
    assert bm.cached == {h: {0: None}}
    bm.free_seq(a)
    b = seq(1, list(range(15)))
    admit(bm, b)
    assert b.block_table == [0] and bm.block_hash[0] is None and h not in bm.cached


def test_s10_failed_allocation_changes_nothing():
    bm = BlockManager(10, 16)
    r0 = seq(0, C)
    admit(bm, r0)
    r1 = seq(1, C + C)
    ok, hits = admit(bm, r1)
    assert hits == [0, 1, 2] and r1.block_table == [0, 1, 2, 3, 4, 5]
    bm.free_seq(r1)
    r2 = seq(2, [7] * 32)
    admit(bm, r2)
    assert bm.num_free == 5
    r3 = seq(3, C + C + C)
    hits = bm.lookup(r3)
    assert len(hits) == 6  # 96 tokens hit; 3 of the 5 "free" blocks are its own hits
    before = (list(bm.ref), list(bm.free), {k: dict(v) for k, v in bm.cached.items()})
    assert not bm.allocate(r3, 144, hits)
    assert (list(bm.ref), list(bm.free), {k: dict(v) for k, v in bm.cached.items()}) == before
    assert [bm.ref[b] for b in range(6)] == [1, 1, 1, 0, 0, 0]
    assert r3.block_table == []


def test_s15_exact_multiple_prompt_recomputes_last_block():
    bm = BlockManager(10, 16)
    a = seq(0, C)
    admit(bm, a)
    a.num_computed_tokens = 48
    bm.free_seq(a)
    b = seq(1, C)
    hits = bm.lookup(b)
    assert len(hits) * 16 == 32  # max hit = num_tokens - 1, whole blocks
    a33, b33 = seq(2, [5] * 33), seq(3, [5] * 33)
    admit(bm, a33)
    bm.free_seq(a33)
    assert len(bm.lookup(b33)) * 16 == 32  # 33 - 32 = 1 token left to compute


def test_s16_hash_chain_depends_on_parent():
    bm = BlockManager(10, 16)
    x, y = [7] * 16, [8] * 16
    a = seq(0, x + y + [1])
    admit(bm, a)
    b = seq(1, y + x + [1])
    assert bm.lookup(b) == []


def test_s37_identical_prompts_admitted_together_share_blocks():
    bm = BlockManager(10, 16)
    a, b = seq(0, C + [9]), seq(1, C + [9])
    admit(bm, a)
    ok, hits = admit(bm, b)  # same step: a's full blocks were hashed at allocation
    assert hits == a.block_table[:3] and bm.ref[a.block_table[0]] == 2


def test_length_only_prompts_never_share_but_hit_themselves():
    bm = BlockManager(10, 16)
    a = Sequence(Request(0, 0.0, 40, 4))
    b = Sequence(Request(1, 0.0, 40, 4))
    admit(bm, a)
    assert bm.lookup(b) == []
    a.num_computed_tokens = 40
    bm.free_seq(a)
    a.num_computed_tokens = 0
    a.num_preemptions = 1  # as the scheduler marks a recompute victim
    assert len(bm.lookup(a)) == 2  # a preempted request finds its own blocks


def test_swap_out_and_in_round_trip():
    bm = BlockManager(6, 16, num_host_blocks=4)
    a = seq(0, C + [1])
    admit(bm, a)
    pairs = bm.swap_out(a)
    assert len(pairs) == 4 and a.block_table == [] and len(a.host_blocks) == 4
    bm.check([a])
    assert bm.num_free == 6  # every GPU block came back
    back = bm.swap_in(a)
    assert len(back) == 4 and len(a.block_table) == 4 and a.host_blocks == []
    bm.check([a])


def test_swap_out_refused_when_host_pool_full():
    bm = BlockManager(8, 16, num_host_blocks=2)
    a = seq(0, C)
    admit(bm, a)
    assert bm.swap_out(a) is None and len(a.block_table) == 3


def test_check_detects_corruption():
    bm = BlockManager(4, 16)
    a = seq(0, C)
    admit(bm, a)
    bm.ref[0] += 1
    try:
        bm.check([a])
    except AssertionError:
        pass
    else:
        raise AssertionError("check() missed a wrong ref count")


def test_stats_count_each_request_once():
    bm = BlockManager(10, 16)
    bm.record_admission(48, 32)
    assert (bm.stat_requests, bm.stat_query_tokens, bm.stat_hit_tokens) == (1, 48, 32)
