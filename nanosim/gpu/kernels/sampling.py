"""Sampling without a sort or a cumulative sum: the Gumbel-max trick, one pass over logits.

For a row with temperature T > 0, argmax_i(logit_i / T + g_i) with g_i = -log(-log(u_i)) and
u_i i.i.d. uniform is an exact draw from softmax(logits / T). The u_i come from a hash of
(the row's key, i), where the key is the row's one host-made uniform (a multiple of 2^-24,
see nanosim/gpu/sampler.py), so a draw stays a pure function of (logits, T, u) on any
device. Rows with T = 0 take the plain argmax.

    gumbel_argmax(logits (S, V), temperature (S,), u (S,)) -> token ids (S,) int64

The Triton kernel (CUDA) reads the logits once: grid (S, cdiv(V, BLOCK_V)), each program
keeps its chunk's best score and index; a second one-program-per-row kernel picks the best
chunk (the first of equal ones, as torch.argmax) and writes the id, and with ``feed`` also
an int32 copy of it (the next decode step's input id: no separate copy kernel).
The reference (CPU) path, with the same integer hash and fp32 math, is
nanosim.gpu.sampler.gumbel_argmax_torch (no triton import there).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

# hash constants (the same as nanosim.gpu.sampler's): mix 0x45D9F3B, row salt 0x5BD1E995,
# 0x9E3779B1 = 2^32 / golden ratio to spread consecutive vocabulary ids


@triton.jit
def _mix32(x):
    # 32-bit xor-shift-multiply hash on uint32 lanes: products wrap mod 2^32, the same bits
    # as the reference's int64 math masked to 32 bits (GPUs emulate int64 multiplies)
    mix = tl.full((), 0x45D9F3B, tl.uint32)
    x = (x ^ (x >> 16)) * mix
    x = (x ^ (x >> 16)) * mix
    return x ^ (x >> 16)


@triton.jit
def _gumbel_kernel(logits_ptr, temp_ptr, u_ptr, best_val_ptr, best_idx_ptr, stride_l, V,
                   num_chunks, BLOCK_V: tl.constexpr):
    row = tl.program_id(0)
    chunk = tl.program_id(1)
    i = chunk * BLOCK_V + tl.arange(0, BLOCK_V)
    ok = i < V
    x = tl.load(logits_ptr + row * stride_l + i, mask=ok, other=float("-inf")).to(tl.float32)
    t = tl.load(temp_ptr + row)
    key = (tl.load(u_ptr + row) * 16777216.0).to(tl.uint32)  # u * 2^24: an exact integer
    r = _mix32(key ^ tl.full((), 0x5BD1E995, tl.uint32))
    h = _mix32(r + i.to(tl.uint32) * tl.full((), 0x9E3779B1, tl.uint32))
    u = ((h >> 8).to(tl.float32) + 0.5) * 5.9604644775390625e-08  # (0, 1), step 2^-24
    g = -tl.log(-tl.log(u))
    inv_t = 1.0 / tl.where(t > 0, t, 1.0)
    score = tl.where(t > 0, x * inv_t + g, x)
    score = tl.where(ok, score, float("-inf"))
    best = tl.max(score, 0)
    arg = tl.argmax(score, 0)
    tl.store(best_val_ptr + row * num_chunks + chunk, best)
    tl.store(best_idx_ptr + row * num_chunks + chunk, chunk * BLOCK_V + arg)


@triton.jit
def _finish_kernel(best_val_ptr, best_idx_ptr, out_ptr, feed_ptr, num_chunks,
                   BLOCK_C: tl.constexpr, FEED: tl.constexpr):
    row = tl.program_id(0)
    c = tl.arange(0, BLOCK_C)
    ok = c < num_chunks
    val = tl.load(best_val_ptr + row * num_chunks + c, mask=ok, other=float("-inf"))
    best = tl.argmax(val, 0, tie_break_left=True)
    idx = tl.load(best_idx_ptr + row * num_chunks + best)
    tl.store(out_ptr + row, idx)
    if FEED:
        tl.store(feed_ptr + row, idx.to(tl.int32))


def gumbel_argmax(logits: torch.Tensor, temperature: torch.Tensor, u: torch.Tensor,
                  block_v: int = 4096, feed: torch.Tensor | None = None) -> torch.Tensor:
    """logits (S, V) any float dtype, unit last stride; temperature, u (S,) f32 -> (S,) int64.
    feed: an int32 tensor of >= S elements that also receives the ids."""
    S, V = logits.shape
    assert logits.stride(1) == 1
    chunks = triton.cdiv(V, block_v)
    best_val = torch.empty(S, chunks, dtype=torch.float32, device=logits.device)
    best_idx = torch.empty(S, chunks, dtype=torch.int64, device=logits.device)
    out = torch.empty(S, dtype=torch.int64, device=logits.device)
    if S:
        _gumbel_kernel[(S, chunks)](logits, temperature, u, best_val, best_idx, logits.stride(0), V,
                                    chunks, BLOCK_V=block_v)
        _finish_kernel[(S,)](best_val, best_idx, out, out if feed is None else feed, chunks,
                             BLOCK_C=triton.next_power_of_2(chunks), FEED=feed is not None)
    return out
