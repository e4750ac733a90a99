"""Prefix-cache statistics as vLLM v1 keeps them (vllm/v1/metrics/stats.py).

PrefixCacheStats: one record per admission, in tokens. A request admitted for the first
time adds to (requests, queries, hits); a request re-admitted after a preemption adds to
the preempted_* triple instead, so a victim that hits its own blocks again does not raise
the headline hit rate (vLLM's ``PrefixCacheStats.record(num_tokens, num_hits, preempted)``).

CachingMetrics: the hit rate over the most recent requests, as vLLM logs it. Each engine
step is one observation (the step's first admissions); observations with no request are
not added (an idle step must not push history out); the oldest observations leave while
the window holds more than ``max_recent_requests`` requests, but the latest one always
stays; a prefix-cache reset empties the window before the step's observation is added.
"""
from __future__ import annotations

from collections import deque

VLLM_WINDOW_REQUESTS = 1000  # CachingMetrics(max_recent_requests=1000), vLLM's default
NO_RECORDS = (0,) * 6


class PrefixCacheStats:
    __slots__ = ("requests", "queries", "hits", "preempted_requests", "preempted_queries",
                 "preempted_hits", "_step")

    def __init__(self) -> None:
        self.requests = self.queries = self.hits = 0
        self.preempted_requests = self.preempted_queries = self.preempted_hits = 0
        self._step: list[int] | None = None  # records since take_step(), in snapshot order

    def record(self, num_tokens: int, num_hits: int, preempted: bool) -> None:
        """One admission: num_tokens looked up (prompt + any generated tokens), num_hits of
        them found in the cache (whole blocks)."""
        if preempted:
            self.preempted_requests += 1
            self.preempted_queries += num_tokens
            self.preempted_hits += num_hits
        else:
            self.requests += 1
            self.queries += num_tokens
            self.hits += num_hits
        step = self._step if self._step is not None else [0] * 6
        i = 3 if preempted else 0
        step[i] += 1
        step[i + 1] += num_tokens
        step[i + 2] += num_hits
        self._step = step

    def take_step(self) -> tuple[int, ...]:
        """The records since the last call, as (requests, queries, hits, preempted_requests,
        preempted_queries, preempted_hits); most steps admit nothing, so that case is cheap."""
        step = self._step
        if step is None:
            return NO_RECORDS
        self._step = None
        return tuple(step)


class CachingMetrics:
    def __init__(self, max_recent_requests: int = VLLM_WINDOW_REQUESTS) -> None:
        if max_recent_requests < 1:
            raise ValueError(f"max_recent_requests must be >= 1, got {max_recent_requests}")
        self.max_recent_requests = max_recent_requests
        self._queue: deque[tuple[int, int, int]] = deque()
        self.requests = self.queries = self.hits = 0

    def observe(self, requests: int, queries: int, hits: int, reset: bool = False) -> None:
        if reset:
            self.reset()
        if requests == 0:
            return
        self._queue.append((requests, queries, hits))
        self.requests += requests
        self.queries += queries
        self.hits += hits
        while len(self._queue) > 1 and self.requests > self.max_recent_requests:
            r, q, h = self._queue.popleft()
            self.requests -= r
            self.queries -= q
            self.hits -= h

    def reset(self) -> None:
        self._queue.clear()
        self.requests = self.queries = self.hits = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else 0.0
