"""The steady-decode fast path on CPU: InputPacker.pack_next edits the last decode-graph pack
in place; it must leave exactly what a fresh pack of the next step writes. GpuBackend picks
it when a decode step's sequences all decoded in the previous step; an engine run with it
must produce the same tokens as one without (a fake runner whose tokens are a function of
the packed inputs, so a wrong position, token, slot or block id changes the output)."""
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch

from nanosim.config import EngineConfig, ModelSpec
from nanosim.core.batch import PACKED, STEADY, SUBSET, StepShape, with_decode_paths
from nanosim.core.engine import Engine
from nanosim.core.request import Request
from nanosim.gpu.backend import GpuBackend, SamplingParams
from nanosim.gpu.inputs import InputPacker, SeqWork
from nanosim.gpu.runner import StepOutput

BS, WIDTH, BLOCKS, GRAPH_MAX = 4, 8, 64, 16
ROW_FIELDS = ("input_ids", "positions", "slot_mapping", "seq_lens", "top_k", "temperature", "top_p",
              "decode_order")


def packer() -> InputPacker:
    return InputPacker(torch.device("cpu"), BS, 64, GRAPH_MAX, WIDTH, GRAPH_MAX, base_seed=7)


def fields(p: InputPacker) -> dict[str, np.ndarray]:
    return {f: p.graph.np[a:b].copy() for f, (a, b) in p.graph_layout.items()}


