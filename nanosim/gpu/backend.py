"""GpuBackend: the Backend protocol over a ModelRunner (real tokens, measured durations).

ScheduledBatch -> one SeqWork per sequence (prefill chunks first, then decodes, the order in
which StepResult.token_ids must come back) -> runner.step(). KV swaps named by the batch are
done before the forward (the freed GPU blocks may be reused by this very step).

duration_s is the host wall time of the whole execute(): input packing, the forward, the
sampler and the copy back of the sampled tokens (the runner synchronizes), i.e. what one
engine step costs apart from the scheduler's own Python time.

Steady decoding takes the runner's fast path: when the scheduler says a decode-only step's
rows all decoded in the previous step (StepShape.decode_path steady or subset, the path the
cost models price) and that step armed the runner (a CUDA-graph decode step), no SeqWork is
built and runner.step_next(keep) edits the previous step's packed inputs (runner.py); keep
maps each row to its row in the previous step.

async_decode (off by default here; LLM turns it on where it runs): steady decode steps also launch the step after them before
their tokens are read (runner.py's lookahead), so that step runs on the GPU while the
scheduler plans it. A step that ran ahead did part of its work before execute() was called:
its duration_s is the wall time since the previous execute() returned (the steps then tile
the wall clock; the scheduler's time between them is inside). Replays on the virtual clock
and profiles keep it off: there a step's duration must not depend on the host's pace.
"""
from __future__ import annotations

import time

import numpy as np

from nanosim.core.batch import PACKED, BackendCaps, ScheduledBatch, StepResult
from nanosim.core.request import unique_tokens
from nanosim.core.sequence import Sequence
from nanosim.gpu.inputs import SeqWork
from nanosim.gpu.sampling_params import SamplingParams  # noqa: F401 (also imported from here)


class GpuBackend:
    # the scheduler lists decode sequences; outputs are real token ids; each step is measured
    caps = BackendCaps(needs_tokens=True, decode_runs=False)

    def __init__(self, runner, num_host_blocks: int = 0, async_decode: bool = False, *,
                 fast_decode: bool = True, default_sampling: SamplingParams | None = None) -> None:
        """fast_decode: use runner.step_next where the path allows (off: an A/B arm, every
        step packed); default_sampling: for requests added without their own (default
        SamplingParams()). Fixed at construction: an A/B builds one backend per arm."""
        if async_decode and not runner.supports_lookahead:
            raise ValueError("async_decode needs a single-GPU runner (tensor_parallel_size=1)")
        self.runner = runner
        self.async_decode = async_decode
        self._last_end: float | None = None  # perf_counter when the last execute() returned
        # made-up ids of length-only prompts (int32, kept for the run: ~4 bytes per prompt token)
        self._prompts: dict[int, np.ndarray] = {}
        self.num_host_blocks = num_host_blocks
        self.default_sampling = SamplingParams() if default_sampling is None else default_sampling
        self.vocab_size = runner.spec.vocab_size
        self.fast_decode = fast_decode
        self._prev_decodes: list[Sequence] = []  # the last step's decode rows, when it armed step_next

    def execute(self, batch: ScheduledBatch) -> StepResult:
        for c in batch.prefills:  # made-up ids of a length-only trace prompt: the replay
            self._prompt(c.seq)  # harness's work (~30 us), not the step's, so not timed
        t0 = time.perf_counter()
        swaps = batch.swap_out or batch.swap_in
        if swaps:
            self._swap(batch.swap_out, to_host=True)
            self._swap(batch.swap_in, to_host=False)
        keep = self._fast_rows(batch)
        if keep is not False:
            out = self.runner.step_next(keep, ahead=True) if self.async_decode else self.runner.step_next(keep)
        else:
            works = [self._work(c.seq, c.start, c.num_tokens, c.is_last) for c in batch.prefills]
            works += [self._work(s, s.num_tokens - 1, 1, True) for s in batch.decodes]
            out = self.runner.step(works) if works else None
        armed = out is not None and self.runner.can_step_next
        self._prev_decodes = batch.decodes if armed else []
        end = time.perf_counter()
        began = self._last_end if out is not None and out.ahead and self._last_end is not None else t0
        self._last_end = end
        return StepResult(end - began, [] if out is None else out.token_ids,
                          None if out is None else out.duration_s)

    def _fast_rows(self, batch: ScheduledBatch):
        """Rows of the previous step that make up this decode-only step (None: all of them in
        order), or False when the fast path does not apply: the scheduler's path is packed (a
        prefill, swaps, or a sequence new to decoding), the last step did not arm the runner,
        or (a check) a row did not decode in it."""
        prev, cur = self._prev_decodes, batch.decodes
        if batch.shape.decode_path == PACKED or not (self.fast_decode and prev and cur):
            return False
        if cur == prev:  # identity comparison of the same sequences, in C
            return None
        row = {id(s): i for i, s in enumerate(prev)}
        keep = [row.get(id(s), -1) for s in cur]
        return False if -1 in keep else keep

    def _work(self, seq: Sequence, start: int, n: int, samples: bool) -> SeqWork:
        sp = seq.sampling or self.default_sampling
        return SeqWork(self._tokens(seq, start, n), start, seq.block_table, samples,
                       sp.temperature, sp.top_k, sp.top_p,
                       seq.seq_id if sp.seed is None else sp.seed)

    def _tokens(self, seq: Sequence, start: int, n: int) -> list[int]:
        p = seq.req.prompt_tokens
        if n == 1 and start >= p:  # a decode: the newest generated token
            return [seq.output_ids[start - p]]
        prompt = self._prompt(seq)
        # trace prompts made of synthetic ids (< 32000) are folded into small test vocabularies
        ids = (prompt[start:start + n] % self.vocab_size).tolist()
        if start + n > p:
            ids += seq.output_ids[max(start - p, 0):start + n - p]
        return ids

    def _prompt(self, seq: Sequence) -> np.ndarray:
        """The prompt's token ids: its own, or made-up ones for a length-only prompt."""
        if seq.prompt_ids is not None:
            return seq.prompt_ids
        prompt = self._prompts.get(seq.seq_id)
        if prompt is None:
            prompt = self._prompts[seq.seq_id] = unique_tokens(seq.seq_id, seq.req.prompt_tokens)
        return prompt

    # ---- KV swap to pinned host memory (every TP rank swaps its own heads) ------------------
    def _swap(self, pairs: list[tuple[int, int]], to_host: bool) -> None:
        if pairs:
            self.runner.swap_kv(pairs, to_host, self.num_host_blocks)
