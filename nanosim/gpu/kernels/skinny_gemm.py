"""Skinny GEMMs for small decode batches: y = x @ W^T with x (M, K), M <= SKINNY_MAX_M.

At M = 1..16 a decode step is pure weight streaming, and cuBLAS at these sizes reads the
weights at about half the H100's bandwidth (README, profile_decode.py). These kernels split
the output features over BLOCK_N-row tiles and, where that gives too few programs to fill
the GPU, the reduction over K into SPLIT_K slices:

    skinny_linear(x, w)                 -> (M, N) in x's dtype
    skinny_linear(x, w, partials=True)  -> (S, M, N) fp32 partial sums over K slices; the
                                           consumer adds them (fused_ops.rms_norm does, so a
                                           split-K o_proj/down_proj costs no reduction kernel)
    skinny_gate_up_silu(x, w)           -> (M, I) silu(x @ Wg^T) * (x @ Wu^T), W = [Wg; Wu]
                                           (2I, K): the SwiGLU activation in the epilogue

Rounding follows the unfused path: products accumulate in fp32 and are rounded to the
activation dtype where F.linear would round them (partials: by the consumer, after the sum).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from nanosim.gpu.kernels.decode_attention import dot_precision
from nanosim.gpu.kernels.pdl import pdl_enter, pdl_launch
from nanosim.gpu.options import KERNELS, KernelOptions

SKINNY_MAX_M = 16  # larger batches go to cuBLAS (F.linear)


@dataclass(frozen=True)
class SkinnyConfig:
    block_n: int = 32  # output features per program
    block_k: int = 128  # reduction tile
    split_k: int = 1  # K slices (programs along grid dim 1)
    num_warps: int = 4
    num_stages: int = 5


def default_config(N: int, K: int, sms: int, can_split: bool,
                   programs_per_sm: int = KERNELS.skinny_programs_per_sm) -> SkinnyConfig:
    """About one program per SM (H100 sweep, benchmarks/kernel_sweep.py: qkv and o_proj of
    Qwen3-0.6B at M = 1 were fastest with ~128 programs, 128-wide K tiles, 5 stages): 32-row
    tiles, and (can_split: the caller takes partials) K split while that stays within one
    program per SM (programs_per_sm: KernelOptions.skinny_programs_per_sm) and each slice
    keeps >= 256 of K."""
    split = 1
    while (can_split and triton.cdiv(N, 32) * split * 2 <= sms * programs_per_sm
           and K // (split * 2) >= 256):
        split *= 2
    return SkinnyConfig(split_k=split)


@triton.jit
def _skinny_kernel(x_ptr, w_ptr, out_ptr, M, N, K, stride_xm, stride_wn, stride_os, stride_om,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                   SPLIT_K: tl.constexpr, GATE_UP: tl.constexpr, DOT_PRECISION: tl.constexpr,
                   USE_PDL: tl.constexpr):
    # Grid (cdiv(N, BLOCK_N), SPLIT_K[, cdiv(M, BLOCK_M)]: splitk_gemm's row tiles; here 1).
    # GATE_UP: N is I, gate rows n and up rows I + n.
    pdl_enter(USE_PDL)
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    m = tl.program_id(2) * BLOCK_M + tl.arange(0, BLOCK_M)
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok = m < M
    n_ok = n < N
    k_per = tl.cdiv(tl.cdiv(K, SPLIT_K), BLOCK_K) * BLOCK_K
    lo = pid_k * k_per
    hi = tl.minimum(lo + k_per, K)
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    acc_up = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k0 in range(lo, hi, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        k_ok = kk < hi
        x = tl.load(x_ptr + m[:, None] * stride_xm + kk[None, :], mask=m_ok[:, None] & k_ok[None, :],
                    other=0.0)  # (BLOCK_M, BLOCK_K)
        w_off = n[:, None] * stride_wn + kk[None, :]
        w_ok = n_ok[:, None] & k_ok[None, :]
        w = tl.load(w_ptr + w_off, mask=w_ok, other=0.0)  # (BLOCK_N, BLOCK_K)
        acc += tl.dot(x, tl.trans(w), input_precision=DOT_PRECISION)
        if GATE_UP:
            wu = tl.load(w_ptr + N * stride_wn + w_off, mask=w_ok, other=0.0)
            acc_up += tl.dot(x, tl.trans(wu), input_precision=DOT_PRECISION)
    mn_ok = m_ok[:, None] & n_ok[None, :]
    if SPLIT_K > 1:  # fp32 partial sums (S, M, N); the consumer adds and rounds them
        tl.store(out_ptr + pid_k * stride_os + m[:, None] * stride_om + n[None, :], acc, mask=mn_ok)
    else:
        dt = out_ptr.dtype.element_ty
        y = acc.to(dt)
        if GATE_UP:  # as silu_and_mul on the rounded F.linear output
            g = y.to(tl.float32)
            a = (g / (1.0 + tl.exp(-g))).to(dt).to(tl.float32)
            y = (a * acc_up.to(dt).to(tl.float32)).to(dt)
        tl.store(out_ptr + m[:, None] * stride_om + n[None, :], y, mask=mn_ok)


def _launch(x: torch.Tensor, w: torch.Tensor, N: int, gate_up: bool, partials: bool,
            config: SkinnyConfig | None, opts: KernelOptions) -> torch.Tensor:
    M, K = x.shape
    assert x.stride(1) == 1 and w.stride(1) == 1 and w.shape[1] == K
    if not 1 <= M <= SKINNY_MAX_M:
        raise ValueError(f"skinny GEMM takes 1..{SKINNY_MAX_M} rows, got {M}")
    if config is None:
        sms = torch.cuda.get_device_properties(x.device).multi_processor_count if x.is_cuda else 8
        config = default_config(N, K, sms, partials and not gate_up, opts.skinny_programs_per_sm)
    split = config.split_k
    if split > 1 and (gate_up or not partials):
        raise ValueError("split_k > 1 needs partials=True (and no gate_up epilogue)")
    if partials:
        out = torch.empty(split, M, N, dtype=torch.float32, device=x.device)
    else:
        out = torch.empty(M, N, dtype=x.dtype, device=x.device)
    _skinny_kernel[(triton.cdiv(N, config.block_n), split)](
        x, w, out, M, N, K, x.stride(0), w.stride(0), out.stride(0) if partials else 0,
        out.stride(-2), BLOCK_M=16, BLOCK_N=config.block_n, BLOCK_K=config.block_k,
        SPLIT_K=split, GATE_UP=gate_up, DOT_PRECISION=dot_precision(x.dtype),
        num_warps=config.num_warps, num_stages=config.num_stages, **pdl_launch(x.device, opts.pdl))
    return out


def skinny_linear(x: torch.Tensor, w: torch.Tensor, partials: bool = False,
                  config: SkinnyConfig | None = None, opts: KernelOptions = KERNELS) -> torch.Tensor:
    """x (M, K), w (N, K) -> (M, N) in x's dtype, or with partials=True (S, M, N) fp32 whose
    sum over dim 0 is x @ w^T (S = config.split_k; the default config picks it)."""
    return _launch(x, w, w.shape[0], False, partials, config, opts)


def skinny_gate_up_silu(x: torch.Tensor, w: torch.Tensor, config: SkinnyConfig | None = None,
                        opts: KernelOptions = KERNELS) -> torch.Tensor:
    """x (M, K), w (2I, K) = [gate; up] -> (M, I) silu(gate) * up in x's dtype."""
    assert w.shape[0] % 2 == 0
    return _launch(x, w, w.shape[0] // 2, True, False, config, opts)
