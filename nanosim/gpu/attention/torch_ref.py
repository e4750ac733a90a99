"""Reference paged attention in plain torch (CPU or GPU): a loop over sequences.

Gathers each sequence's K/V from the paged cache, repeats KV heads for GQA, applies a causal
mask aligned bottom-right and softmax in fp32. Slow and simple: the ground truth for tests.
"""
from __future__ import annotations

import torch

from nanosim.gpu.attention.metadata import AttentionMetadata


def store_kv_ref(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 slot_mapping: torch.Tensor) -> None:
    """k, v (T, Hkv, D) -> caches (N, bs, Hkv, D) at flat slot_mapping (T,); -1 is skipped."""
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].long()
    k_cache.view(-1, *k_cache.shape[2:])[slots] = k[keep]
    v_cache.view(-1, *v_cache.shape[2:])[slots] = v[keep]


def gather_kv(cache: torch.Tensor, block_row: torch.Tensor, length: int) -> torch.Tensor:
    """The first ``length`` tokens of one sequence: (length, Hkv, D)."""
    bs = cache.shape[1]
    blocks = block_row[: -(-length // bs)].long()
    return cache[blocks].flatten(0, 1)[:length]


def paged_attention_ref(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                        meta: AttentionMetadata, scale: float) -> torch.Tensor:
    """q (T, Hq, D) -> out (T, Hq, D); K/V of every context token read from the cache."""
    out = torch.empty_like(q)
    group = q.shape[1] // k_cache.shape[2]
    start = 0
    for i, (q_len, seq_len) in enumerate(zip(meta.query_lens_host, meta.seq_lens_host)):
        qi = q[start:start + q_len].float()  # (q, Hq, D)
        k = gather_kv(k_cache, meta.block_tables[i], seq_len).float().repeat_interleave(group, 1)
        v = gather_kv(v_cache, meta.block_tables[i], seq_len).float().repeat_interleave(group, 1)
        s = torch.einsum("qhd,khd->hqk", qi, k) * scale  # (Hq, q, L)
        q_pos = torch.arange(seq_len - q_len, seq_len, device=q.device)
        k_pos = torch.arange(seq_len, device=q.device)
        s = s.masked_fill(k_pos[None, None, :] > q_pos[None, :, None], float("-inf"))
        out[start:start + q_len] = torch.einsum("hqk,khd->qhd", s.softmax(-1), v).to(q.dtype)
        start += q_len
    return out


class TorchAttention:
    """Backend protocol: ``forward(q, k, v, k_cache, v_cache, meta) -> out (T, Hq, D)``."""

    name = "torch"
    supports_cuda_graphs = False  # loops over host-side lengths

    def forward(self, q, k, v, k_cache, v_cache, meta: AttentionMetadata, scale: float):
        if k is not None:  # None: already stored (fused qk-norm/rope kernel)
            store_kv_ref(k, v, k_cache, v_cache, meta.slot_mapping)
        return paged_attention_ref(q, k_cache, v_cache, meta, scale)
