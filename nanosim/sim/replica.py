"""A replica of a cluster replay: an engine, the requests routed to it and not yet admitted,
and what routers read of it (sim/router.py); simulator.py steps it, lazy_cluster.py
advances it lazily."""
from __future__ import annotations

from nanosim.core.engine import Engine
from nanosim.core.request import Request


class Replica:
    """An engine plus the requests routed to it and not yet admitted."""

    def __init__(self, engine: Engine, index: int = 0) -> None:
        self.engine = engine
        self.index = index
        self.pending: list[Request] = []
        self.wake = None  # simpy.Event an idle replica waits on (simulator.py)
        self.routed_tokens = 0
        self.routed_requests = 0

    def release(self) -> None:
        for r in self.pending:
            self.engine.add_request(r)
        self.pending.clear()

    def kv_blocks_used(self) -> int:
        """KV blocks in use (what least_kv reads)."""
        return self.engine.bm.num_used

    def prefix_hit_blocks(self, keys: list[int]) -> int:
        """Cached leading blocks of a prompt, given its BlockManager.prefix_keys (what
        prefix reads)."""
        return self.engine.bm.num_hit_blocks(keys)

    @property
    def outstanding_tokens(self) -> int:
        """Prompt + output tokens of requests routed here and not finished or rejected."""
        return self.routed_tokens - self.engine.done_tokens

    @property
    def outstanding_requests(self) -> int:
        """Requests routed here and not finished or rejected (a router's in-flight load)."""
        return self.routed_requests - self.engine.done_requests
