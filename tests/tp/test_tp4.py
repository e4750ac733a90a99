"""tp=4 over gloo: the same greedy tokens as tp=1 on a tiny model whose 8 query and 4 KV
heads split evenly over four ranks (the CPU half of the 4-GPU run; the GPU half needs a
4-GPU machine)."""
import pytest
import torch

from nanosim.gpu.llm import LLM, SamplingParams
from tests.tp.conftest import ENGINE, TIMEOUT_S, prompts

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny4_dir(tmp_path_factory):
    cfg = transformers.Qwen3Config(
        vocab_size=383, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=4, head_dim=16, max_position_embeddings=1024,
        tie_word_embeddings=False, rms_norm_eps=1e-6, rope_theta=10000.0, initializer_range=0.2)
    torch.manual_seed(0)
    model = transformers.Qwen3ForCausalLM(cfg).eval()
    path = tmp_path_factory.mktemp("tiny-qwen3-tp4")
    model.save_pretrained(path)
    return path


def _token_ids(outputs) -> list[list[int]]:
    return [o["token_ids"] if isinstance(o, dict) else list(o.outputs[0].token_ids) for o in outputs]


def test_tp4_greedy_tokens_equal_tp1(tiny4_dir):
    sp = SamplingParams(temperature=0.0, max_tokens=20)
    ref = LLM(str(tiny4_dir), **ENGINE).generate(prompts(), sp)
    tp4 = LLM(str(tiny4_dir), tensor_parallel_size=4, dist_timeout_s=TIMEOUT_S, **ENGINE)
    try:
        got = tp4.generate(prompts(), sp)
        assert tp4.cfg.tp == 4
        # each rank holds one of the 4 KV heads: (blocks, block_size, Hkv/tp, D)
        assert tuple(tp4.runner.kv_caches[0][0].shape) == (16, 8, 1, 16)
    finally:
        tp4.close()
    assert _token_ids(got) == _token_ids(ref)
