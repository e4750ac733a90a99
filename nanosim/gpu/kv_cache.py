"""Paged KV cache: sizing from free GPU memory (nano-vLLM's rule) and allocation."""
from __future__ import annotations

import torch

from nanosim.config import ModelSpec


class KVCacheTooSmall(RuntimeError):
    """Not even one max-length sequence fits in the memory left for the KV cache."""


def kv_block_bytes(spec: ModelSpec, block_size: int, dtype: torch.dtype, tp_size: int = 1) -> int:
    """K and V of every layer for one block: 2 * L * block_size * (Hkv/tp) * D * itemsize."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return 2 * spec.num_layers * block_size * (spec.num_kv_heads // tp_size) * spec.head_dim * itemsize


def blocks_from_memory(device: torch.device, block_bytes: int, utilization: float) -> int:
    """nano-vLLM: free = total * util - used - peak + current, blocks = free // block_bytes.

    ``used`` counts everything on the GPU (other processes, CUDA context, cached blocks);
    ``peak - current`` is the activation headroom a forward of max_num_batched_tokens took,
    measured by the warm-up run since the last reset_peak_memory_stats()."""
    free, total = torch.cuda.mem_get_info(device)
    stats = torch.cuda.memory_stats(device)
    peak, current = stats["allocated_bytes.all.peak"], stats["allocated_bytes.all.current"]
    budget = int(total * utilization - (total - free) - peak + current)
    return max(0, budget) // block_bytes


def check_fits(num_blocks: int, block_size: int, max_model_len: int, block_bytes: int,
               utilization: float) -> None:
    need = -(-max_model_len // block_size)
    if num_blocks < need:
        raise KVCacheTooSmall(
            f"KV cache has room for {num_blocks} blocks of {block_size} tokens "
            f"({block_bytes / 2**20:.2f} MiB each) but one sequence of max_model_len={max_model_len} "
            f"needs {need}; raise gpu_memory_utilization (now {utilization}), lower max_model_len "
            "or max_num_batched_tokens, or use a smaller model / more GPUs")


def allocate_kv_cache(spec: ModelSpec, num_blocks: int, block_size: int, dtype: torch.dtype,
                      device: torch.device, tp_size: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One zeroed tensor (2, L, N, block_size, Hkv/tp, D) viewed as per-layer (K, V) pairs.
    Zeros, not garbage: kernels may read (and mask) rows past a sequence's end, and
    FlashAttention-4 needs them finite."""
    kv = torch.zeros(2, spec.num_layers, num_blocks, block_size, spec.num_kv_heads // tp_size,
                     spec.head_dim, dtype=dtype, device=device)
    return [(kv[0, i], kv[1, i]) for i in range(spec.num_layers)]


class HostKVPool:
    """Pinned host copies of swapped-out KV blocks (preemption by swap), allocated on first
    use: (L, 2, num_host_blocks, block_size, Hkv/tp, D). With TP every rank swaps its own
    heads between its cache and its own pool, at the same block ids."""

    def __init__(self, kv_caches: list[tuple[torch.Tensor, torch.Tensor]], num_host_blocks: int) -> None:
        self.kv_caches, self.num_host_blocks = kv_caches, num_host_blocks
        self.host: torch.Tensor | None = None

    def swap(self, pairs: list[tuple[int, int]], to_host: bool) -> None:
        """pairs: (src, dst) block ids; device -> host when to_host, else host -> device."""
        if not pairs:
            return
        if self.host is None:
            k0 = self.kv_caches[0][0]
            self.host = torch.empty((len(self.kv_caches), 2, self.num_host_blocks, *k0.shape[1:]),
                                    dtype=k0.dtype, pin_memory=k0.is_cuda)
        src = torch.tensor([a for a, _ in pairs])
        dst = torch.tensor([b for _, b in pairs])
        for layer, (k, v) in enumerate(self.kv_caches):
            host = self.host[layer]
            if to_host:
                host[0, dst] = k[src.to(k.device)].cpu()
                host[1, dst] = v[src.to(v.device)].cpu()
            else:
                k[dst.to(k.device)] = host[0, src].to(k.device)
                v[dst.to(v.device)] = host[1, src].to(v.device)
