"""tp=2 over gloo: the same greedy tokens as tp=1 through LLM.generate (prefix caching,
chunked prefill, preemption by swap); each rank holds only its shard. One tp=2 LLM serves
the module (one TP group per process at a time)."""
import pytest
import torch

from nanosim.gpu.llm import LLM, SamplingParams
from tests.tp.conftest import ENGINE, TIMEOUT_S, prompts

N_OUT = 30
# swap preemption also exercises the "swap" command; a 1 MiB host pool (default is 4 GiB)
OPTIONS = dict(ENGINE, preemption_mode="swap", swap_space_bytes=2**20)


@pytest.fixture(scope="module")
def tp2(tiny_dir):
    llm = LLM(str(tiny_dir), tensor_parallel_size=2, dist_timeout_s=TIMEOUT_S, **OPTIONS)
    yield llm
    llm.close()


def test_tp2_greedy_tokens_equal_tp1(tiny_dir, tp2):
    sp = SamplingParams(temperature=0.0, max_tokens=N_OUT)
    ref = LLM(str(tiny_dir), **OPTIONS).generate(prompts(), sp)
    got = tp2.generate(prompts(), sp)
    assert [o.token_ids for o in got] == [o.token_ids for o in ref]
    req, steps = tp2.engine.results()
    assert req.cached_prompt_tokens.sum() > 0  # prefix-cache hits
    assert (steps.prefill_tokens == 32).any()  # chunked prompts
    assert ((steps.num_prefill_seqs > 0) & (steps.num_decode_seqs > 0)).any()  # mixed steps
    assert req.preemptions.sum() > 0  # swapped out and back in on both ranks
    assert tp2.cfg.tp == 2 and tp2.runner.num_kv_blocks == 16


def _full_tensors(path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v for f in sorted(path.glob("*.safetensors")) for k, v in load_file(f).items()}


def _expected_shard(hf: dict, name: str, r: int, tp: int) -> torch.Tensor:
    """This rank's slice of the full checkpoint, in the nanosim parameter's layout."""
    def rows(t):  # output-feature split
        n = t.shape[0] // tp
        return t[r * n:(r + 1) * n]

    def cols(t):  # input-feature split
        n = t.shape[1] // tp
        return t[:, r * n:(r + 1) * n]

    if name.endswith("qkv_proj.weight"):
        p = name[:-len("qkv_proj.weight")]
        return torch.cat([rows(hf[p + f"{x}_proj.weight"]) for x in "qkv"])
    if name.endswith("gate_up_proj.weight"):
        p = name[:-len("gate_up_proj.weight")]
        return torch.cat([rows(hf[p + f"{x}_proj.weight"]) for x in ("gate", "up")])
    if name.endswith(("o_proj.weight", "down_proj.weight")):
        return cols(hf[name])
    if name in ("model.embed_tokens.weight", "lm_head.weight"):  # vocab split, zero-padded
        full = hf[name]
        n = -(-full.shape[0] // tp)
        out = torch.zeros(n, full.shape[1])
        part = full[r * n:(r + 1) * n]
        out[:len(part)] = part
        return out
    return hf[name]  # norms: replicated


def test_each_rank_holds_only_its_shard(tiny_dir, tp2):
    hf = _full_tensors(tiny_dir)
    per_rank = tp2.runner.call("shard_summary")
    assert len(per_rank) == 2 and per_rank[0].keys() == per_rank[1].keys()
    for r, summary in enumerate(per_rank):
        for name, (shape, total, weighted) in summary.items():
            want = _expected_shard(hf, name, r, 2).double().flatten()
            w = torch.arange(1, want.numel() + 1, dtype=torch.float64) / want.numel()
            assert shape == tuple(_expected_shard(hf, name, r, 2).shape), (r, name)
            assert total == pytest.approx(float(want.sum()), abs=1e-6), (r, name)
            assert weighted == pytest.approx(float((want * w).sum()), abs=1e-6), (r, name)
    assert per_rank[0]["model.layers.0.self_attn.qkv_proj.weight"][0] == (64, 64)  # (2+1+1 heads)*16
    assert per_rank[1]["lm_head.weight"][0] == (192, 64)  # 383 rows over 2 ranks, 1 padded
    k0 = tp2.runner.kv_caches[0][0]
    assert tuple(k0.shape) == (16, 8, 1, 16)  # (blocks, block_size, Hkv/tp, D) on rank 0
