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
        if self.policy == "least_tokens":
            return _first_min(replicas, _tokens(replicas), turn)
        if self.policy == "least_kv":
            return _first_min(replicas, [(r.kv_blocks_used() / r.engine.bm.num_blocks, t)
                                         for r, t in zip(replicas, _tokens(replicas))], turn)
        cfg = self.config
        # Replica.outstanding_requests, read inline (every replica at every arrival)
        loads = [r.routed_requests - r.engine.done_requests for r in replicas]
        hi, lo = max(loads), min(loads)
        if not (hi - lo > cfg.balance_abs_threshold and hi > cfg.balance_rel_threshold * lo):
            keys = self._prompt_keys(req, replicas[0].engine.bm)  # the replicas share one config
            if keys:
                best = self._cache_pick(req, keys, replicas, turn)
                if best is not None:
                    return best
        # the least loaded, then the fewest outstanding tokens
        return _fewest_tokens([r for r, load in zip(replicas, loads) if load == lo], turn, n)

    def _prompt_keys(self, req: Request, bm) -> list[int]:
        """The hashes a lookup of the request's prompt walks (BlockManager.prefix_keys), as
        the scheduler will admit it (sim: the shared ids); none without known content."""
        if not req.has_content:
            return []
        if req.prompt_token_ids is None:  # shared ids from content blocks: hashed once
            return bm.shared_prefix_keys(req.request_id, req.prompt_tokens, bm.shared_chain(req))
        probe = Sequence(req)
        probe.prompt_ids = req.shared_token_ids()
        return bm.prefix_keys(probe)

    def _cache_pick(self, req: Request, keys: list[int], replicas: list, turn: int):
        """The replica holding the longest cached prefix of the prompt (``keys``: its
        BlockManager.prefix_keys) if that is more than cache_threshold of the prompt (ties:
        the fewest outstanding tokens, then rotation); None otherwise."""
        n, size = len(replicas), replicas[0].engine.bm.block_size
        threshold, prompt = self.config.cache_threshold, max(req.prompt_tokens, 1)
        # replicas whose hash maps hold keys[:level], key by key: no per-replica walk
        alive, level = replicas, 0
        for h in keys:
            held = [r for r in alive if h in r.engine.bm.cached]
            if not held:
                break
            alive, level = held, level + 1
        if not (level and level * size / prompt > threshold):
            return None  # no replica hits more than this (prefix_hit_blocks <= the walk)
        # a replica's pending lazy run may evict hits (LazyReplica.prefix_hit_blocks): the
        # one the tie-break picks wins if it keeps all `level` hits, else the next one
        cands = list(alive)
        while cands:
            best = _fewest_tokens(cands, turn, n)
            if best.prefix_hit_blocks(keys) == level:
                return best
            cands.remove(best)
        hits = [r.prefix_hit_blocks(keys) for r in replicas]  # every one lost a hit
        top = max(hits)
        if top and top * size / prompt > threshold:
            return _fewest_tokens([r for r, h in zip(replicas, hits) if h == top], turn, n)
        return None


def _first_min(replicas: list, keys: list, turn: int, n: int = 0):
    """The replica with the smallest key; ties rotate: the smallest (index - turn) mod n (n:
    the cluster's size, default len(replicas)), so idle replicas share load (min over (key,
    rotation), the rotation unique per replica)."""
    m = min(keys)
    tied = [r for r, k in zip(replicas, keys) if k == m]
    if len(tied) == 1:
        return tied[0]
    n = n or len(replicas)
    return min(tied, key=lambda r: (r.index - turn) % n)


def _fewest_tokens(tied: list, turn: int, n: int):
    """Of replicas tied on a first key, the one with the fewest outstanding tokens (ties
    rotate as in _first_min); tokens read only when there is a tie to break."""
    if len(tied) == 1:
        return tied[0]
    return _first_min(tied, _tokens(tied), turn, n)


def _tokens(replicas: list) -> list[int]:
    """Replica.outstanding_tokens of each, read inline (half the time of the property)."""
    return [r.routed_tokens - r.engine.done_tokens for r in replicas]
