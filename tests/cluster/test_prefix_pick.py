"""The prefix router's pick (shared block hashes made once, replicas walked key by key, only
the tie-break's winner checked against its pending lazy run) equals the straightforward rule
at every arrival: every replica's hits from a probe sequence (BlockManager.lookup_after with
the blocks its pending run takes), then SGLang's rule with ties by outstanding tokens and
rotation."""
import pytest

from nanosim.config import EngineConfig, get_gpu, get_model
from nanosim.core.request import Request
from nanosim.core.sequence import Sequence
from nanosim.sim import job
from nanosim.sim.lazy_cluster import LazyReplica
from nanosim.sim.router import Router, RouterConfig
from nanosim.workload.synthetic import make_sessions

MODEL, GPU = get_model("qwen3-0.6b"), get_gpu("h100")


def _first_min(replicas, keys, turn):
    m = min(keys)
    tied = [r for r, k in zip(replicas, keys) if k == m]
    return min(tied, key=lambda r: (r.index - turn) % len(replicas))


def _reference(cfg: RouterConfig, req: Request, replicas: list, turn: int, seen: dict):
    tokens = [r.outstanding_tokens for r in replicas]
    loads = [r.outstanding_requests for r in replicas]
    hi, lo = max(loads), min(loads)
    if hi - lo > cfg.balance_abs_threshold and hi > cfg.balance_rel_threshold * lo:
        return _first_min(replicas, list(zip(loads, tokens)), turn)
    hits = [0] * len(replicas)
    if req.has_content:
        probe = Sequence(req)
        probe.prompt_ids = req.shared_token_ids()
        for i, r in enumerate(replicas):
            run = getattr(r, "run", None)
            taken = 0 if run is None else r._appended_before(run, r.at)
            bm = r.engine.bm
            hits[i] = len(bm.lookup_after(probe, taken)) * bm.block_size
            seen["cut"] += hits[i] < len(bm.lookup(probe)) * bm.block_size
    best = max(hits)
    if best and best / max(req.prompt_tokens, 1) > cfg.cache_threshold:
        seen["cache"] += 1
        return _first_min(replicas, [(-h, t) for h, t in zip(hits, tokens)], turn)
    return _first_min(replicas, list(zip(loads, tokens)), turn)


class _Checked(Router):
    def __init__(self, config) -> None:
        super().__init__(config)
        self.seen = {"picks": 0, "cache": 0, "cut": 0}

    def pick(self, req, replicas):
        want = _reference(self.config, req, replicas, self._next, self.seen)
        got = super().pick(req, replicas)
        assert got is want, (req.request_id, got.index, want.index)
        self.seen["picks"] += 1
        return got


@pytest.mark.parametrize("fast_forward", [True, False])
@pytest.mark.parametrize("config", [
    RouterConfig("prefix"), RouterConfig("prefix", balance_abs_threshold=4, cache_threshold=0.1)])
def test_prefix_pick_equals_reference(monkeypatch, fast_forward, config):
    # shared system prompts and sessions; 130 blocks of 64 tokens: runs evict cached blocks
    reqs = make_sessions(6.0, num_sessions=120, seed=7, turns_mean=4, think_time_s=1,
                         system_prompt_tokens=512, num_system_prompts=3, max_prompt_tokens=4000)
    reqs += [Request(10_000 + i, 0.05 * i, 100 + i, 20) for i in range(40)]  # length-only
    routers = []

    def make(cfg):
        routers.append(_Checked(cfg))
        return routers[-1]

    monkeypatch.setattr(job, "Router", make)
    lost = []  # a candidate of the key-by-key walk whose pending run takes some of its hits
    plain = LazyReplica.prefix_hit_blocks

    def spy(self, keys):
        n = plain(self, keys)
        lost.append(n < self.engine.bm.num_hit_blocks(keys))
        return n

    monkeypatch.setattr(LazyReplica, "prefix_hit_blocks", spy)
    cfg = EngineConfig(block_size_tokens=64, num_kv_blocks=130, max_model_len=8192)
    job.run_simulation(reqs, MODEL, GPU, cfg, replicas=4, router=config,
                       fast_forward=fast_forward, step_jitter=False)
    seen = routers[0].seen
    assert seen["picks"] == len(reqs) and seen["cache"] > len(reqs) // 4
    if fast_forward:  # pending runs' appends cut some replicas' hits, some of them picked first
        assert seen["cut"] > 0 and any(lost)
    print(seen, sum(lost), len(lost))
