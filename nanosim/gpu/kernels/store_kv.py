"""Write the new tokens' K and V into their paged-cache slots."""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _store_kv_kernel(k_ptr, v_ptr, k_cache_ptr, v_cache_ptr, slot_ptr,
                     stride_kt, stride_vt, ROW: tl.constexpr, BLOCK: tl.constexpr):
    # One program per token: copy its (Hkv * D) K row and V row to cache slot `slot`.
    t = tl.program_id(0)
    slot = tl.load(slot_ptr + t).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    ok = (cols < ROW) & (slot >= 0)  # slot -1 marks padding rows (CUDA-graph batches)
    k = tl.load(k_ptr + t * stride_kt + cols, mask=ok)
    v = tl.load(v_ptr + t * stride_vt + cols, mask=ok)
    tl.store(k_cache_ptr + slot * ROW + cols, k, mask=ok)
    tl.store(v_cache_ptr + slot * ROW + cols, v, mask=ok)


def store_kv(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
             slot_mapping: torch.Tensor) -> None:
    """k, v (T, Hkv, D), each token's (Hkv, D) block contiguous (rows may be strided, e.g. a
    view into the fused qkv output); caches (N, block_size, Hkv, D) contiguous; slot_mapping
    (T,) int32/int64 flat slot = block * block_size + offset, -1 = skip."""
    T, H, D = k.shape
    for x in (k, v):
        assert x.stride(2) == 1 and x.stride(1) == D, "each token's K/V row must be contiguous"
    assert k_cache.is_contiguous() and v_cache.is_contiguous()
    assert k_cache.shape[2:] == (H, D) and slot_mapping.shape == (T,)
    if T == 0:
        return
    _store_kv_kernel[(T,)](k, v, k_cache, v_cache, slot_mapping, k.stride(0), v.stride(0),
                           ROW=H * D, BLOCK=triton.next_power_of_2(H * D))
