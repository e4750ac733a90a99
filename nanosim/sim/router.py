"""Routers: pick the replica for an arriving request (cluster simulation).

round_robin     replicas in turn
least_tokens    fewest outstanding tokens (prompt + output of routed, unfinished requests)
least_kv        lowest KV-cache usage (blocks in use / blocks), ties by outstanding tokens
prefix          the replica whose cache holds the longest prefix of the prompt (session /
                prefix affinity), ties by outstanding tokens; a request without known
                content has no prefix anywhere and goes to the least-loaded replica
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
        if self.policy == "round_robin":
            rep = replicas[self._next % len(replicas)]
            self._next += 1
            return rep
        if self.policy == "least_tokens":
            return min(replicas, key=lambda r: (r.outstanding_tokens, r.index))
        if self.policy == "least_kv":
            return min(replicas, key=lambda r: (r.engine.bm.num_used / r.engine.bm.num_blocks,
                                                r.outstanding_tokens, r.index))
        return self._longest_prefix(req, replicas)

    @staticmethod
    def _longest_prefix(req: Request, replicas: list):
        if not req.has_content:
            return min(replicas, key=lambda r: (r.outstanding_tokens, r.index))
        probe = Sequence(req)
        probe.prompt_ids = req.token_ids()
        return min(replicas, key=lambda r: (-len(r.engine.bm.lookup(probe)), r.outstanding_tokens,
                                            r.index))
