"""Fused elementwise kernels that cut a decode step from ~60 to ~10 launches per layer.

    rms_norm      (residual add +) RMSNorm, one program per row
    silu_and_mul  silu(gate) * up
    qk_norm_rope  per-head RMSNorm of q and k straight out of the fused qkv projection, then
                  neox rotary embedding; writes contiguous q (T, Hq, D) and k (T, Hkv, D)

Rounding follows the torch path in nanosim.gpu.layers/rotary (fp32 math, results rounded to
the activation dtype at the same points), so fused and unfused runs agree to dtype precision.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rms_norm_kernel(x_ptr, res_ptr, w_ptr, out_ptr, stride_x, stride_r, stride_o, N, eps,
                     HAS_RES: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    c = tl.arange(0, BLOCK)
    ok = c < N
    x = tl.load(x_ptr + row * stride_x + c, mask=ok, other=0.0).to(tl.float32)
    if HAS_RES:  # residual <- x + residual (rounded to dtype, as the torch path does)
        r = tl.load(res_ptr + row * stride_r + c, mask=ok, other=0.0).to(tl.float32)
        s = (x + r).to(res_ptr.dtype.element_ty)
        tl.store(res_ptr + row * stride_r + c, s, mask=ok)
        x = s.to(tl.float32)
    inv = 1.0 / tl.sqrt(tl.sum(x * x, 0) / N + eps)
    w = tl.load(w_ptr + c, mask=ok, other=0.0).to(tl.float32)
    y = (x * inv).to(out_ptr.dtype.element_ty).to(tl.float32) * w
    tl.store(out_ptr + row * stride_o + c, y.to(out_ptr.dtype.element_ty), mask=ok)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float,
             residual: torch.Tensor | None = None):
    """x (R, N) with unit last stride. Without residual -> y; with residual (R, N) contiguous
    -> (y, residual) where residual was updated IN PLACE to x + residual."""
    R, N = x.shape
    assert x.stride(1) == 1
    out = torch.empty(R, N, dtype=x.dtype, device=x.device)
    res = residual if residual is not None else x
    if R:
        assert res.stride(1) == 1
        _rms_norm_kernel[(R,)](x, res, weight, out, x.stride(0), res.stride(0), out.stride(0), N, eps,
                               HAS_RES=residual is not None, BLOCK=triton.next_power_of_2(N))
    return out if residual is None else (out, residual)


@triton.jit
def _silu_and_mul_kernel(x_ptr, out_ptr, stride_x, stride_o, N, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = c < N
    g = tl.load(x_ptr + row * stride_x + c, mask=ok, other=0.0).to(tl.float32)
    u = tl.load(x_ptr + row * stride_x + N + c, mask=ok, other=0.0).to(tl.float32)
    a = (g / (1.0 + tl.exp(-g))).to(out_ptr.dtype.element_ty).to(tl.float32)
    tl.store(out_ptr + row * stride_o + c, (a * u).to(out_ptr.dtype.element_ty), mask=ok)


def silu_and_mul(x: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """x (T, 2I) [gate | up] -> (T, I)."""
    T, N2 = x.shape
    assert x.stride(1) == 1 and N2 % 2 == 0
    out = torch.empty(T, N2 // 2, dtype=x.dtype, device=x.device)
    if T:
        _silu_and_mul_kernel[(T, triton.cdiv(N2 // 2, block))](x, out, x.stride(0), out.stride(0),
                                                              N2 // 2, BLOCK=block)
    return out


@triton.jit
def _qk_norm_rope_kernel(qkv_ptr, qw_ptr, kw_ptr, cos_sin_ptr, pos_ptr, q_ptr, k_ptr,
                         stride_t, eps, HQ: tl.constexpr, HKV: tl.constexpr,
                         HEAD_DIM: tl.constexpr, HALF: tl.constexpr, BLOCK_HALF: tl.constexpr):
    # Grid (T, HQ + HKV): head h < HQ is a q head, else k head h - HQ. In a qkv row the q
    # heads come first, then the k heads, each HEAD_DIM wide, so the source is h * HEAD_DIM.
    t = tl.program_id(0)
    h = tl.program_id(1)
    is_q = h < HQ
    is_k = h >= HQ
    c = tl.arange(0, BLOCK_HALF)
    ok = c < HALF
    src = qkv_ptr + t * stride_t + h * HEAD_DIM
    x1 = tl.load(src + c, mask=ok, other=0.0).to(tl.float32)
    x2 = tl.load(src + HALF + c, mask=ok, other=0.0).to(tl.float32)
    inv = 1.0 / tl.sqrt((tl.sum(x1 * x1, 0) + tl.sum(x2 * x2, 0)) / HEAD_DIM + eps)
    w1 = tl.load(qw_ptr + c, mask=ok & is_q, other=0.0) + tl.load(kw_ptr + c, mask=ok & is_k, other=0.0)
    w2 = tl.load(qw_ptr + HALF + c, mask=ok & is_q, other=0.0) + \
        tl.load(kw_ptr + HALF + c, mask=ok & is_k, other=0.0)
    dt = q_ptr.dtype.element_ty
    y1 = ((x1 * inv).to(dt).to(tl.float32) * w1.to(tl.float32)).to(dt).to(tl.float32)
    y2 = ((x2 * inv).to(dt).to(tl.float32) * w2.to(tl.float32)).to(dt).to(tl.float32)
    pos = tl.load(pos_ptr + t).to(tl.int64)
    cos = tl.load(cos_sin_ptr + pos * HEAD_DIM + c, mask=ok, other=0.0)
    sin = tl.load(cos_sin_ptr + pos * HEAD_DIM + HALF + c, mask=ok, other=0.0)
    o1 = (y1 * cos - y2 * sin).to(dt)
    o2 = (y2 * cos + y1 * sin).to(dt)
    qh = tl.minimum(h, HQ - 1)
    kh = tl.maximum(h - HQ, 0)
    q_dst = q_ptr + (t * HQ + qh) * HEAD_DIM
    k_dst = k_ptr + (t * HKV + kh) * HEAD_DIM
    tl.store(q_dst + c, o1, mask=ok & is_q)
    tl.store(q_dst + HALF + c, o2, mask=ok & is_q)
    tl.store(k_dst + c, o1, mask=ok & is_k)
    tl.store(k_dst + HALF + c, o2, mask=ok & is_k)


def qk_norm_rope(qkv: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor,
                 cos_sin_cache: torch.Tensor, positions: torch.Tensor, num_q_heads: int,
                 num_kv_heads: int, head_dim: int, eps: float):
    """qkv (T, (Hq + 2 Hkv) * D), q/k_weight (D,), cos_sin_cache (P, D) fp32 [cos | sin],
    positions (T,) -> q (T, Hq, D), k (T, Hkv, D) contiguous, normalised and rotated."""
    T = qkv.shape[0]
    assert qkv.stride(1) == 1 and head_dim % 2 == 0 and cos_sin_cache.is_contiguous()
    q = torch.empty(T, num_q_heads, head_dim, dtype=qkv.dtype, device=qkv.device)
    k = torch.empty(T, num_kv_heads, head_dim, dtype=qkv.dtype, device=qkv.device)
    if T:
        half = head_dim // 2
        _qk_norm_rope_kernel[(T, num_q_heads + num_kv_heads)](
            qkv, q_weight, k_weight, cos_sin_cache, positions, q, k, qkv.stride(0), eps,
            HQ=num_q_heads, HKV=num_kv_heads, HEAD_DIM=head_dim, HALF=half,
            BLOCK_HALF=triton.next_power_of_2(half))
    return q, k
