"""Routers: pick the replica for an arriving request (cluster simulation).

round_robin     replicas in turn
least_tokens    fewest outstanding tokens (prompt + output of routed, unfinished requests)
least_kv        lowest KV-cache usage (blocks in use / blocks), ties by outstanding tokens
prefix          the replica whose cache holds the longest prefix of the prompt (session /
                prefix affinity), ties by outstanding tokens; a request without known
                content has no prefix anywhere and goes to the least-loaded replica
Remaining ties rotate (round robin among the tied replicas), so idle replicas share load.
"""
from __future__ import annotations

from nanosim.core.request import Request
from nanosim.core.sequence import Sequence

ROUTERS = ("round_robin", "least_tokens", "least_kv", "prefix")


class Router:
    def __init__(self, policy: str) -> None:
        if policy not in ROUTERS:
            raise ValueError(f"unknown router {policy!r}; known: {', '.join(ROUTERS)}")
        self.policy = policy
        self._next = 0

    def pick(self, req: Request, replicas: list):
        n = len(replicas)
        turn = self._next
        self._next += 1
        rotate = lambda r: (r.index - turn) % n  # noqa: E731  (tie-break: round robin)
        if self.policy == "round_robin":
            return replicas[turn % n]
        if self.policy == "least_tokens":
            return min(replicas, key=lambda r: (r.outstanding_tokens, rotate(r)))
        if self.policy == "least_kv":
            return min(replicas, key=lambda r: (r.engine.bm.num_used / r.engine.bm.num_blocks,
                                                r.outstanding_tokens, rotate(r)))
        hits = self._prefix_hits(req, replicas)
        return min(replicas, key=lambda r: (-hits[r.index], r.outstanding_tokens, rotate(r)))

    @staticmethod
    def _prefix_hits(req: Request, replicas: list) -> list[int]:
        """Cached leading blocks of the prompt on each replica (0 without known content)."""
        if not req.has_content:
            return [0] * len(replicas)
        probe = Sequence(req)
        probe.prompt_ids = req.token_ids()
        return [len(r.engine.bm.lookup(probe)) for r in replicas]
