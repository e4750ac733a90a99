"""Continuous-batching scheduler: one code path for the simulator and the GPU runner.

Modes (EngineConfig.chunked_prefill):
* True (vLLM v1, default): every step runs all decodes first (one token each), then
  prefill chunks of running requests, then newly admitted requests fill the remaining
  token budget; only the last admitted prompt of a step may be cut into a chunk.
  vLLM iterates its running list in admission order, so there a running prefill chunk can
  come before a decode; here decodes always come first (DESIGN.md / issue wording).
* False (nano-vLLM, prefill-first): a step with any prefill has no decodes; only the
  first prompt of a step may be chunked; decodes run when no prefill can be scheduled.
  Blocks are allocated for computed + new tokens in both modes (nano-vLLM allocates the
  whole prompt on the first chunk).

long_prefill_token_threshold > 0 caps every prompt chunk (running or newly admitted) at that
many tokens per step, before the budget cut, as vLLM v1's scheduler does in both its loops.

Admission is head-of-line: when the head of the waiting queue cannot be scheduled the
step stops admitting (no skipping ahead). A step that preempted admits nothing.
Preemption victims: fcfs the most recently admitted running request; priority/sjf the
running request with the largest policy key (lowest priority, latest arrival on ties).
Recompute victims re-enter the waiting queue at the front and may hit their own cached
blocks; swap victims go to host memory (if the host pool is full they are recomputed)
and are swapped back in, oldest first, before new admissions.
"""
from __future__ import annotations

from collections import deque

from nanosim.config import EngineConfig
from nanosim.core.batch import (PACKED, STEADY, SUBSET, PrefillChunk, ScheduledBatch, StepResult,
                                decode_path_after, make_shape)
from nanosim.core.block_manager import BlockManager
from nanosim.core.decode_group import DecodeGroup
from nanosim.core.limits import length_reject_reason
from nanosim.core.sequence import Sequence, Status
from nanosim.core.step_plan import StepPlan
from nanosim.core.waiting import WaitQueue, policy_key


