"""Elementwise building blocks of a Qwen3 layer: RMSNorm and the SwiGLU activation.

Each has a plain torch path (the reference: it matches Hugging Face's Qwen3 in fp32) and an
optional fused Triton path (``fused=`` the runner's KernelOptions, CUDA only) used to cut
kernel launches at decode.
``compile_elementwise(model)`` instead runs the torch paths of the norms, the activation and
the rotary embedding under torch.compile (the runner's ``compile_ops``; an A/B against the
fused kernels, benchmarks/compile_ab.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nanosim.gpu.compiled import maybe_compiled
from nanosim.gpu.options import KERNELS, KernelOptions

def rms_norm_ref(x: torch.Tensor, weight: torch.Tensor, eps: float,
                 residual: torch.Tensor | None = None):
    """The torch RMSNorm (see RMSNorm): normed, or (normed, x + residual) with a residual."""
    if residual is not None:
        x = x + residual
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    y = weight * xf.to(x.dtype)
    return y if residual is None else (y, x)


def silu_and_mul_ref(x: torch.Tensor) -> torch.Tensor:
    gate, up = x.chunk(2, dim=-1)
    return F.silu(gate) * up


def compile_elementwise(model: nn.Module, backend: str = KERNELS.compile_backend) -> None:
    """Run every RMSNorm, SiluAndMul and RotaryEmbedding of model on its torch path under
    torch.compile with ``backend`` (they must not be fused: the Triton kernels would bypass it)."""
    from nanosim.gpu.rotary import RotaryEmbedding

    for m in model.modules():
        if isinstance(m, (RMSNorm, SiluAndMul)) and m.fused is not None:
            raise ValueError("compile_elementwise needs the torch paths (fused_ops=False)")
        if isinstance(m, (RMSNorm, SiluAndMul, RotaryEmbedding)):
            m.compiled = backend


class RMSNorm(nn.Module):
    """y = weight * x / sqrt(mean(x^2) + eps), computed in fp32, over the last dim.

    ``forward(x, residual)`` first adds the residual (in x's dtype, like HF) and returns
    ``(normed, new_residual)``; without a residual it returns ``normed`` only.
    """

    def __init__(self, dim: int, eps: float = 1e-6, fused: KernelOptions | None = None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.fused = fused
        self.compiled: str | None = None  # torch.compile backend of the torch path (compile_elementwise)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        if self.fused is not None:
            from nanosim.gpu.kernels.fused_ops import rms_norm

            return rms_norm(x, self.weight, self.eps, residual, self.fused)
        return maybe_compiled(rms_norm_ref, self.compiled)(x, self.weight, self.eps, residual)


class SiluAndMul(nn.Module):
    """(T, 2*I) [gate | up] -> (T, I) silu(gate) * up."""

    def __init__(self, fused: KernelOptions | None = None) -> None:
        super().__init__()
        self.fused = fused
        self.compiled: str | None = None  # torch.compile backend of the torch path (compile_elementwise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            from nanosim.gpu.kernels.fused_ops import silu_and_mul

            return silu_and_mul(x, opts=self.fused)
        return maybe_compiled(silu_and_mul_ref, self.compiled)(x)
