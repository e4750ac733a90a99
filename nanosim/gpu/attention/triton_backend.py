"""Attention with our Triton kernels: store K/V, varlen kernel on the batch's prefill head,
decode kernel (split-KV) on its tail. CUDA-graph safe for decode-only batches, and for any
batch when the metadata carries a tile map (a mixed graph: one varlen launch over the
sequences with several query tokens, one decode launch with kernels.mixed_decode_splits over
those with one, listed in decode_order, so a decode row's context is not walked by one
program per q head as the varlen kernel would)."""
from __future__ import annotations

import torch

from nanosim.gpu.attention.metadata import AttentionMetadata
from nanosim.gpu.kernels.decode_attention import paged_decode_attention
from nanosim.gpu.kernels.prefill_attention import (
    paged_prefill_attention,
    tiled_varlen_attention,
)
from nanosim.gpu.kernels.qkv_prologue import QKVPrologue
from nanosim.gpu.kernels.store_kv import store_kv
from nanosim.gpu.options import KERNELS, KernelOptions


class TritonAttention:
    name = "triton"
    supports_cuda_graphs = True
    supports_tile_map = True  # meta.tile_seq/tile_m: one graph-safe launch for any batch

    def __init__(self, block_m: int = 64, block_n: int = 64, num_splits: int | None = None,
                 kernels: KernelOptions = KERNELS):
        self.block_m, self.block_n, self.num_splits = block_m, block_n, num_splits
        self.kernels = kernels  # the runner's kernel switches, handed to each launch

    def takes_qkv(self, meta: AttentionMetadata) -> bool:
        """Whether forward_qkv serves this batch: decode rows only, no tile map."""
        return self.kernels.qkv_prologue and meta.num_prefills == 0 and meta.tile_seq is None

    def forward_qkv(self, qkv, prologue: QKVPrologue, k_cache, v_cache, meta: AttentionMetadata,
                    scale: float):
        """A decode-only batch from its raw qkv projection (T, (Hq + 2 Hkv) * D): the decode
        kernel normalises and rotates q and k and stores the new K/V itself -> (T, Hq, D)."""
        return paged_decode_attention(qkv, k_cache, v_cache, meta.block_tables, meta.seq_lens, scale,
                                      num_splits=self.num_splits, max_seq_len=meta.max_seq_len,
                                      order=meta.decode_order, prologue=prologue, opts=self.kernels)

    def forward(self, q, k, v, k_cache, v_cache, meta: AttentionMetadata, scale: float):
        """q (T, Hq, D), k/v (T, Hkv, D) or None (already stored), caches (N, bs, Hkv, D) -> (T, Hq, D)."""
        if k is not None:  # None: the fused qk-norm/rope kernel stored them
            store_kv(k, v, k_cache, v_cache, meta.slot_mapping)
        out = torch.empty_like(q)
        if meta.tile_seq is not None:  # CUDA-graph step: rows not in any tile stay garbage
            tiled_varlen_attention(q, k_cache, v_cache, meta.block_tables, meta.query_start_loc,
                                   meta.seq_lens, meta.tile_seq, meta.tile_m, scale, out=out,
                                   block_m=self.block_m, block_n=self.block_n)
            if meta.decode_order is not None:  # the one-token rows, not in any tile
                paged_decode_attention(q, k_cache, v_cache, meta.block_tables, meta.seq_lens, scale,
                                       out=out, num_splits=self.kernels.mixed_decode_splits,
                                       order=meta.decode_order, query_start_loc=meta.query_start_loc,
                                       opts=self.kernels)
            return out
        p, pt = meta.num_prefills, meta.num_prefill_tokens
        if p:
            paged_prefill_attention(q[:pt], k_cache, v_cache, meta.block_tables[:p],
                                    meta.query_start_loc[:p + 1], meta.seq_lens[:p],
                                    meta.max_query_len, scale, out=out[:pt],
                                    block_m=self.block_m, block_n=self.block_n)
        if meta.num_decodes:
            paged_decode_attention(q[pt:], k_cache, v_cache, meta.block_tables[p:],
                                   meta.seq_lens[p:], scale, out=out[pt:],
                                   num_splits=self.num_splits,
                                   max_seq_len=meta.max_seq_len, order=meta.decode_order,
                                   opts=self.kernels)
        return out
