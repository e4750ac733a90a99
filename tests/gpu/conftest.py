"""Shared fixtures. Triton kernels run on CPU through the interpreter: TRITON_INTERPRET must
be set before triton is first imported, which this conftest guarantees for the folder."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
            rms_norm_eps=1e-6, initializer_range=0.2,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0})


def make_hf_model(seed: int = 0, **overrides):
    """A tiny fp32 transformers Qwen3ForCausalLM with random weights (norms perturbed too)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(**{**TINY, **overrides})
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="session")
def hf_untied(tmp_path_factory):
    """(transformers model, checkpoint dir) with untied embeddings."""
    model = make_hf_model(0, tie_word_embeddings=False)
    path = tmp_path_factory.mktemp("qwen3_untied")
    model.save_pretrained(path)
    return model, path


@pytest.fixture(scope="session")
def hf_tied(tmp_path_factory):
    """(transformers model, sharded checkpoint dir) with tied embeddings, vocab 512."""
    model = make_hf_model(1, tie_word_embeddings=True, vocab_size=512)
    path = tmp_path_factory.mktemp("qwen3_tied")
    model.save_pretrained(path, max_shard_size="40KB")
    return model, path
