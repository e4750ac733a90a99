"""Split-K GEMM for 17..KernelOptions.splitk_max_m rows whose consumer adds partial sums (o_proj, down_proj).

At these batch sizes cuBLAS reads the weights at ~30% of the H100's bandwidth: o_proj and
down_proj (N = 1024 for Qwen3-0.6B) at M = 256 took 6.3 and 8.1 us for 4 and 6 MB of
weights (benchmarks/results/kernel_sweep_h100.json, mid_gemm); with N = 1024 a tiled GEMM has few
output tiles, each walking all of K. Here the K reduction is split into S slices so the grid
fills the GPU, and the (S, M, N) fp32 partials go to the next fused RMSNorm, which adds them
(fused_ops.rms_norm, as for the skinny GEMM's partials): no reduction kernel. The kernel is
the skinny GEMM's (skinny_gemm._skinny_kernel), launched over row tiles too.

    splitk_linear(x (M, K), w (N, K)) -> (S, M, N) fp32, sum over dim 0 = x @ w^T
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton

from nanosim.gpu.kernels.decode_attention import dot_precision
from nanosim.gpu.kernels.pdl import pdl_launch
from nanosim.gpu.kernels.skinny_gemm import _skinny_kernel
from nanosim.gpu.options import KERNELS, KernelOptions

# Which rows take it: KernelOptions.splitk_max_m (the model reads it at each forward, so at
# capture for CUDA graphs).


@dataclass(frozen=True)
class SplitKConfig:
    block_m: int = 64
    block_n: int = 64
    block_k: int = 128
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 4


def default_config(M: int, N: int, K: int, sms: int) -> SplitKConfig:
    """64 x 64 tiles (the best config of the H100 mid-GEMM sweep at N = 1024), and K split in
    powers of two while the grid stays within two programs per SM and each slice keeps
    >= 256 of K."""
    tiles = triton.cdiv(M, 64) * triton.cdiv(N, 64)
    split = 1
    while tiles * split * 2 <= 2 * sms and K // (split * 2) >= 256:
        split *= 2
    return SplitKConfig(split_k=split)


def splitk_linear(x: torch.Tensor, w: torch.Tensor, config: SplitKConfig | None = None,
                  opts: KernelOptions = KERNELS) -> torch.Tensor:
    """x (M, K), w (N, K), unit last strides -> (S, M, N) fp32 partial sums over K slices
    (S = config.split_k; the default config picks it)."""
    M, K = x.shape
    N = w.shape[0]
    assert x.stride(1) == 1 and w.stride(1) == 1 and w.shape[1] == K
    if config is None:
        sms = torch.cuda.get_device_properties(x.device).multi_processor_count if x.is_cuda else 8
        config = default_config(M, N, K, sms)
    S = config.split_k
    out = torch.empty(S, M, N, dtype=torch.float32, device=x.device)
    if M:  # the skinny GEMM's kernel over row tiles too; SPLIT_K = 1 stores fp32 as is
        _skinny_kernel[(triton.cdiv(N, config.block_n), S, triton.cdiv(M, config.block_m))](
            x, w, out, M, N, K, x.stride(0), w.stride(0), out.stride(0), out.stride(1),
            BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k, SPLIT_K=S,
            GATE_UP=False, DOT_PRECISION=dot_precision(x.dtype), num_warps=config.num_warps,
            num_stages=config.num_stages, **pdl_launch(x.device, opts.pdl))
    return out
