"""Fused elementwise kernels that cut a decode step from ~60 to ~10 launches per layer.

    rms_norm      (split-K partial sums +) (residual add +) RMSNorm, one program per row
    silu_and_mul  silu(gate) * up
    qk_norm_rope  per-head RMSNorm of q and k straight out of the fused qkv projection, then
                  neox rotary embedding; writes contiguous q (T, Hq, D) and either k
                  (T, Hkv, D) or, with a KV cache given, k and v into their cache slots

Rounding follows the torch path in nanosim.gpu.layers/rotary (fp32 math, results rounded to
the activation dtype at the same points), so fused and unfused runs agree to dtype precision.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from nanosim.gpu.kernels.pdl import pdl_enter, pdl_launch
from nanosim.gpu.options import KERNELS, KernelOptions


@triton.jit
def _rms_norm_kernel(x_ptr, res_ptr, w_ptr, out_ptr, stride_p, stride_x, stride_r, stride_o, N, eps,
                     HAS_RES: tl.constexpr, PARTS: tl.constexpr, BLOCK: tl.constexpr,
                     USE_PDL: tl.constexpr):
    pdl_enter(USE_PDL)
    row = tl.program_id(0)
    c = tl.arange(0, BLOCK)
    ok = c < N
    x = tl.load(x_ptr + row * stride_x + c, mask=ok, other=0.0).to(tl.float32)
    if PARTS > 0:  # x is (PARTS, R, N) fp32 split-K partial sums: add, round as F.linear would
        for p in range(1, PARTS):
            x += tl.load(x_ptr + p * stride_p + row * stride_x + c, mask=ok, other=0.0)
        x = x.to(out_ptr.dtype.element_ty).to(tl.float32)
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
             residual: torch.Tensor | None = None, opts: KernelOptions = KERNELS):
    """x (R, N) with unit last stride, or (S, R, N) fp32 partial sums of a split-K skinny GEMM
    (added here; needs a residual, whose dtype the output takes). Without residual -> y; with
    residual (R, N) contiguous -> (y, residual) where residual was updated IN PLACE to
    x + residual."""
    parts = x.shape[0] if x.dim() == 3 else 0  # 0: x is activations, not partials
    if parts and residual is None:
        raise ValueError("rms_norm of split-K partials needs the residual (it sets the dtype)")
    R, N = x.shape[-2:]
    assert x.stride(-1) == 1
    out = torch.empty(R, N, dtype=x.dtype if residual is None else residual.dtype, device=x.device)
    res = residual if residual is not None else out
    if R:
        assert res.stride(1) == 1
        _rms_norm_kernel[(R,)](x, res, weight, out, x.stride(0) if parts else 0, x.stride(-2),
                               res.stride(0), out.stride(0), N, eps, HAS_RES=residual is not None,
                               PARTS=parts, BLOCK=triton.next_power_of_2(N),
                               **pdl_launch(x.device, opts.pdl))
    return out if residual is None else (out, residual)


@triton.jit
def _silu_and_mul_kernel(x_ptr, out_ptr, stride_x, stride_o, N, BLOCK: tl.constexpr,
                         USE_PDL: tl.constexpr):
    pdl_enter(USE_PDL)
    row = tl.program_id(0)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = c < N
    g = tl.load(x_ptr + row * stride_x + c, mask=ok, other=0.0).to(tl.float32)
    u = tl.load(x_ptr + row * stride_x + N + c, mask=ok, other=0.0).to(tl.float32)
    a = (g / (1.0 + tl.exp(-g))).to(out_ptr.dtype.element_ty).to(tl.float32)
    tl.store(out_ptr + row * stride_o + c, (a * u).to(out_ptr.dtype.element_ty), mask=ok)


def silu_and_mul(x: torch.Tensor, block: int = 1024, opts: KernelOptions = KERNELS) -> torch.Tensor:
    """x (T, 2I) [gate | up] -> (T, I)."""
    T, N2 = x.shape
    assert x.stride(1) == 1 and N2 % 2 == 0
    out = torch.empty(T, N2 // 2, dtype=x.dtype, device=x.device)
    if T:
        _silu_and_mul_kernel[(T, triton.cdiv(N2 // 2, block))](x, out, x.stride(0), out.stride(0),
                                                              N2 // 2, BLOCK=block,
                                                              **pdl_launch(x.device, opts.pdl))
    return out


@triton.jit
def _qk_norm_rope_kernel(qkv_ptr, qw_ptr, kw_ptr, cos_sin_ptr, pos_ptr, q_ptr, k_ptr, v_ptr,
                         slot_ptr, stride_t, eps, HQ: tl.constexpr, HKV: tl.constexpr,
                         HEAD_DIM: tl.constexpr, HALF: tl.constexpr, BLOCK_HALF: tl.constexpr,
                         BLOCK_HEADS: tl.constexpr, STORE: tl.constexpr, USE_PDL: tl.constexpr):
    # Grid (T,): one program per token, all its heads as rows of a (BLOCK_HEADS, BLOCK_HALF)
    # tile per rotary half. Row h < HQ is a q head, then HKV k heads, then (STORE) HKV v heads;
    # in a qkv row they sit in that order, HEAD_DIM wide, so row h starts at h * HEAD_DIM.
    # STORE: k and v go straight into the paged caches k_ptr/v_ptr (N, block_size, HKV,
    # HEAD_DIM) at slot_ptr[t] (-1: skip); else k goes to k_ptr (T, HKV, HEAD_DIM).
    pdl_enter(USE_PDL)
    t = tl.program_id(0)
    h = tl.arange(0, BLOCK_HEADS)[:, None]  # (BLOCK_HEADS, 1)
    c = tl.arange(0, BLOCK_HALF)[None, :]  # (1, BLOCK_HALF)
    is_q = h < HQ
    is_k = (h >= HQ) & (h < HQ + HKV)
    is_v = (h >= HQ + HKV) & (h < HQ + HKV + HKV * STORE)  # none unless STORE
    ok = (c < HALF) & (is_q | is_k | is_v)
    src = qkv_ptr + t * stride_t + h * HEAD_DIM
    x1 = tl.load(src + c, mask=ok, other=0.0).to(tl.float32)
    x2 = tl.load(src + HALF + c, mask=ok, other=0.0).to(tl.float32)
    inv = 1.0 / tl.sqrt((tl.sum(x1 * x1, 1) + tl.sum(x2 * x2, 1)) / HEAD_DIM + eps)[:, None]
    c_ok = c < HALF
    w1 = tl.where(is_q, tl.load(qw_ptr + c, mask=c_ok, other=0.0), tl.load(kw_ptr + c, mask=c_ok, other=0.0))
    w2 = tl.where(is_q, tl.load(qw_ptr + HALF + c, mask=c_ok, other=0.0),
                  tl.load(kw_ptr + HALF + c, mask=c_ok, other=0.0))
    dt = q_ptr.dtype.element_ty
    y1 = ((x1 * inv).to(dt).to(tl.float32) * w1.to(tl.float32)).to(dt).to(tl.float32)
    y2 = ((x2 * inv).to(dt).to(tl.float32) * w2.to(tl.float32)).to(dt).to(tl.float32)
    pos = tl.load(pos_ptr + t).to(tl.int64)
    cos = tl.load(cos_sin_ptr + pos * HEAD_DIM + c, mask=c_ok, other=0.0)
    sin = tl.load(cos_sin_ptr + pos * HEAD_DIM + HALF + c, mask=c_ok, other=0.0)
    o1 = (y1 * cos - y2 * sin).to(dt)
    o2 = (y2 * cos + y1 * sin).to(dt)
    q_dst = q_ptr + (t * HQ + tl.minimum(h, HQ - 1)) * HEAD_DIM
    tl.store(q_dst + c, o1, mask=ok & is_q)
    tl.store(q_dst + HALF + c, o2, mask=ok & is_q)
    kh = tl.minimum(tl.maximum(h - HQ, 0), HKV - 1)
    if STORE:
        slot = tl.load(slot_ptr + t).to(tl.int64)
        row = tl.maximum(slot, 0) * HKV * HEAD_DIM
        k_dst = k_ptr + row + kh * HEAD_DIM
        k_ok = ok & is_k & (slot >= 0)
        v_dst = v_ptr + row + tl.minimum(tl.maximum(h - HQ - HKV, 0), HKV - 1) * HEAD_DIM
        v_ok = ok & is_v & (slot >= 0)
        tl.store(v_dst + c, x1.to(dt), mask=v_ok)
        tl.store(v_dst + HALF + c, x2.to(dt), mask=v_ok)
    else:
        k_dst = k_ptr + (t * HKV + kh) * HEAD_DIM
        k_ok = ok & is_k
    tl.store(k_dst + c, o1, mask=k_ok)
    tl.store(k_dst + HALF + c, o2, mask=k_ok)


def qk_norm_rope(qkv: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor,
                 cos_sin_cache: torch.Tensor, positions: torch.Tensor, num_q_heads: int,
                 num_kv_heads: int, head_dim: int, eps: float, kv_cache=None, slot_mapping=None,
                 opts: KernelOptions = KERNELS):
    """qkv (T, (Hq + 2 Hkv) * D), q/k_weight (D,), cos_sin_cache (P, D) fp32 [cos | sin],
    positions (T,) -> q (T, Hq, D), k (T, Hkv, D) contiguous, normalised and rotated.

    With kv_cache = (k_cache, v_cache), each (N, block_size, Hkv, D) contiguous, and
    slot_mapping (T,) (flat slots, -1 = skip): k and v are written straight into the caches
    (store_kv fused in) and only q is returned."""
    T = qkv.shape[0]
    assert qkv.stride(1) == 1 and head_dim % 2 == 0 and cos_sin_cache.is_contiguous()
    q = torch.empty(T, num_q_heads, head_dim, dtype=qkv.dtype, device=qkv.device)
    store = kv_cache is not None
    if store:
        k_out, v_out = kv_cache
        assert k_out.is_contiguous() and v_out.is_contiguous()
        assert k_out.shape[2:] == (num_kv_heads, head_dim) and slot_mapping.shape == (T,)
    else:
        k_out = torch.empty(T, num_kv_heads, head_dim, dtype=qkv.dtype, device=qkv.device)
        v_out, slot_mapping = k_out, positions  # unused
    if T:
        half = head_dim // 2
        heads = triton.next_power_of_2(num_q_heads + num_kv_heads * (2 if store else 1))
        block_half = triton.next_power_of_2(half)
        _qk_norm_rope_kernel[(T,)](
            qkv, q_weight, k_weight, cos_sin_cache, positions, q, k_out, v_out, slot_mapping,
            qkv.stride(0), eps, HQ=num_q_heads, HKV=num_kv_heads, HEAD_DIM=head_dim, HALF=half,
            BLOCK_HALF=block_half, BLOCK_HEADS=heads, STORE=store,
            num_warps=4 if heads * block_half <= 2048 else 8, **pdl_launch(qkv.device, opts.pdl))
    return q if store else (q, k_out)
