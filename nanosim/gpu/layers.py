"""Elementwise building blocks of a Qwen3 layer: RMSNorm and the SwiGLU activation.

Each has a plain torch path (the reference: it matches Hugging Face's Qwen3 in fp32) and an
optional fused Triton path (``fused=True``, CUDA only) used to cut kernel launches at decode.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """y = weight * x / sqrt(mean(x^2) + eps), computed in fp32, over the last dim.

    ``forward(x, residual)`` first adds the residual (in x's dtype, like HF) and returns
    ``(normed, new_residual)``; without a residual it returns ``normed`` only.
    """

    def __init__(self, dim: int, eps: float = 1e-6, fused: bool = False) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.fused = fused

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        if self.fused:
            from nanosim.gpu.kernels.fused_ops import rms_norm

            return rms_norm(x, self.weight, self.eps, residual)
        if residual is None:
            return self._norm(x)
        x = x + residual
        return self._norm(x), x


class SiluAndMul(nn.Module):
    """(T, 2*I) [gate | up] -> (T, I) silu(gate) * up."""

    def __init__(self, fused: bool = False) -> None:
        super().__init__()
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            from nanosim.gpu.kernels.fused_ops import silu_and_mul

            return silu_and_mul(x)
        gate, up = x.chunk(2, dim=-1)
        return F.silu(gate) * up
