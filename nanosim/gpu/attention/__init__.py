"""Attention backends, chosen once at start by name.

Every backend has ``forward(q, k, v, k_cache, v_cache, meta, scale) -> out`` that stores the
new K/V into the paged cache (k = v = None: the model's fused kernel already did) and
attends over each sequence's whole context, plus
``supports_cuda_graphs``. Modules are imported lazily so the torch path never loads triton.
"""
from __future__ import annotations

import os

import torch

BACKENDS = ("auto", "torch", "triton", "flash")


class BackendUnavailable(RuntimeError):
    """The requested attention backend cannot run here (message says why)."""


def select_backend(name: str, device: torch.device | str, block_size: int, kernels=None):
    """'auto' -> triton on CUDA, torch on CPU. 'flash' raises if flash_attn does not import.
    kernels: the runner's KernelOptions for our Triton kernels (None: the defaults)."""
    from nanosim.gpu.options import KERNELS

    kernels = KERNELS if kernels is None else kernels
    device = torch.device(device)
    if name not in BACKENDS:
        raise BackendUnavailable(f"attention={name!r} is not one of {BACKENDS}")
    if name == "auto":
        name = "triton" if device.type == "cuda" else "torch"
    if name == "torch":
        from nanosim.gpu.attention.torch_ref import TorchAttention

        return TorchAttention()
    if name == "flash":
        if device.type != "cuda":
            raise BackendUnavailable("attention='flash' needs a CUDA device")
        from nanosim.gpu.attention.flash_backend import FlashAttention

        try:
            return FlashAttention(block_size, kernels)
        except ImportError as e:
            raise BackendUnavailable(
                "attention='flash' requested but neither flash_attn.cute (FlashAttention-4) nor "
                f"flash_attn (2.x) imports ({e}); see GPU_WHEELS.md or use attention='triton'") from e
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise BackendUnavailable("attention='triton' on CPU needs TRITON_INTERPRET=1 (set before "
                                 "triton is imported); use attention='torch' instead")
    from nanosim.gpu.attention.triton_backend import TritonAttention

    return TritonAttention(kernels=kernels)
