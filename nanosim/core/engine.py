"""Engine.step(): the same loop for every backend.

    batch  = scheduler.schedule()
    result = backend.execute(batch)                  # sampled tokens + duration_s
    scheduler.postprocess(batch, result, now + duration_s)
    metrics.record(...)

Time is passed in, never read from a clock. A backend declares what it offers in its
``caps`` (core/batch.BackendCaps): one that predicts durations from counts (the simulator's)
has ``decode_runs`` and a ``decode_run_s``; then ``fast_forward`` advances a run of
decode-only steps whose batch cannot change in one move, with the same per-step rows and
per-request outcomes as stepping one by one (tests/core/test_fast_forward.py).
"""
from __future__ import annotations

from bisect import bisect_left
from itertools import accumulate

import numpy as np

from nanosim.config import EngineConfig
from nanosim.core.batch import STEADY, Backend
from nanosim.core.block_manager import BlockManager
from nanosim.core.metrics import MetricsRecorder
from nanosim.core.request import Request
from nanosim.core.scheduler import Scheduler
from nanosim.core.sequence import Sequence


class NoProgressError(RuntimeError):
    """The scheduler produced an empty step while work remained (a deadlock)."""


class Engine:
    def __init__(self, cfg: EngineConfig, backend: Backend, num_blocks: int,
                 num_host_blocks: int = 0, step_rows: bool = True) -> None:
        """step_rows=False: the steps table aggregates per step kind (MetricsRecorder)."""
        self.cfg = cfg
        self.backend = backend
        self.bm = BlockManager(num_blocks, cfg.block_size_tokens, num_host_blocks,
                               cfg.enable_prefix_caching)
        self.scheduler = Scheduler(cfg, self.bm, backend.caps.needs_tokens)
        self.metrics = MetricsRecorder(num_blocks, step_rows)
        self.seqs: dict[int, Sequence] = {}
        # False: a finished or rejected sequence leaves ``seqs`` once its row is recorded
        # (a million-request replay need not keep them)
        self.keep_finished = True
        self.done_tokens = 0  # prompt + max output tokens of the finished / rejected requests
        self.done_requests = 0  # requests recorded (finished, rejected or aborted)

    def add_request(self, req: Request, max_tokens: int | None = None, sampling=None) -> Sequence:
        seq = Sequence(req, max_tokens, sampling)
        if self.backend.caps.needs_tokens:
            seq.output_ids = []
        self.seqs[req.request_id] = seq
        self.scheduler.add(seq)
        self._collect()
        return seq

    def abort(self, request_id: int, now: float, reason: str = "abort") -> bool:
        """End a request early (see Scheduler.abort); its row is recorded as not finished
        for "abort", as finished at ``now`` for another reason. False if already ended."""
        seq = self.seqs.get(request_id)
        if seq is None or not self.scheduler.abort(seq, now, reason):
            return False
        self._collect()
        return True

    @property
    def has_work(self) -> bool:
        return self.scheduler.has_work

    def step(self, now: float) -> float:
        """Run one step starting at ``now``; returns its duration in seconds."""
        sched, bm = self.scheduler, self.bm
        preempted0 = sched.num_preemptions
        batch = sched.schedule()
        shape = batch.shape  # batch.empty and bm.num_used inlined (every stepped step)
        if not (shape.num_prefill_seqs or shape.num_decode_seqs or batch.swap_in or batch.swap_out):
            raise NoProgressError(f"empty step at t={now:.6f}s with {len(sched.waiting)} waiting, "
                                  f"{len(sched.running)} running, {len(sched.swapped)} swapped, "
                                  f"{self.bm.num_free}/{self.bm.num_blocks} KV blocks free")
        kv_used = bm.num_blocks - len(bm.free)
        result = self.backend.execute(batch)
        d = result.duration_s
        sched.postprocess(batch, result, now + d)
        cache = bm.stats.take_step()  # prefix-cache records of this step's admissions
        self.metrics.record_step(now, d, shape, kv_used, sched.num_preemptions - preempted0,
                                 cache, bm.stats_reset)
        bm.stats_reset = False
        if sched.finished:
            self._collect()
        return d

    def fast_forward(self, now: float, next_event_s: float) -> float | None:
        """Advance decode-only steps that start before ``next_event_s`` (an arrival) in one
        move. Returns the end time, or None when the next step must be a normal step."""
        sched = self.scheduler
        if not sched.quiet or not self.backend.caps.decode_runs:  # not quiet: decode_run_limit 0
            return None
        k = sched.decode_run_limit()
        if k < 2:
            return None
        g = sched.group
        num_seqs, ctx0, max0 = len(g.members), g.context_tokens, g.max_context_tokens
        starts, dur, end = self._decode_durations(self.backend.decode_run_s, num_seqs, ctx0, max0, k,
                                                  now, next_event_s, sched.next_decode_path())
        k = len(starts)  # steps starting before the event
        if k < 2:
            return None
        bm = self.bm
        used0 = bm.num_blocks - len(bm.free)  # bm.num_used, inline
        offsets = sched.advance_decodes(k)
        self.metrics.record_decode_run(starts, dur, num_seqs, ctx0, max0,
                                       _blocks_per_step(used0, offsets, k) if offsets else used0)
        sched.finish_due(end)
        self._collect()
        return end

    @staticmethod
    def _decode_durations(run_s, num_seqs: int, ctx0: int, max0: int, k_max: int, now: float,
                          until_s: float, first_path: str) -> tuple[list[float], list[float], float]:
        """Start times and durations of the decode-only steps that start before ``until_s``
        (at most k_max), and the end of the last of them (``now`` if none). Steps are asked
        of the cost model in doubling chunks (64, 128, 256, ...) until one starts at or after
        ``until_s`` (so a run cut short by an arrival does not price thousands of steps); the
        first step takes ``first_path``, the rest the steady path. Pricing changes no state:
        a run the caller then drops needs no undoing. Times are sequential float sums, as
        stepping one by one gives. run_s returns a list of floats or an ndarray, of the
        chunk's steps or of those up to the first one starting at or after until_s (starts
        summed from t as here): what follows it is never used."""
        starts: list[float] = []
        durs: list[float] = []
        t, n, m, chunk, path = now, 0, min(64, k_max), 128, first_path
        while True:
            d = run_s(num_seqs, ctx0 + num_seqs * n, m, max0 + n, path, t, until_s)
            if not isinstance(d, list):
                d = np.asarray(d, dtype=float).tolist()
            # acc[i]: step i's start (t + d[0] + ... + d[i-1], summed left to right as a loop
            # would); acc[-1]: the chunk's end. Durations are positive, so starts increase and
            # the first step starting at or after until_s is found by bisection.
            acc = list(accumulate(d, initial=t))
            i = bisect_left(acc, until_s, 0, len(d))
            if i < len(d):
                starts.extend(acc[:i])
                durs.extend(d[:i])
                return starts, durs, acc[i]
            t = acc.pop()
            starts.extend(acc)
            durs.extend(d)
            n += m
            if n >= k_max:
                return starts, durs, t
            m, chunk, path = min(chunk, k_max - n), chunk * 2, STEADY

    def reset_prefix_cache(self) -> bool:
        """Drop every cached prefix (vLLM's LLM.reset_prefix_cache): False, and nothing
        changed, while any request holds KV blocks. The windowed hit rate restarts at the
        next step."""
        return self.bm.reset_prefix_cache()

    def _collect(self) -> None:
        fin = self.scheduler.finished
        if fin:
            for seq in fin:
                self.metrics.record_request(seq)
                self.done_tokens += seq.req.prompt_tokens + seq.max_tokens
                self.done_requests += 1
                if not self.keep_finished:
                    del self.seqs[seq.seq_id]
            fin.clear()

    def check(self) -> None:
        """Verify the block manager's invariants against every live sequence, and the
        decode group's summaries against its members."""
        self.bm.check(list(self.scheduler.all_seqs()))
        self.scheduler.group.check()

    def results(self):
        """(requests DataFrame, steps DataFrame)."""
        return self.metrics.frames()


def _blocks_per_step(used0: int, offsets: list[int], k: int) -> list[int]:
    """KV blocks in use at each of k steps: used0 plus the blocks appended at step offsets
    up to and including each (offsets ascending, < k); one list segment per offset."""
    out: list[int] = []
    prev, used = 0, used0
    for o in offsets:
        if o > prev:
            out.extend([used] * (o - prev))
            prev = o
        used += 1
    out.extend([used] * (k - prev))
    return out