def assert_same_step(got: InputPacker, want: InputPacker, B: int, G: int, greedy: bool) -> None:
    g, w = fields(got), fields(want)
    for f in ROW_FIELDS:
        np.testing.assert_array_equal(g[f][:G], w[f][:G], err_msg=f)
    np.testing.assert_array_equal(g["logits_indices"][:B], w["logits_indices"][:B])
    np.testing.assert_array_equal(g["query_start_loc"][:B + 1], w["query_start_loc"][:B + 1])
    bt_g, bt_w = g["block_tables"].reshape(-1, WIDTH), w["block_tables"].reshape(-1, WIDTH)
    need = -(-w["seq_lens"][:B] // BS)
    for i in range(B):
        np.testing.assert_array_equal(bt_g[i, :need[i]], bt_w[i, :need[i]], err_msg=f"row {i}")
    assert ((bt_g[:G] >= 0) & (bt_g[:G] < BLOCKS)).all()  # padding rows read valid blocks
    if not greedy:
        np.testing.assert_array_equal(g["u"][:B], w["u"][:B])


def decode_works(starts, tables, tokens, temps, seeds=None) -> list[SeqWork]:
    seeds = seeds or [100 + i for i in range(len(starts))]
    return [SeqWork([t], s, tab, True, temp, 0, 1.0, seed)
            for s, tab, t, temp, seed in zip(starts, tables, tokens, temps, seeds)]


@pytest.mark.parametrize("temps", [[0.0] * 5, [0.7, 0.0, 1.0, 0.5, 0.9]])
def test_pack_next_equals_a_fresh_pack_over_steps_subsets_and_new_blocks(temps):
    rng = np.random.default_rng(0)
    starts = [2, 3, 6, 7, 11]  # rows 1 and 3 start a new block at their next position
    tables = [list(range(5 * i, 5 * i + 5)) for i in range(5)]
    live = [t[:-(-(s + 1) // BS)] for s, t in zip(starts, tables)]  # what the scheduler allocated
    inc, ref = packer(), packer()
    works = decode_works(starts, live, rng.integers(0, 99, 5).tolist(), temps)
    inc.pack(works, BLOCKS, graph_bs=8)
    rows = list(range(5))
    for keep in (None, [0, 2, 3, 4], [3, 0, 1], None):
        kept = rows if keep is None else [rows[i] for i in keep]
        for r in kept:  # the scheduler appends a block when the new position needs one
            starts[r] += 1
            if len(live[r]) < -(-(starts[r] + 1) // BS):
                live[r].append(tables[r][len(live[r])])
        tokens = rng.integers(0, 99, len(kept))
        G = 8 if len(kept) > 4 else 4
        inc.pack_next([live[r] for r in kept], keep, tokens, BLOCKS, G)
        ref.pack(decode_works([starts[r] for r in kept], [live[r] for r in kept], tokens.tolist(),
                              [temps[r] for r in kept], [100 + r for r in kept]), BLOCKS, graph_bs=G)
        assert_same_step(inc, ref, len(kept), G, greedy=not any(temps[r] > 0 for r in kept))
        rows = kept


def test_pack_next_refuses_a_missing_block_and_needs_a_graph_pack():
    p = packer()
    with pytest.raises(RuntimeError, match="needs a decode-graph pack"):
        p.pack_next([[0]], None, np.array([1]), BLOCKS, 1)
    p.pack(decode_works([3], [[0]], [5], [0.0]), BLOCKS, graph_bs=1)  # next position 4: block 1
    with pytest.raises(ValueError, match="needs block 1"):
        p.pack_next([[0]], None, np.array([1]), BLOCKS, 1)


class PackingRunner:
    """A runner without a model: it packs like ModelRunner (a decode-graph layout for
    decode-only steps, eager otherwise) and 'samples' a hash of each row's packed token,
    position, slot and block table, so the tokens depend on everything the packer writes."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec, self.block_size, self.num_kv_blocks = spec, BS, BLOCKS
        self.packer = packer()
        self.can_step_next, self.calls = False, {"step": 0, "step_next": 0}
        self._tables = None

    def _sample(self, inp, n_rows: int) -> list[int]:
        ids = inp.input_ids.numpy()[inp.logits_indices.numpy()].astype(np.int64)
        pos = inp.positions.numpy()[inp.logits_indices.numpy()].astype(np.int64)
        slot = inp.meta.slot_mapping.numpy()[inp.logits_indices.numpy()].astype(np.int64)
        return ((ids * 31 + pos * 7 + slot * 3) % self.spec.vocab_size).tolist()

    def step(self, works):
        self.calls["step"] += 1
        decode = all(len(w.token_ids) == 1 for w in works) and len(works) <= GRAPH_MAX
        gbs = min(b for b in (1, 2, 4, 8, 16) if b >= len(works)) if decode else None
        inp = self.packer.pack(works, BLOCKS, gbs)
        toks = self._sample(inp, len(works))
        self.can_step_next = bool(decode and inp.num_samples == len(works))
        self._tables, self._tokens = [w.block_table for w in works], np.array(toks)
        return StepOutput(toks, 0.001, 0.001)

    def step_next(self, keep):
        self.calls["step_next"] += 1
        tokens = self._tokens if keep is None else self._tokens[keep]
        if keep is not None:
            self._tables = [self._tables[i] for i in keep]
        gbs = min(b for b in (1, 2, 4, 8, 16) if b >= len(tokens))
        inp = self.packer.pack_next(self._tables, keep, tokens, BLOCKS, gbs)
        toks = self._sample(inp, len(tokens))
        self._tokens = np.array(toks)
        return StepOutput(toks, 0.001, 0.001)


def run_engine(fast: bool, num_blocks: int = BLOCKS):
    spec = ModelSpec("tiny", hidden_size=64, num_layers=1, num_q_heads=2, num_kv_heads=1, head_dim=32,
                     intermediate_size=64, vocab_size=97, max_position_embeddings=WIDTH * BS)
    runner = PackingRunner(spec)
    backend = GpuBackend(runner, fast_decode=fast)
    cfg = EngineConfig(block_size_tokens=BS, max_num_seqs=GRAPH_MAX, max_num_batched_tokens=64,
                       max_model_len=WIDTH * BS)
    eng = Engine(cfg, backend, num_blocks)
    seqs = []
    rng = np.random.default_rng(1)
    arrivals = {0: 5, 6: 2, 15: 3}  # step -> new requests (joiners take the slow path once)
    t, rid = 0.0, 0
    for step in range(200):
        for _ in range(arrivals.get(step, 0)):
            p, o = int(rng.integers(3, 9)), int(rng.integers(4, 20))
            sp = SamplingParams(temperature=0.0, max_tokens=o, ignore_eos=True)
            seqs.append(eng.add_request(Request(rid, t, p, o), o, sp))
            rid += 1
        if not eng.has_work:
            break
        t += eng.step(t)
    return [s.output_ids for s in seqs], runner.calls, eng


@pytest.mark.parametrize("num_blocks", [BLOCKS, 14])  # 14 blocks: preemptions
def test_engine_tokens_identical_with_and_without_the_fast_path(num_blocks):
    slow, calls_slow, _ = run_engine(False, num_blocks)
    fast, calls_fast, eng = run_engine(True, num_blocks)
    assert fast == slow
    assert all(len(o) > 0 for o in fast)
    assert calls_slow["step_next"] == 0
    assert calls_fast["step_next"] > calls_fast["step"]  # steady decoding took the fast path
    if num_blocks == 14:
        assert eng.results()[0].preemptions.sum() > 0


def test_fast_rows_only_for_sequences_that_decoded_last_step():
    from types import SimpleNamespace

    spec = ModelSpec("t", 64, 1, 2, 1, 32, 64, 97, 32)
    backend = GpuBackend(PackingRunner(spec))
    a, b, c = object(), object(), object()

    def batch(decs, path):
        return SimpleNamespace(decodes=decs, shape=StepShape(num_decode_seqs=len(decs), decode_path=path))

    assert backend._fast_rows(batch([a], STEADY)) is False  # nothing armed yet
    backend._prev_decodes = [a, b]  # as a CUDA-graph decode step of rows a, b leaves it
    assert backend._fast_rows(batch([a, b], STEADY)) is None
    assert backend._fast_rows(batch([b], SUBSET)) == [1]
    assert backend._fast_rows(batch([a, b], PACKED)) is False  # the scheduler says: packed
    assert backend._fast_rows(batch([b, c], SUBSET)) is False  # (a check) c did not decode last step
    off = GpuBackend(PackingRunner(spec), fast_decode=False)
    off._prev_decodes = [a, b]
    assert off._fast_rows(batch([a, b], STEADY)) is False


def test_scheduler_paths_are_the_rows_that_decoded_last_step():
    """The decode path the scheduler puts in each step's shape (what the cost models price)
    is steady or subset exactly when every decode row decoded in the previous step, a
    decode-only step, and this one has no prefill or swaps; a recorded run's paths are what
    with_decode_paths derives from its shapes in order."""
    from nanosim.calibrate.validate import RecordingBackend

    seen = []

    class Watch(RecordingBackend):
        def execute(self, batch):
            seen.append((batch.shape, [id(s) for s in batch.decodes]))
            return super().execute(batch)

    spec = ModelSpec("tiny", hidden_size=64, num_layers=1, num_q_heads=2, num_kv_heads=1, head_dim=32,
                     intermediate_size=64, vocab_size=97, max_position_embeddings=WIDTH * BS)
    rec = Watch(GpuBackend(PackingRunner(spec)))
    cfg = EngineConfig(block_size_tokens=BS, max_num_seqs=GRAPH_MAX, max_num_batched_tokens=64,
                       max_model_len=WIDTH * BS)
    eng = Engine(cfg, rec, 14)  # few blocks: preemptions drop rows
    rng = np.random.default_rng(1)
    t = 0.0
    for step in range(200):
        for _ in range({0: 5, 6: 2, 15: 3}.get(step, 0)):
            rid = len(eng.seqs)
            p, o = int(rng.integers(3, 9)), int(rng.integers(4, 20))
            eng.add_request(Request(rid, t, p, o), o, SamplingParams(temperature=0.0, max_tokens=o, ignore_eos=True))
        if not eng.has_work:
            break
        t += eng.step(t)
    prev, fast = None, Counter()
    for shape, rows in seen:
        plain = not (shape.num_prefill_seqs or shape.swap_blocks) and rows
        stayed = prev is not None and plain and set(rows) <= set(prev)
        assert (shape.decode_path != PACKED) == stayed, (shape, rows, prev)
        if stayed:
            assert shape.decode_path == (STEADY if rows == prev else SUBSET)
        fast[shape.decode_path] += 1
        prev = rows if rows and not shape.num_prefill_seqs else None
    assert fast[STEADY] > 0 and fast[SUBSET] > 0 and fast[PACKED] > 0
    assert eng.results()[0].preemptions.sum() > 0
    assert with_decode_paths([replace(s, decode_path=PACKED) for s in rec.shapes]) == rec.shapes


def test_profile_times_decode_points_on_the_fast_path():
    from nanosim.calibrate.profile import serving_between, timer
    from nanosim.calibrate.shapes import Composition

    class Recorder:  # arms step_next after decode-only steps, as ModelRunner with graphs does
        block_size, can_step_next, max_model_len = 4, False, 64

        def __init__(self):
            self.calls, self.tables = [], []

        def step(self, works):
            self.calls.append("step")
            self.tables = [list(w.block_table) for w in works]
            self.can_step_next = all(len(w.token_ids) == 1 for w in works)

        def step_next(self, keep=None):
            self.calls.append("step_next")

    r, packed = Recorder(), {}
    comp = Composition(num_decodes=2, decode_context=8)
    timer(r, reps=3, warmup=1, min_time_s=0.0, packed=packed)(comp)
    assert r.calls == ["step"] + ["step"] + ["step_next"] * 4  # one run gives 4 >= 3 times
    assert list(packed) == [comp] and len(packed[comp]) == 1  # the packed step()s' median
    r.calls.clear()
    timer(r, reps=6, warmup=0, min_time_s=0.0, next_steps=2)(comp)
    assert r.calls == (["step"] + ["step_next"] * 2) * 3
    r.calls.clear()
    r.max_num_seqs, r.num_kv_blocks, sub = 8, 100, {}
    timer(r, reps=4, warmup=0, min_time_s=0.0, subset=sub)(comp)  # + a row-dropping step_next
    assert r.calls == ["step"] + ["step_next"] * 4 + ["step", "step_next"]
    assert len(r.tables) == 3 and list(sub) == [comp] and len(sub[comp]) == 1
    assert [len(t) for t in r.tables] == [3, 3, 3]  # 8 tokens = 2 blocks, + a spare for position 8
    r.calls.clear()
    timer(r, reps=3, warmup=1, min_time_s=0.0)(Composition(num_decodes=2, decode_context=64))
    assert r.calls == ["step"] * 4  # at max_model_len: no next step to time
    r.calls.clear()
    timer(r, reps=3, warmup=0, min_time_s=0.0)(Composition(num_decodes=2, decode_context=60))
    assert r.calls == ["step"] + ["step_next"] * 4  # positions 60..63 still fit
    r.calls.clear()
    timer(r, reps=3, warmup=1, min_time_s=0.0)(Composition(num_prefills=1, chunk=8, cached=0))
    assert r.calls == ["step"] * 4
    r.calls.clear()
    r.max_model_len = 4096
    serving_between(r)(Composition(num_prefills=1, chunk=8, cached=0))  # serving's steady decoding
    assert r.calls == ["step"] + ["step_next"] * 7
    r.calls.clear()
    serving_between(r, chunk=16)(Composition(num_decodes=2, decode_context=8))  # a sequence joins
    assert r.calls == ["step"] and r.tables == [[0, 1, 2, 3]]  # one 16-token prefill chunk


def test_decode_order_puts_the_longest_contexts_first():
    p = packer()
    works = decode_works([2, 9, 5, 9], [[0], [1, 2, 3], [4, 5], [6, 7, 8]], [1, 2, 3, 4], [0.0] * 4)
    inp = p.pack(works, BLOCKS, graph_bs=8)  # padding rows (context 1) last
    assert inp.meta.decode_order.tolist() == [1, 3, 2, 0, 4, 5, 6, 7]
    eager = p.pack([SeqWork([1, 2, 3], 0, [9], True)] + works, BLOCKS)  # a prefill, then decodes
    assert eager.meta.num_prefills == 1 and eager.meta.decode_order.tolist() == [1, 3, 2, 0]


def test_an_eager_pack_between_leaves_the_graph_buffer_advanceable():
    p, ref = packer(), packer()
    works = decode_works([5, 6], [[0, 1], [2, 3]], [1, 2], [0.0, 0.0])
    p.pack(works, BLOCKS, graph_bs=2)
    p.pack([SeqWork([1, 2, 3], 0, [9], True)], BLOCKS)  # e.g. runner.logits(): eager layout
    p.pack_next([[0, 1], [2, 3]], None, np.array([7, 8]), BLOCKS, 2)
    ref.pack(decode_works([6, 7], [[0, 1], [2, 3]], [7, 8], [0.0, 0.0]), BLOCKS, graph_bs=2)
    assert_same_step(p, ref, 2, 2, greedy=True)
