"""Tensor-parallel tests on CPU (gloo): a tiny fp32 Qwen3 checkpoint with 4 q / 2 KV heads
(tp=2 divides both) and an odd vocabulary (the last rank's vocab shard is padded).

Every TP wait is bounded by dist_timeout_s=TIMEOUT_S; as a last resort against a hang, a test
that runs past HANG_S dumps all threads' stacks and ends the pytest process."""
import faulthandler

import pytest
import torch

transformers = pytest.importorskip("transformers")

TIMEOUT_S = 30.0
HANG_S = 120.0
# tiny engine: 8-token blocks, 32-token chunks, 16 KV blocks (KV pressure -> preemption)
ENGINE = dict(device="cpu", dtype="float32", block_size=8, max_num_seqs=4,
              max_num_batched_tokens=32, max_model_len=128, num_kv_blocks=16)


@pytest.fixture(autouse=True)
def _hang_guard():
    faulthandler.dump_traceback_later(HANG_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def save_tiny(tmp_path_factory, name: str, heads: int, kv_heads: int):
    """A tiny fp32 Qwen3 checkpoint (2 layers, head_dim 16, seed 0) with the given heads."""
    cfg = transformers.Qwen3Config(
        vocab_size=383, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=16,
        max_position_embeddings=1024, tie_word_embeddings=False, rms_norm_eps=1e-6,
        rope_theta=10000.0, initializer_range=0.2)
    torch.manual_seed(0)
    model = transformers.Qwen3ForCausalLM(cfg).eval()
    path = tmp_path_factory.mktemp(name)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory, "tiny-qwen3-tp", heads=4, kv_heads=2)


def prompts() -> list[list[int]]:
    """Four prompts sharing a 40-token prefix (prefix-cache hits) and one 70-token prompt
    (chunked over 3 steps)."""
    g = torch.Generator().manual_seed(1)
    shared = torch.randint(0, 383, (40,), generator=g).tolist()
    out = [shared + torch.randint(0, 383, (n,), generator=g).tolist() for n in (5, 17, 30, 9)]
    return out + [torch.randint(0, 383, (70,), generator=g).tolist()]
