"""What one scheduler step plans, while it plans it (Scheduler.schedule's scratch state)."""
from __future__ import annotations

from nanosim.core.batch import PrefillChunk
from nanosim.core.sequence import Sequence


class StepPlan:
    """Scratch state of one Scheduler.schedule() call: the chunks, decodes and swaps it
    plans, and the token budget left."""

    __slots__ = ("budget", "prefills", "prefill_tokens", "attn_pairs", "kv_tokens", "decodes",
                 "preempted", "admitted", "swap_in", "swap_out")

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.prefills: list[PrefillChunk] = []
        self.prefill_tokens = 0
        self.attn_pairs = 0.0
        self.kv_tokens = 0
        self.decodes = False
        self.preempted = False
        self.admitted = False
        self.swap_in: list[tuple[int, int]] = []
        self.swap_out: list[tuple[int, int]] = []

    def add_chunk(self, c: PrefillChunk) -> None:
        self.prefills.append(c)
        self._count(c, +1)

    def drop_chunk(self, seq: Sequence) -> None:
        for i, c in enumerate(self.prefills):
            if c.seq is seq:
                self._count(c, -1)
                del self.prefills[i]
                return

    def _count(self, c: PrefillChunk, sign: int) -> None:
        q = c.num_tokens
        self.budget -= sign * q
        self.prefill_tokens += sign * q
        self.attn_pairs += sign * q * (c.start + (q + 1) / 2)
        self.kv_tokens += sign * (c.start + q)
