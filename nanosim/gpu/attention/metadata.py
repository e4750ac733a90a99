"""Per-step attention metadata: how the packed (varlen) query tokens map onto the paged cache.

The batch is B sequences whose new tokens are packed back to back (T tokens in all). For
sequence i, ``start_i`` tokens are already in its KV cache (earlier chunks, decode history,
prefix-cache hits) and ``q_i`` tokens are computed now, at positions start_i .. start_i+q_i-1.
Their K/V are first written to ``slot_mapping`` and attention then reads the whole context
(start_i + q_i tokens) from the paged cache, causal mask aligned bottom-right.

The first ``num_prefills`` sequences may have any q_i >= 1 (prefill chunks); every later one
has q_i == 1 (decodes), so a backend can run a varlen kernel on the head of the batch and a
decode kernel on its tail.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor  # (T,) int32: cache slot (block * block_size + offset); -1 = skip
    query_start_loc: torch.Tensor  # (B+1,) int32: cumulative q_i (cu_seqlens_q)
    seq_lens: torch.Tensor  # (B,) int32: start_i + q_i, context length after this step
    block_tables: torch.Tensor  # (B, W) int32: physical block ids, row i valid up to cdiv(seq_len, bs)
    num_prefills: int  # leading sequences handled by the varlen (prefill) path
    num_prefill_tokens: int  # their tokens: query_start_loc[num_prefills]
    max_query_len: int
    max_seq_len: int
    # Host copies for the torch reference (None inside CUDA graphs: lengths are not fixed there).
    query_lens_host: list[int] | None = None
    seq_lens_host: list[int] | None = None

    @property
    def num_seqs(self) -> int:
        return self.seq_lens.shape[0]

    @property
    def num_decodes(self) -> int:
        return self.num_seqs - self.num_prefills
