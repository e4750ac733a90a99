"""The tiny random Qwen3 checkpoint the CPU tests of real mode share (2 layers, hidden 64,
4 query / 2 KV heads of 16, vocabulary 384; seed 0): fp32 forwards take milliseconds."""
from pathlib import Path


def save_tiny_qwen3(path: Path):
    """Write the checkpoint to ``path`` (config + safetensors); returns the transformers
    model (eval mode), for tests that compare against it."""
    import torch
    import transformers

    cfg = transformers.Qwen3Config(
        vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=1024,
        tie_word_embeddings=False, rms_norm_eps=1e-6, rope_theta=10000.0)
    torch.manual_seed(0)
    model = transformers.Qwen3ForCausalLM(cfg).eval()
    model.save_pretrained(path)
    return model
