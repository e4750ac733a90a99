"""The simulator keys a prompt's blocks past its shared ids (Request.shared_token_ids) by the
request instead of hashing drawn unique tokens: the same hits, so the same tables as hashing
the whole drawn prompt (Request.token_ids), with prefix sharing, preemption and every router."""
import numpy as np
import pandas as pd
import pytest

from nanosim.config import EngineConfig, get_gpu, get_model
from nanosim.core.block_manager import BlockManager
from nanosim.core.request import Request, block_tokens, unique_tokens
from nanosim.core.sequence import Sequence
from nanosim.sim.job import run_simulation
from nanosim.workload.synthetic import make_sessions


def _drawn(self):
    """The whole prompt with its unique part drawn (what the scheduler hashed before)."""
    parts = [block_tokens(b, self.prefix_block_tokens) for b in self.prefix_blocks]
    ids = np.concatenate(parts)[: self.prompt_tokens]
    rest = self.prompt_tokens - len(ids)
    return np.concatenate([ids, unique_tokens(self.request_id, rest)]) if rest > 0 else ids


@pytest.fixture(scope="module")
def sessions():
    return make_sessions(10.0, num_sessions=30, seed=3, turns_mean=3, think_time_s=1,
                         system_prompt_tokens=300, num_system_prompts=3, max_prompt_tokens=2000)


@pytest.mark.parametrize("router,replicas", [("round_robin", 1), ("prefix", 3), ("least_kv", 3)])
def test_request_keys_give_the_tables_of_drawn_tokens(sessions, router, replicas, monkeypatch):
    assert all(r.prefix_blocks for r in sessions)
    cfg = EngineConfig(block_size_tokens=16, num_kv_blocks=260, max_model_len=4096)
    model, gpu = get_model("qwen3-0.6b"), get_gpu("h100")

    def run():
        return run_simulation(sessions, model, gpu, cfg, None, replicas=replicas, router=router,
                              step_jitter=False)

    keyed = run()
    monkeypatch.setattr(Request, "shared_token_ids", _drawn)
    drawn = run()
    pd.testing.assert_frame_equal(keyed[0], drawn[0], check_exact=True)
    pd.testing.assert_frame_equal(keyed[1], drawn[1], check_exact=True)
    assert keyed[2]["prefix_cache_hits"] == drawn[2]["prefix_cache_hits"] > 0
    # re-admitted requests hit their own keyed blocks
    assert keyed[2]["prefix_cache_preempted_hits"] == drawn[2]["prefix_cache_preempted_hits"] > 0


def test_keys_past_the_shared_ids_are_the_requests_own():
    bm = BlockManager(64, 16)
    r = Request(7, 0.0, 100, 5, prefix_blocks=(1,), prefix_block_tokens=40)
    seq = Sequence(r)
    seq.prompt_ids = r.shared_token_ids()
    assert len(seq.prompt_ids) == 40
    keys = [bm.seq_hash(seq, i) for i in range(6)]
    assert all(k >= 0 for k in keys[:2])  # blocks 0-1 lie in the 40 shared tokens
    assert keys[2:] == [-1 - ((7 << 32) | j) for j in range(2, 6)]  # block 2 spans token 40
    other = Sequence(Request(8, 0.0, 100, 5, prefix_blocks=(1,), prefix_block_tokens=40))
    other.prompt_ids = other.req.shared_token_ids()
    assert [bm.seq_hash(other, i) for i in range(3)][:2] == keys[:2]
    assert bm.seq_hash(other, 2) != keys[2]
