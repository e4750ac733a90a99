"""Routers: pick the replica for an arriving request (cluster simulation).

round_robin     replicas in turn
least_tokens    fewest outstanding tokens (prompt + output of routed, unfinished requests)
least_kv        lowest KV-cache usage (blocks in use / blocks), ties by outstanding tokens
prefix          cache affinity balanced against load, after SGLang's cache-aware router
                (sgl-model-gateway policies/cache_aware.rs; ../shared/SERVING_AND_TRACES.md 2d):
                * load = requests routed to a replica and not finished or rejected;
                * imbalanced iff max_load - min_load > balance_abs_threshold AND
                  max_load > balance_rel_threshold * min_load: then the least-loaded replica;
                * otherwise, if the longest cached prefix is more than cache_threshold of the
                  prompt, the replica holding it (ties: fewest outstanding tokens);
                * else the least-loaded replica (SGLang's newer revision; older ones pick the
                  replica with the smallest tree).
                Defaults are SGLang's CLI defaults (64, 1.5, 0.3). Unlike SGLang, which keeps
                an approximate radix tree of the text it routed, the match is what each
                replica's block manager really caches (whole blocks, at most prompt - 1
                tokens); a request without known content matches nowhere.
Remaining ties rotate (round robin among the tied replicas), so idle replicas share load.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from nanosim.core.request import Request
from nanosim.core.sequence import Sequence

ROUTERS = ("round_robin", "least_tokens", "least_kv", "prefix")


@dataclass(frozen=True)
class RouterConfig:
    policy: str = "round_robin"
    balance_abs_threshold: int = 64  # in-flight requests (SGLang --balance-abs-threshold)
    balance_rel_threshold: float = 1.5  # max/min in-flight ratio (--balance-rel-threshold)
    cache_threshold: float = 0.3  # matched share of the prompt (--cache-threshold)

    def __post_init__(self) -> None:
        if self.policy not in ROUTERS:
            raise ValueError(f"unknown router {self.policy!r}; known: {', '.join(ROUTERS)}")
        if self.balance_abs_threshold < 0:
            raise ValueError(f"router balance_abs_threshold must be >= 0, got {self.balance_abs_threshold}")
        if not self.balance_rel_threshold > 0:
            raise ValueError(f"router balance_rel_threshold must be > 0, got {self.balance_rel_threshold}")
        if not 0.0 <= self.cache_threshold <= 1.0:
            raise ValueError(f"router cache_threshold must be in [0, 1], got {self.cache_threshold}")

    def as_dict(self) -> dict:
        return asdict(self)


class Router:
    def __init__(self, config: RouterConfig | str) -> None:
        self.config = RouterConfig(config) if isinstance(config, str) else config
        self.policy = self.config.policy
        self._next = 0

    def pick(self, req: Request, replicas: list):
        n = len(replicas)
        turn = self._next
        self._next += 1
        if self.policy == "round_robin":
            return replicas[turn % n]
        tokens = [r.outstanding_tokens for r in replicas]
        if self.policy == "least_tokens":
            return _first_min(replicas, tokens, turn)
        if self.policy == "least_kv":
            return _first_min(replicas, [(r.kv_blocks_used() / r.engine.bm.num_blocks, t)
                                         for r, t in zip(replicas, tokens)], turn)
        cfg = self.config
        loads = [r.outstanding_requests for r in replicas]
        hi, lo = max(loads), min(loads)
        if hi - lo > cfg.balance_abs_threshold and hi > cfg.balance_rel_threshold * lo:
            return _first_min(replicas, list(zip(loads, tokens)), turn)
        hits = self._prefix_hits(req, replicas)
        best = max(hits)
        if best and best / max(req.prompt_tokens, 1) > cfg.cache_threshold:
            return _first_min(replicas, [(-h, t) for h, t in zip(hits, tokens)], turn)
        return _first_min(replicas, list(zip(loads, tokens)), turn)

    @staticmethod
    def _prefix_hits(req: Request, replicas: list) -> list[int]:
        """Cached leading tokens of the prompt on each replica (0 without known content)."""
        if not req.has_content:
            return [0] * len(replicas)
        probe = Sequence(req)
        probe.prompt_ids = req.shared_token_ids()  # as the scheduler admits it (sim)
        return [r.prefix_hit_blocks(probe) * r.engine.bm.block_size for r in replicas]


def _first_min(replicas: list, keys: list, turn: int):
    """The replica with the smallest key; ties rotate: the smallest (index - turn) mod n, so
    idle replicas share load (min over (key, rotation), the rotation unique per replica)."""
    m = min(keys)
    tied = [r for r, k in zip(replicas, keys) if k == m]
    if len(tied) == 1:
        return tied[0]
    n = len(replicas)
    return min(tied, key=lambda r: (r.index - turn) % n)
