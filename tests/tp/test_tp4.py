"""tp=4 over gloo: the same greedy tokens as tp=1 on a tiny model whose 8 query and 4 KV
heads split evenly over four ranks (the CPU half of the 4-GPU run; the GPU half needs a
4-GPU machine)."""
import pytest

from nanosim.gpu.llm import LLM, SamplingParams
from tests.tp.conftest import ENGINE, TIMEOUT_S, prompts, save_tiny

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny4_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory, "tiny-qwen3-tp4", heads=8, kv_heads=4)


def _token_ids(outputs) -> list[list[int]]:
    return [list(o.outputs[0].token_ids) for o in outputs]


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
