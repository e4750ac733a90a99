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

import numpy as np
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
    # Tile map of a CUDA-graph step of any composition (triton backend): program t of the
    # varlen kernel serves sequence tile_seq[t] (-1: idle), query tile tile_m[t]; every
    # sequence, decodes included, goes through that one launch. None otherwise.
    tile_seq: torch.Tensor | None = None
    tile_m: torch.Tensor | None = None
    # (num_decodes,) int32: the decode rows (0 = the first decode) longest context first;
    # the decode kernel's i-th programs serve row decode_order[i], so the longest rows start
    # first and short ones fill the last wave (None: batch order)
    decode_order: torch.Tensor | None = None

    @property
    def num_seqs(self) -> int:
        return self.seq_lens.shape[0]

    @property
    def num_decodes(self) -> int:
        return self.num_seqs - self.num_prefills


def max_tiles(num_tokens: int, max_seqs: int, block_m: int = 64) -> int:
    """Tiles a batch of num_tokens tokens in at most max_seqs sequences can need: each
    sequence adds at most one partial tile, and every sequence has a token."""
    return -(-num_tokens // block_m) + min(max_seqs, num_tokens)


def tile_map(query_lens, num_tiles: int, block_m: int = 64):
    """(tile_seq, tile_m) int32 numpy arrays of length num_tiles: the query tiles of each
    sequence in order, then -1 (idle programs)."""
    lens = np.asarray(query_lens, dtype=np.int64)
    per = -(-lens // block_m)
    n = int(per.sum())
    if n > num_tiles:
        raise ValueError(f"{n} query tiles do not fit the {num_tiles} of this launch")
    seq = np.full(num_tiles, -1, np.int32)
    m = np.zeros(num_tiles, np.int32)
    seq[:n] = np.repeat(np.arange(len(lens)), per)
    m[:n] = np.arange(n) - np.repeat(np.cumsum(per) - per, per)
    return seq, m