class Scheduler:
    def __init__(self, cfg: EngineConfig, bm: BlockManager, materialize_decodes: bool = False) -> None:
        self.cfg = cfg
        self.bm = bm
        self.waiting = WaitQueue(cfg.policy)
        self.swapped: deque[Sequence] = deque()
        self.running: dict[int, Sequence] = {}  # admission order
        self.prefilling: dict[int, Sequence] = {}  # running, prompt not fully computed yet
        self.group = DecodeGroup(cfg.block_size_tokens)
        self.finished: list[Sequence] = []  # drained by the engine
        self.materialize_decodes = materialize_decodes  # the GPU backend needs the seq list
        self._admit_counter = 0
        self.num_preemptions = 0  # preemption events so far (the metrics take per-step deltas)
        # True when the last step was decode-only and changed nothing that could let a
        # waiting or swapped request in: the next decode-only steps can be fast-forwarded.
        self.quiet = False
        # decode rows of the last step if decode-only, else 0: the next one's StepShape.decode_path
        self.last_decode_rows = 0

    # ---- admission --------------------------------------------------------------------
    def add(self, seq: Sequence) -> bool:
        """Queue a request, or reject it with a reason if it can never be served."""
        reason = self.reject_reason(seq.req.prompt_tokens, seq.max_tokens)
        if reason:
            seq.status, seq.reject_reason = Status.REJECTED, reason
            self.finished.append(seq)
            return False
        self.waiting.push(seq)
        self.quiet = False
        return True

    def reject_reason(self, prompt_tokens: int, max_tokens: int) -> str:
        """Why a request of these lengths can never be served ("" if it can)."""
        return length_reject_reason(self.cfg, self.bm.num_blocks, prompt_tokens, max_tokens)

    @property
    def has_work(self) -> bool:
        return bool(self.running or self.waiting or self.swapped)

    # ---- one step ---------------------------------------------------------------------
    def schedule(self) -> ScheduledBatch:
        if not (self.waiting or self.swapped or self.prefilling):  # most stepped steps
            batch = self._schedule_decode_only()
            if batch is not None:
                return batch
        while True:
            st = StepPlan(self.cfg.max_num_batched_tokens)
            if self.cfg.chunked_prefill:
                self._schedule_decodes(st)
                self._schedule_running_prefills(st)
                if not st.preempted:
                    self._admit(st, chunk_any=True)
            else:
                self._schedule_running_prefills(st)
                if not st.preempted:
                    self._admit(st, chunk_any=False)
                if not st.prefills:
                    self._schedule_decodes(st)
            # a step that only preempted (a running prefill was its own victim, recomputed) runs
            # nothing: vLLM runs it empty; here the next step is planned at once
            if not st.preempted or st.prefills or st.decodes or st.swap_out:
                break
        self.quiet = st.decodes and not (st.prefills or st.preempted or st.swap_in or st.admitted)
        return self._batch(st)

    def _schedule_decode_only(self) -> ScheduledBatch | None:
        """The general path's step when nothing waits, is swapped or mid-prefill and the free
        pool covers every block need due now (no preemption), without a StepPlan: the same
        appends, shape, path and flags. None: the general path plans it."""
        g, bm = self.group, self.bm
        nd = len(g.members)
        if not nd or g.needs_at_most(g.clock + 1) > len(bm.free):
            return None
        for seq in g.pop_needs(g.clock):
            bm.append_block(seq)  # cannot fail: the free pool covers the needs
            g.block_added(seq)
        prev = self.last_decode_rows
        self.last_decode_rows, self.quiet = nd, True
        shape = make_shape(0, 0, 0.0, 0, nd, g.context_tokens, 0, g.max_context_tokens,
                           STEADY if nd == prev else SUBSET if nd < prev else PACKED)
        decodes = list(g.members.values()) if self.materialize_decodes else []
        return ScheduledBatch(shape, [], decodes, [], [])

    def _schedule_decodes(self, st: StepPlan) -> None:
        g = self.group
        for seq in g.pop_needs(g.clock):
            if seq.group is None:  # preempted earlier in this loop
                continue
            while not self.bm.append_block(seq):
                victim = self._victim()
                self._preempt(victim, st)
                if victim is seq:
                    break
            else:
                g.block_added(seq)
        n = len(g.members)  # len(g), without DecodeGroup.__len__'s frame (every step)
        st.decodes = n > 0
        st.budget -= n

    def _schedule_running_prefills(self, st: StepPlan) -> None:
        if not self.prefilling:  # most steps: no prompt mid-prefill
            return
        for seq in list(self.prefilling.values()):
            if st.budget <= 0:
                break
            if seq.status is not Status.RUNNING:  # preempted by an earlier allocation
                continue
            n = min(self._cap(seq.num_tokens - seq.num_computed_tokens), st.budget)
            if not self._allocate_or_preempt(seq, seq.num_computed_tokens + n, st):
                break
            st.add_chunk(PrefillChunk(seq, seq.num_computed_tokens, n))

    def _admit(self, st: StepPlan, chunk_any: bool) -> None:
        bm, cfg = self.bm, self.cfg
        while self.swapped and len(self.running) < cfg.max_num_seqs and st.budget > 0:
            seq = self.swapped[0]
            if not bm.can_swap_in(seq):
                return
            self.swapped.popleft()
            st.swap_in.extend(bm.swap_in(seq))
            self._start_running(seq)
            # it was decoding (or recomputing, with one token left: the same step); a first
            # prefill cut one token short also has computed == num_tokens - 1, but no output
            if seq.num_computed_tokens == seq.num_tokens - 1 and seq.num_output_tokens > 0:
                if seq.num_tokens > len(seq.block_table) * bm.block_size:
                    bm.append_block(seq)  # room guaranteed by can_swap_in
                self.group.join(seq)
                st.budget -= 1
                # chunked: it decodes in this step; prefill-first: with the other decodes,
                # in the next step without prefills (_schedule_decodes sets st.decodes)
                st.decodes = st.decodes or self.cfg.chunked_prefill
            else:
                self.prefilling[seq.seq_id] = seq
        while self.waiting and st.budget > 0 and len(self.running) < cfg.max_num_seqs:
            seq = self.waiting.peek()
            if seq.prompt_ids is None and seq.req.has_content:
                # real tokens for a runner; else only the ids other requests may share
                req = seq.req
                seq.prompt_ids = req.token_ids() if self.materialize_decodes else req.shared_token_ids()
            hits = bm.lookup(seq)
            computed = len(hits) * bm.block_size
            n = self._cap(seq.num_tokens - computed)
            if n > st.budget and (not chunk_any and st.prefills):
                return  # nano-vLLM: only the first prompt of a step may be chunked
            n = min(n, st.budget)
            if not bm.allocate(seq, computed + n, hits):
                return
            self.waiting.pop()
            seq.num_computed_tokens = computed
            if not seq.stats_recorded:
                seq.stats_recorded = True
                seq.num_cached_tokens = computed
                bm.record_admission(seq.num_tokens, computed)
            elif seq.num_preemptions:  # a recompute victim re-admitted: counted apart (vLLM)
                bm.record_admission(seq.num_tokens, computed, preempted=True)
            self._start_running(seq)
            self.prefilling[seq.seq_id] = seq
            st.add_chunk(PrefillChunk(seq, computed, n))
            st.admitted = True

    def _cap(self, num_tokens: int) -> int:
        """vLLM v1: ``if 0 < long_prefill_token_threshold < num_new_tokens`` -> threshold."""
        t = self.cfg.long_prefill_token_threshold
        return t if 0 < t < num_tokens else num_tokens

    def _start_running(self, seq: Sequence) -> None:
        seq.status = Status.RUNNING
        self._admit_counter += 1
        seq.admit_order = self._admit_counter
        self.running[seq.seq_id] = seq

    # ---- preemption -------------------------------------------------------------------
    def _allocate_or_preempt(self, seq: Sequence, num_slots: int, st: StepPlan) -> bool:
        while not self.bm.allocate(seq, num_slots):
            victim = self._victim()
            self._preempt(victim, st)
            if victim is seq:
                return False
        return True

    def _victim(self) -> Sequence:
        if self.cfg.policy == "fcfs":
            return next(reversed(self.running.values()))
        return max(self.running.values(), key=lambda s: policy_key(self.cfg.policy, s))

    def _preempt(self, seq: Sequence, st: StepPlan) -> None:
        st.preempted = True
        self.num_preemptions += 1
        del self.running[seq.seq_id]
        self.prefilling.pop(seq.seq_id, None)
        if seq.group is not None:
            self.group.leave(seq)
        st.drop_chunk(seq)
        seq.num_preemptions += 1
        pairs = None
        if self.cfg.preemption_mode == "swap":
            pairs = self.bm.swap_out(seq)
        if pairs is not None:
            st.swap_out.extend(pairs)
            seq.status = Status.SWAPPED
            self.swapped.append(seq)
        else:
            self.bm.free_seq(seq)
            seq.num_computed_tokens = 0
            seq.status = Status.WAITING
            self.waiting.push_front(seq)

    # ---- batch and postprocess --------------------------------------------------------
    def _batch(self, st: StepPlan) -> ScheduledBatch:
        g = self.group
        nd = len(g.members) if st.decodes else 0
        swaps, prev = len(st.swap_in) + len(st.swap_out), self.last_decode_rows
        decode_only = nd and not st.prefills  # the path: decode_path_after, inline (every step)
        path = (STEADY if nd == prev else SUBSET) if decode_only and not swaps and nd <= prev else PACKED
        self.last_decode_rows = nd if decode_only else 0
        shape = make_shape(  # StepShape(...) built by its slots (field order)
            len(st.prefills), st.prefill_tokens, st.attn_pairs, st.kv_tokens, nd,
            g.context_tokens if nd else 0, swaps, g.max_context_tokens if nd else 0, path)
        decodes = list(g.members.values()) if (nd and self.materialize_decodes) else []
        return ScheduledBatch(shape, st.prefills, decodes, st.swap_in, st.swap_out)

    def postprocess(self, batch: ScheduledBatch, result: StepResult, end_s: float) -> None:
        """Apply a step's outcome at time end_s: counts, sampled tokens, finishes."""
        tokens = result.token_ids
        if batch.shape.num_decode_seqs:
            g = self.group
            if tokens is not None:
                samplers = sum(1 for c in batch.prefills if c.is_last)  # tokens before the decodes'
                for seq, tok in zip(batch.decodes, tokens[samplers:]):
                    seq.output_ids.append(tok)
                    if self._stops(seq, tok):
                        self._finish(seq, end_s, "stop")
            g.clock += 1
            for seq in g.pop_finished():
                self._finish(seq, end_s, "length")
        k = 0
        for c in batch.prefills:
            seq = c.seq
            last = c.is_last
            seq.num_computed_tokens += c.num_tokens
            if not last:
                continue
            tok = None if tokens is None else tokens[k]
            k += 1
            seq.append_token(tok)
            if seq.first_token_s is None:
                seq.first_token_s = end_s
            del self.prefilling[seq.seq_id]
            if seq.num_output_tokens >= seq.max_tokens:
                self._finish(seq, end_s, "length")
            elif tok is not None and self._stops(seq, tok):
                self._finish(seq, end_s, "stop")
            else:
                self.group.join(seq)

    @staticmethod
    def _stops(seq: Sequence, tok: int) -> bool:
        stop_ids = getattr(seq.sampling, "stop_ids", None)
        if not stop_ids or tok not in stop_ids:
            return False
        # vLLM's min_tokens: no stop before that many outputs (here the stop token is still
        # sampled and kept, not masked out of the logits as vLLM does)
        return len(seq.output_ids) > getattr(seq.sampling, "min_tokens", 0)

    def _finish(self, seq: Sequence, end_s: float, reason: str) -> None:
        if seq.group is not None:
            self.group.leave(seq)
        del self.running[seq.seq_id]
        self.bm.free_seq(seq)
        seq.status, seq.finish_s, seq.finish_reason = Status.FINISHED, end_s, reason
        seq.prompt_ids = None if seq.output_ids is None else seq.prompt_ids
        self.finished.append(seq)
        self.quiet = False

    def abort(self, seq: Sequence, end_s: float, reason: str = "abort") -> bool:
        """End ``seq`` now, wherever it is (waiting, swapped, prefilling or decoding), and free
        its GPU and host blocks. reason "abort" (a client went away) leaves it ABORTED; any
        other reason (e.g. "stop" for a stop string found by the server) FINISHED with it.
        Returns False when it had already left the engine."""
        st = seq.status
        if st is Status.WAITING:
            self.waiting.remove(seq)
        elif st is Status.SWAPPED:
            self.swapped.remove(seq)
            self.bm.free_host(seq)
        elif st is Status.RUNNING:
            if seq.group is not None:
                self.group.leave(seq)
            self.prefilling.pop(seq.seq_id, None)
            del self.running[seq.seq_id]
            self.bm.free_seq(seq)
        else:
            return False
        seq.finish_reason = reason
        if reason == "abort":
            seq.status = Status.ABORTED
        else:
            seq.status, seq.finish_s = Status.FINISHED, end_s
        self.finished.append(seq)
        self.quiet = False
        return True

    # ---- fast-forward of decode-only runs (sim) ------------------------------------
    def decode_run_limit(self) -> int:
        """How many of the next steps are certainly decode-only with an unchanged batch:
        up to and including the first step after which a member finishes, and before the
        first block need that the free pool cannot serve. 0 if not quiet."""
        g = self.group
        if not self.quiet or not g.members:
            return 0
        limit = g.next_finish_clock() - g.clock + 1
        free = self.bm.num_free
        if g.needs_at_most(g.clock + limit) <= free:  # no need can fail: no walk
            return max(limit, 0)
        needs = g.needs_between(g.clock, g.clock + limit, free + 1)
        if len(needs) > free:
            limit = needs[-1][0] - g.clock
        return max(limit, 0)

    def next_decode_path(self) -> str:
        """The path the next step takes when it is decode-only without swaps (a decode run's
        first step; the run's later steps are STEADY)."""
        return decode_path_after(self.last_decode_rows, len(self.group))

    def advance_decodes(self, num_steps: int) -> list[int]:
        """Run ``num_steps`` decode-only steps at once (no arrivals in between, limit from
        decode_run_limit). Returns the step offsets (0-based) at which a block was added."""
        g, bm = self.group, self.bm
        end = g.clock + num_steps
        offsets = []
        start = g.clock
        while (at := g.next_need_clock()) is not None and at < end:
            g.clock = at
            for seq in g.pop_needs(at):
                ok = bm.append_block(seq)
                assert ok, "decode_run_limit promised a free block"
                g.block_added(seq)
                offsets.append(at - start)
        g.clock = end
        self.last_decode_rows = len(g) if num_steps else self.last_decode_rows
        return offsets

    def finish_due(self, end_s: float) -> None:
        for seq in self.group.pop_finished():
            self._finish(seq, end_s, "length")

    def all_seqs(self):
        yield from self.running.values()
        yield from self.swapped

