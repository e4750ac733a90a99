"""Requests an engine can never serve, by their lengths alone (rejected at admission)."""
from __future__ import annotations


def length_reject_reason(cfg, num_blocks: int, prompt_tokens: int, max_tokens: int) -> str:
    """Why a request of these lengths can never be served by an engine with config ``cfg``
    and ``num_blocks`` KV blocks ("" if it can)."""
    if prompt_tokens > cfg.max_model_len:
        return f"prompt of {prompt_tokens} tokens is longer than max_model_len {cfg.max_model_len}"
    if prompt_tokens + max_tokens > cfg.max_model_len:
        return (f"prompt {prompt_tokens} + output {max_tokens} tokens exceeds "
                f"max_model_len {cfg.max_model_len}")
    need = -(-(prompt_tokens + max_tokens - 1) // cfg.block_size_tokens)
    if need > num_blocks:
        return f"needs {need} KV blocks, the cache has {num_blocks}"
    return ""
