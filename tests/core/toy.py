"""A tiny cost model with an exact vectorised decode run, for core tests."""
import numpy as np

from nanosim.config import EngineConfig
from nanosim.core.engine import Engine
from nanosim.core.request import Request
from nanosim.sim.backend import SimBackend


class ToyCost:
    name = "toy"

    def __init__(self, base_s=1e-3, per_token_s=1e-5, per_ctx_s=1e-7, per_max_ctx_s=3e-8):
        self.base_s, self.per_token_s, self.per_ctx_s = base_s, per_token_s, per_ctx_s
        self.per_max_ctx_s = per_max_ctx_s  # the longest decode row (so runs must track it)

    # the decode path's own cost (so a run's first step must carry the path stepping gives it)
    PATH_S = {"packed": 2e-5, "subset": 1e-5, "steady": 0.0}

    def step_time_s(self, shape):
        return (self.base_s + self.per_token_s * (shape.prefill_tokens + shape.num_decode_seqs)
                + self.per_ctx_s * (shape.decode_context_tokens + shape.prefill_kv_tokens)
                + 1e-6 * shape.swap_blocks + self.per_max_ctx_s * shape.decode_max_context_tokens
                + self.PATH_S[shape.decode_path])

    def decode_run_s(self, num_seqs, context_tokens, num_steps, max_context_tokens=0, first_path="packed"):
        ctx = context_tokens + num_seqs * np.arange(num_steps)
        longest = max_context_tokens + np.arange(num_steps)
        path = np.zeros(num_steps)
        path[:1] = self.PATH_S[first_path]
        return ((self.base_s + self.per_token_s * num_seqs) + self.per_ctx_s * ctx
                + self.per_max_ctx_s * longest + path)


def make_engine(num_blocks=64, **cfg):
    cfg.setdefault("block_size_tokens", 16)
    cfg.setdefault("max_model_len", 4096)
    cfg.setdefault("max_num_seqs", 16)
    host = cfg.pop("host_blocks", 32)
    return Engine(EngineConfig(**cfg), SimBackend(ToyCost()), num_blocks, num_host_blocks=host)


def req(i, n, out=4, t=0.0, ids=None, prio=0):
    return Request(i, t, n, out, priority=prio,
                   prompt_token_ids=None if ids is None else tuple(ids))
