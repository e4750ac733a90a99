"""The set of decoding sequences, advanced by a shared clock.

Every running sequence past its prefill computes exactly one token per decode step, so its
length is ``length at join + (clock - clock at join)``. The group keeps

* ``context_tokens``: sum of the members' lengths, in O(1) (sum of (n0 - c0) + size * clock);
* a heap of the clock values at which a member needs a new KV block, and
* a heap of the clock values of each member's final step (its max_tokens-th output), and
* a max-heap of the members' lengths less their clocks, for the longest member's length
  (``max_context_tokens``; decode attention waits for its longest row).

so a decode step costs O(events), not O(batch size). Heap entries carry the sequence's epoch;
an entry whose epoch is stale (the sequence left and maybe rejoined) is skipped.
"""
from __future__ import annotations

import heapq

from nanosim.core.sequence import Sequence


class DecodeGroup:
    __slots__ = ("clock", "members", "_base_sum", "_need", "_finish", "_longest", "block_size")

    def __init__(self, block_size: int) -> None:
        self.clock = 0  # decode steps executed so far
        self.members: dict[int, Sequence] = {}
        self._base_sum = 0  # sum over members of (length at join - clock at join)
        self._need: list[tuple[int, int, int, Sequence]] = []  # (clock, admit order, epoch, seq)
        self._finish: list[tuple[int, int, int, Sequence]] = []
        # (-(length at join - clock at join), admit order, epoch, seq): top = longest member
        self._longest: list[tuple[int, int, int, Sequence]] = []
        self.block_size = block_size

    def __len__(self) -> int:
        return len(self.members)

    @property
    def context_tokens(self) -> int:
        """Sum of member lengths = KV tokens the next decode step attends to."""
        return self._base_sum + len(self.members) * self.clock

    @property
    def max_context_tokens(self) -> int:
        """The longest member's length = KV tokens its next decode step attends to (0: empty)."""
        e = self._peek(self._longest)
        return 0 if e is None else self.clock - e[0]

    def join(self, seq: Sequence) -> None:
        n0 = seq._num_tokens
        seq.group = self
        seq.join_clock = self.clock
        self.members[seq.seq_id] = seq
        self._base_sum += n0 - self.clock
        final = seq.req.prompt_tokens + seq.max_tokens - n0 + self.clock - 1
        heapq.heappush(self._finish, (final, seq.admit_order, seq.epoch, seq))
        heapq.heappush(self._longest, (self.clock - n0, seq.admit_order, seq.epoch, seq))
        self._push_need(seq)

    def check(self) -> None:
        """The O(1) summaries equal their definitions over the members (tests, debugging)."""
        lengths = [s.num_tokens for s in self.members.values()]
        assert self.context_tokens == sum(lengths), (self.context_tokens, sum(lengths))
        assert self.max_context_tokens == max(lengths, default=0), (self.max_context_tokens, lengths)

    def leave(self, seq: Sequence) -> None:
        del self.members[seq.seq_id]
        self._base_sum -= seq._num_tokens - seq.join_clock
        seq.freeze()

    def _push_need(self, seq: Sequence) -> None:
        # the step at clock D computes position len-1 and needs len slots
        at = len(seq.block_table) * self.block_size + 1 - seq._num_tokens + seq.join_clock
        heapq.heappush(self._need, (max(at, self.clock), seq.admit_order, seq.epoch, seq))

    def block_added(self, seq: Sequence) -> None:
        """``seq`` got the block it needed at the current clock: schedule its next need."""
        self._push_need(seq)

    @staticmethod
    def _live(entry) -> bool:
        seq = entry[3]
        return seq.group is not None and seq.epoch == entry[2]

    @staticmethod
    def _peek(heap) -> tuple | None:
        while heap:
            e = heap[0]
            seq = e[3]
            if seq.group is not None and seq.epoch == e[2]:  # _live, inlined (every step)
                return e
            heapq.heappop(heap)
        return None

    def pop_needs(self, upto_clock: int) -> list[Sequence]:
        """Members needing a new block at a step with clock <= upto_clock, in running order."""
        heap = self._need
        if not heap or heap[0][0] > upto_clock:  # most steps: nothing due (live or stale)
            return []
        out = []
        while (e := self._peek(heap)) is not None and e[0] <= upto_clock:
            heapq.heappop(heap)
            out.append(e[3])
        return out

    def next_need_clock(self) -> int | None:
        e = self._peek(self._need)
        return None if e is None else e[0]

    def pop_finished(self) -> list[Sequence]:
        """Members whose final step has run (its clock < current clock), in running order."""
        heap = self._finish
        if not heap or heap[0][0] >= self.clock:  # most steps: nothing due (live or stale)
            return []
        out = []
        while (e := self._peek(heap)) is not None and e[0] < self.clock:
            heapq.heappop(heap)
            out.append(e[3])
        return out

    def next_finish_clock(self) -> int | None:
        e = self._peek(self._finish)
        return None if e is None else e[0]

    def needs_at_most(self, hi: int) -> int:
        """An upper bound on the block needs with clock < hi (what needs_between lists):
        each member has one need in the heap, at or after the heap's top, then one every
        block_size steps."""
        heap = self._need
        if not heap or heap[0][0] >= hi:
            return 0
        return len(self.members) * ((hi - 1 - heap[0][0]) // self.block_size + 1)

    def needs_between(self, lo: int, hi: int, limit: int) -> list[tuple[int, Sequence]]:
        """Up to ``limit`` future block needs with clock < hi, in (clock, running) order,
        following each member's chain (a member needs a block every block_size steps).
        Walks the heap array best-first, so it costs O(limit log limit), not O(members).
        Does not change the heaps."""
        bs, heap = self.block_size, self._need
        frontier = [(heap[0], 0)] if heap else []
        out: list[tuple[int, Sequence]] = []
        while frontier and len(out) < limit:
            entry, idx = heapq.heappop(frontier)
            if entry[0] >= hi:
                break
            if idx >= 0:
                for child in (2 * idx + 1, 2 * idx + 2):
                    if child < len(heap):
                        heapq.heappush(frontier, (heap[child], child))
            if not self._live(entry):
                continue
            at, order, epoch, seq = entry
            out.append((max(at, lo), seq))
            heapq.heappush(frontier, ((at + bs, order, epoch, seq), -1))
        return out
