"""Rotary position embedding, neox style (the rotate-half layout Qwen3 uses)."""
from __future__ import annotations

import torch
from torch import nn

from nanosim.gpu.compiled import maybe_compiled


def rope_cos_sin_cache(head_dim: int, max_positions: int, theta: float) -> torch.Tensor:
    """(max_positions, head_dim) fp32: [cos(p * f_i) | sin(p * f_i)] for i < head_dim/2.

    Frequencies f_i = theta^(-2i/head_dim), computed as Hugging Face does (fp32).
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    t = torch.arange(max_positions, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)  # (P, D/2)
    return torch.cat([freqs.cos(), freqs.sin()], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (T, H, D) any dtype; cos/sin (T, D/2) fp32. Rotates pairs (i, i + D/2) in fp32."""
    x1, x2 = x.float().chunk(2, dim=-1)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # broadcast over heads
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


class RotaryEmbedding(nn.Module):
    """Holds the cos/sin cache as a (non-persistent) buffer; positions are given per token."""

    def __init__(self, head_dim: int, max_positions: int, theta: float) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.register_buffer("cos_sin_cache", rope_cos_sin_cache(head_dim, max_positions, theta),
                             persistent=False)
        self.compiled: str | None = None  # torch.compile backend (layers.compile_elementwise)

    def forward(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor):
        """positions (T,) int; q (T, Hq, D), k (T, Hkv, D) -> rotated (q, k), same dtypes."""
        return maybe_compiled(rope_ref, self.compiled)(self.cos_sin_cache, positions, q, k)


def rope_ref(cos_sin_cache: torch.Tensor, positions: torch.Tensor, q: torch.Tensor,
             k: torch.Tensor):
    cos, sin = cos_sin_cache[positions].chunk(2, dim=-1)  # (T, D/2) each
    return apply_rope(q, cos, sin), apply_rope(k, cos, sin)
