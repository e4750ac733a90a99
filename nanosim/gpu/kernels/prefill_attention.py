"""Paged varlen (prefill-chunk) attention: q_len >= 1 per sequence, K/V read from the cache.

Grid (B, Hq, cdiv(max_q_len, BLOCK_M)). Query row j of sequence b sits at position
ctx_b + j (ctx_b = seq_len_b - q_len_b tokens were cached before this chunk: prefix hits or
earlier chunks) and attends to cached positions 0..ctx_b + j, i.e. a causal mask aligned
bottom-right. K/V of the chunk itself must already be stored in the cache.

Tile-map mode (CUDA graphs for any batch): grid (num_tiles, Hq), and program t reads its
sequence ``tile_seq[t]`` and query tile ``tile_m[t]`` from device memory (-1: no work), so
the grid depends only on the token budget, never on the batch's lengths. Decodes are just
sequences with one query row. ``tile_map`` builds the two arrays on the host.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from nanosim.gpu.attention.metadata import max_tiles, tile_map  # noqa: F401  (host side)
from nanosim.gpu.kernels.decode_attention import (LOG2E, dot_precision, online_softmax_step,
                                                   paged_kv_offsets)


@triton.jit
def _prefill_kernel(q_ptr, k_cache_ptr, v_cache_ptr, out_ptr, bt_ptr, qsl_ptr, seq_lens_ptr,
                    tile_seq_ptr, tile_m_ptr,
                    stride_qt, stride_qh, stride_ot, stride_oh, stride_slot, stride_head, stride_bt,
                    qk_scale, block_size,
                    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DOT_PRECISION: tl.constexpr,
                    TILED: tl.constexpr):
    h = tl.program_id(1)
    if TILED:  # (sequence, query tile) from the tile map; sequence -1 = an idle program
        b = tl.load(tile_seq_ptr + tl.program_id(0))
        mt = tl.load(tile_m_ptr + tl.program_id(0))
        live = b >= 0
        b = tl.maximum(b, 0)
    else:
        b = tl.program_id(0)
        mt = tl.program_id(2)
        live = b >= 0
    q_start = tl.load(qsl_ptr + b)
    q_len = tl.load(qsl_ptr + b + 1) - q_start
    seq_len = tl.load(seq_lens_ptr + b)
    ctx = seq_len - q_len
    kvh = h // GROUP

    m = mt * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = (m < q_len) & live
    q_pos = ctx + m  # absolute positions of the query rows
    d = tl.arange(0, BLOCK_D)
    d_ok = d < HEAD_DIM
    q = tl.load(q_ptr + (q_start + m)[:, None] * stride_qt + h * stride_qh + d[None, :],
                mask=m_ok[:, None] & d_ok[None, :], other=0.0)  # (BLOCK_M, BLOCK_D)

    # keys past the tile's last row are masked for every row; empty tiles do no work
    hi = tl.minimum(seq_len, ctx + (mt + 1) * BLOCK_M)
    hi = tl.where((mt * BLOCK_M < q_len) & live, hi, 0)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for n0 in range(0, hi, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        n_ok = n < hi
        kv_off, kv_ok = paged_kv_offsets(bt_ptr + b * stride_bt, n, n_ok, d, d_ok, kvh,
                                         block_size, stride_slot, stride_head)
        k = tl.load(k_cache_ptr + kv_off, mask=kv_ok, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        s = tl.where(n_ok[None, :] & (n[None, :] <= q_pos[:, None]), s, float("-inf"))
        # row max finite after tile 0 (key 0 is always visible)
        m_i, l_i, acc = online_softmax_step(s, m_i, l_i, acc, v_cache_ptr + kv_off, kv_ok,
                                            DOT_PRECISION)

    o = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(out_ptr + (q_start + m)[:, None] * stride_ot + h * stride_oh + d[None, :],
             o.to(out_ptr.dtype.element_ty), mask=m_ok[:, None] & d_ok[None, :])


def paged_prefill_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                            block_tables: torch.Tensor, query_start_loc: torch.Tensor,
                            seq_lens: torch.Tensor, max_query_len: int, scale: float,
                            out: torch.Tensor | None = None, block_m: int = 64,
                            block_n: int = 64) -> torch.Tensor:
    """q (T, Hq, D) packed chunks, caches (N, block_size, Hkv, D) contiguous, block_tables
    (B, W) int32, query_start_loc (B+1,) int32, seq_lens (B,) int32 (context incl. the chunk)
    -> out (T, Hq, D) in q's dtype."""
    T, Hq, D = q.shape
    Hkv = k_cache.shape[2]
    B = seq_lens.shape[0]
    assert q.stride(2) == 1 and k_cache.is_contiguous() and v_cache.is_contiguous()
    assert Hq % Hkv == 0 and block_tables.stride(1) == 1 and query_start_loc.shape == (B + 1,)
    if out is None:
        out = torch.empty_like(q)
    if B == 0 or T == 0:
        return out
    grid = (B, Hq, triton.cdiv(max_query_len, block_m))
    _launch(grid, q, k_cache, v_cache, out, block_tables, query_start_loc, seq_lens,
            seq_lens, seq_lens, scale, block_m, block_n, tiled=False)
    return out


def tiled_varlen_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                           block_tables: torch.Tensor, query_start_loc: torch.Tensor,
                           seq_lens: torch.Tensor, tile_seq: torch.Tensor, tile_m: torch.Tensor,
                           scale: float, out: torch.Tensor | None = None, block_m: int = 64,
                           block_n: int = 64) -> torch.Tensor:
    """As paged_prefill_attention, for every sequence of the batch (decodes too), with the
    grid fixed by the tile map's length: tile_seq / tile_m (N,) int32 from tile_map()."""
    T, Hq, D = q.shape
    assert q.stride(2) == 1 and k_cache.is_contiguous() and v_cache.is_contiguous()
    assert tile_seq.shape == tile_m.shape and block_tables.stride(1) == 1
    if out is None:
        out = torch.empty_like(q)
    if T == 0 or tile_seq.shape[0] == 0:
        return out
    _launch((tile_seq.shape[0], Hq), q, k_cache, v_cache, out, block_tables, query_start_loc,
            seq_lens, tile_seq, tile_m, scale, block_m, block_n, tiled=True)
    return out


def _launch(grid, q, k_cache, v_cache, out, block_tables, query_start_loc, seq_lens, tile_seq,
            tile_m, scale, block_m, block_n, tiled: bool) -> None:
    _, block_size, Hkv, _ = k_cache.shape
    Hq, D = q.shape[1], q.shape[2]
    _prefill_kernel[grid](
        q, k_cache, v_cache, out, block_tables, query_start_loc, seq_lens, tile_seq, tile_m,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1), k_cache.stride(1), k_cache.stride(2),
        block_tables.stride(0), scale * LOG2E, block_size,
        GROUP=Hq // Hkv, HEAD_DIM=D, BLOCK_D=triton.next_power_of_2(D), BLOCK_M=block_m,
        BLOCK_N=block_n, DOT_PRECISION=dot_precision(q.dtype), TILED=tiled)
