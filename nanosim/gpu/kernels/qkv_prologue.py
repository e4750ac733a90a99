"""The decode kernel's qkv prologue: per-head RMSNorm of q and k, neox RoPE, and the new
token's K/V store, done from the raw qkv projection inside the decode attention kernel
(decode_attention._decode_kernel, FUSED_QKV) instead of a separate fused_ops.qk_norm_rope
launch. Rounded as that kernel rounds, so the fused and unfused paths agree.

    QKVPrologue        what the launch needs (weights, rotary cache, positions, slots)
    prologue_inputs    the prologue's reads that no kernel of the step writes (may come
                       before the PDL wait)
    qkv_prologue       q normalised and rotated; the owner program stores the new K/V
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl


@triton.jit
def _norm_rope(x, xp, inv, w, wp, cos, sin, first_half, out_dtype: tl.constexpr):
    """RMSNorm (x * inv, times weight w; wp: the weight at the partner lanes) then neox RoPE
    of x, whose partner (the other rotary half) is xp; rounded where the unfused path
    (fused_ops.qk_norm_rope) rounds."""
    dt = out_dtype
    y = ((x * inv).to(dt).to(tl.float32) * w)
    yp = ((xp * inv).to(dt).to(tl.float32) * wp)
    y = y.to(dt).to(tl.float32)
    yp = yp.to(dt).to(tl.float32)
    # first half: y * cos - partner * sin; second half: y * cos + partner * sin
    return (y * cos + tl.where(first_half, -yp, yp) * sin).to(dt)


@triton.jit
def prologue_inputs(qn_w_ptr, kn_w_ptr, cos_sin_ptr, pos_ptr, slot_ptr, t, d, d_ok,
                     HEAD_DIM: tl.constexpr):
    """What the qkv prologue reads besides the qkv row, none of it written by a kernel of the
    step (weights, rotary cache; positions and slots from the host upload), so it may be
    read before the PDL wait: (cos, sin, slot, q weight, its partner lanes, k weight, ...)."""
    HALF: tl.constexpr = HEAD_DIM // 2
    dp = tl.where(d < HALF, d + HALF, d - HALF)  # the rotary partner of lane d
    pos = tl.load(pos_ptr + t).to(tl.int64)
    cos = tl.load(cos_sin_ptr + pos * HEAD_DIM + d % HALF, mask=d_ok, other=0.0)
    sin = tl.load(cos_sin_ptr + pos * HEAD_DIM + HALF + d % HALF, mask=d_ok, other=0.0)
    slot = tl.load(slot_ptr + t).to(tl.int64)
    qw = tl.load(qn_w_ptr + d, mask=d_ok, other=0.0).to(tl.float32)
    qwp = tl.load(qn_w_ptr + dp, mask=d_ok, other=0.0).to(tl.float32)
    kw = tl.load(kn_w_ptr + d, mask=d_ok, other=0.0).to(tl.float32)
    kwp = tl.load(kn_w_ptr + dp, mask=d_ok, other=0.0).to(tl.float32)
    return cos, sin, slot, qw, qwp, kw, kwp


@triton.jit
def qkv_prologue(q_raw, row_ptr, cos, sin, slot, qw, qwp, kw, kwp, k_cache_ptr, v_cache_ptr,
                  heads, h_ok, d, d_ok, kvh, num_q_heads, num_kv_heads, stride_slot, stride_head,
                  eps, owner, HEAD_DIM: tl.constexpr):
    """A decode row's qkv row (Hq + 2 Hkv heads of HEAD_DIM) at row_ptr -> this program's q
    heads (BLOCK_H, BLOCK_D), normalised and rotated (the rest from prologue_inputs); the
    program that owns the row's last context token (owner) also writes that token's K
    (normalised, rotated) and V into their cache slot, then every thread syncs so the context
    walk reads them back. Returns q and the new token's K and V (BLOCK_D,) in the cache dtype
    (zeros where not the owner)."""
    HALF: tl.constexpr = HEAD_DIM // 2
    first_half = d < HALF
    dp = tl.where(first_half, d + HALF, d - HALF)
    hd_ok = h_ok[:, None] & d_ok[None, :]
    xq = q_raw.to(tl.float32)
    xqp = tl.load(row_ptr + heads[:, None] * HEAD_DIM + dp[None, :], mask=hd_ok, other=0.0).to(tl.float32)
    inv = 1.0 / tl.sqrt(tl.sum(xq * xq, 1) / HEAD_DIM + eps)
    dt: tl.constexpr = row_ptr.dtype.element_ty
    q = _norm_rope(xq, xqp, inv[:, None], qw[None, :], qwp[None, :], cos[None, :], sin[None, :],
                   first_half[None, :], dt)
    k_off = (num_q_heads + kvh) * HEAD_DIM
    v_off = (num_q_heads + num_kv_heads + kvh) * HEAD_DIM
    mine = owner & (slot >= 0)
    kx = tl.load(row_ptr + k_off + d, mask=d_ok & mine, other=0.0).to(tl.float32)
    kxp = tl.load(row_ptr + k_off + dp, mask=d_ok & mine, other=0.0).to(tl.float32)
    kinv = 1.0 / tl.sqrt(tl.sum(kx * kx, 0) / HEAD_DIM + eps)
    k = _norm_rope(kx, kxp, kinv, kw, kwp, cos, sin, first_half, dt)
    v = tl.load(row_ptr + v_off + d, mask=d_ok & mine, other=0.0)
    dst = tl.maximum(slot, 0) * stride_slot + kvh * stride_head + d
    k = k.to(k_cache_ptr.dtype.element_ty)
    v = v.to(v_cache_ptr.dtype.element_ty)
    tl.store(k_cache_ptr + dst, k, mask=d_ok & mine)
    tl.store(v_cache_ptr + dst, v, mask=d_ok & mine)
    tl.debug_barrier()  # the stores above are visible to the whole program before the walk
    return q, k, v  # k, v: the new token's, as stored (read by the PREWAIT first tile)



@dataclass(frozen=True)
class QKVPrologue:
    """What the decode kernel needs to take a decode batch's raw qkv projection (T, (Hq +
    2 Hkv) * D) instead of q: per-head RMSNorm weights (D,), the rotary cache (P, D) fp32
    [cos | sin], positions (T,), and the K/V cache slots (T,) int32 (-1: skip). The kernel
    then does what fused_ops.qk_norm_rope would (rounded alike) and one launch less."""
    num_q_heads: int
    q_weight: torch.Tensor
    k_weight: torch.Tensor
    cos_sin_cache: torch.Tensor
    positions: torch.Tensor
    slot_mapping: torch.Tensor
    eps: float

    def kernel_args(self) -> dict:
        return dict(qn_w_ptr=self.q_weight, kn_w_ptr=self.k_weight, cos_sin_ptr=self.cos_sin_cache,
                    pos_ptr=self.positions, slot_ptr=self.slot_mapping, eps=self.eps, FUSED_QKV=True)

    def view(self, qkv: torch.Tensor, num_kv_heads: int, head_dim: int) -> torch.Tensor:
        """qkv (T, (Hq + 2 Hkv) * D) -> (T, Hq + 2 Hkv, D): the q heads come first, so the
        kernel indexes it as it would q (T, Hq, D)."""
        T, Hq = qkv.shape[0], self.num_q_heads
        assert qkv.shape[1] == (Hq + 2 * num_kv_heads) * head_dim and qkv.stride(1) == 1
        return qkv.view(T, Hq + 2 * num_kv_heads, head_dim)
