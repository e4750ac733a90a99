"""Waiting queues for the three policies.

fcfs      arrival order; a preempted request re-enters at the front (vLLM v1).
priority  lower ``priority`` first, then earlier arrival, then request id (vLLM v1).
sjf       shortest job first: prompt tokens + expected output tokens, then arrival. The
          "expected" output is the request's output length as known to the engine: the
          trace's output_tokens in sim mode (an oracle, as in SJF studies), max_tokens in
          real mode (an upper bound). Preempted requests re-enter by the same key.
"""
from __future__ import annotations

import heapq
from collections import deque

from nanosim.core.sequence import Sequence


def policy_key(policy: str, seq: Sequence) -> tuple:
    r = seq.req
    if policy == "priority":
        return (r.priority, r.arrival_s, r.request_id)
    if policy == "sjf":
        return (r.prompt_tokens + seq.max_tokens, r.arrival_s, r.request_id)
    return (r.arrival_s, r.request_id)


class WaitQueue:
    def __init__(self, policy: str) -> None:
        self.policy = policy
        self._fifo: deque[Sequence] = deque()
        self._heap: list[tuple[tuple, Sequence]] = []

    def __len__(self) -> int:
        return len(self._fifo) if self.policy == "fcfs" else len(self._heap)

    def __iter__(self):
        if self.policy == "fcfs":
            return iter(self._fifo)
        return (s for _, s in sorted(self._heap, key=lambda e: e[0]))

    def push(self, seq: Sequence) -> None:
        if self.policy == "fcfs":
            self._fifo.append(seq)
        else:
            heapq.heappush(self._heap, (policy_key(self.policy, seq), seq))

    def push_front(self, seq: Sequence) -> None:
        """A preempted request: front of the queue under fcfs, by its key otherwise."""
        if self.policy == "fcfs":
            self._fifo.appendleft(seq)
        else:
            self.push(seq)

    def remove(self, seq: Sequence) -> None:
        """Take ``seq`` out wherever it is (an aborted request): O(queue length)."""
        if self.policy == "fcfs":
            self._fifo.remove(seq)
        else:
            self._heap = [e for e in self._heap if e[1] is not seq]
            heapq.heapify(self._heap)

    def peek(self) -> Sequence:
        return self._fifo[0] if self.policy == "fcfs" else self._heap[0][1]

    def pop(self) -> Sequence:
        return self._fifo.popleft() if self.policy == "fcfs" else heapq.heappop(self._heap)[1]
