"""Token sampling, vectorised over the batch: greedy, temperature, top-k, top-p.

Randomness is one uniform number per sampled row, made on the host by hashing
(runner seed, sequence seed, position of the new token). The same seed therefore gives the
same tokens whatever the batch composition, chunking or device (up to the rounding of a
near-tie), and nothing on the GPU needs a per-row generator. With top-k / top-p the token is
drawn by inverse CDF over the kept, sorted probs; without them by the Gumbel-max trick with
noise hashed from u (nanosim/gpu/kernels/sampling.py): one pass over the logits.
"""
from __future__ import annotations

import numpy as np
import torch

_M32, _S8, _S16, _S32 = np.uint64(0xFFFFFFFF), np.uint64(8), np.uint64(16), np.uint64(32)
_MIX, _GOLD = np.uint64(0x45D9F3B), np.uint64(0x9E3779B1)


def _mix32(x: np.ndarray) -> np.ndarray:
    """A 32-bit integer hash (xor-shift-multiply, constants from T. Mueller), vectorised.
    In place on x (uint64, values < 2^64): products stay below 2^59 after the mask."""
    x &= _M32
    x ^= x >> _S16
    x *= _MIX
    x &= _M32
    x ^= x >> _S16
    x *= _MIX
    x &= _M32
    x ^= x >> _S16
    return x


def _mix32_int(x: int) -> int:
    """_mix32 on one Python int (the same values)."""
    x &= 0xFFFFFFFF
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def _uniform_int(seed: int, position: int, base_seed: int) -> float:
    s = seed & 0xFFFFFFFFFFFFFFFF  # as numpy's int64 -> uint64 cast
    h = _mix32_int(_mix32_int(s >> 32) ^ (base_seed & 0xFFFFFFFF))
    h = _mix32_int(h ^ (s & 0xFFFFFFFF))
    return (_mix32_int(h + position * 0x9E3779B1) >> 8) / float(1 << 24)


def uniforms(seeds: np.ndarray, positions: np.ndarray, base_seed: int = 0) -> np.ndarray:
    """(S,) uniform float32 in [0, 1), a pure function of (base_seed, seed, position)."""
    if len(seeds) <= 16:  # small decode batches: Python ints beat ~30 numpy calls
        return np.array([_uniform_int(int(a), int(b), base_seed) for a, b in zip(seeds, positions)],
                        dtype=np.float32)
    s = np.asarray(seeds, dtype=np.int64).astype(np.uint64)
    h = _mix32(s >> _S32)
    h ^= np.uint64(base_seed & 0xFFFFFFFF)
    h = _mix32(h)
    h ^= s & _M32
    h = _mix32(h)
    h += np.asarray(positions, dtype=np.int64).astype(np.uint64) * _GOLD
    h = _mix32(h)
    h >>= _S8
    return (h.astype(np.float64) / float(1 << 24)).astype(np.float32)


M32, GOLDEN, MIX, ROW_SALT = 0xFFFFFFFF, 0x9E3779B1, 0x45D9F3B, 0x5BD1E995


def _mix32_t(x: torch.Tensor) -> torch.Tensor:
    x = ((x ^ (x >> 16)) * MIX) & M32
    x = ((x ^ (x >> 16)) * MIX) & M32
    return x ^ (x >> 16)


def gumbel_argmax_torch(logits: torch.Tensor, temperature: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Reference of gumbel_argmax (same hash, fp32 math); O(S * V) memory."""
    S, V = logits.shape
    key = (u.float() * 16777216.0).long()
    r = _mix32_t(key ^ ROW_SALT).unsqueeze(1)  # (S, 1)
    i = torch.arange(V, device=logits.device, dtype=torch.int64).unsqueeze(0)
    h = _mix32_t((r + i * GOLDEN) & M32)
    un = ((h >> 8).float() + 0.5) * 2.0 ** -24
    g = -torch.log(-torch.log(un))
    t = temperature.float().unsqueeze(1)
    x = logits.float()
    score = torch.where(t > 0, x * (1.0 / torch.where(t > 0, t, 1.0)) + g, x)
    return score.argmax(1)


def sample(logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor,
           top_p: torch.Tensor, u: torch.Tensor, all_greedy: bool = False,
           needs_sort: bool = True, feed: torch.Tensor | None = None) -> torch.Tensor:
    """logits (S, V); per row: temperature (S,) f32 (0 = greedy), top_k (S,) int (<= 0 = off),
    top_p (S,) f32 in (0, 1], u (S,) f32 uniform in [0, 1) -> token ids (S,) int64.
    feed: an int32 tensor of >= S elements that also receives the ids (on CUDA without
    top-k / top-p, written by the sampling kernel itself: greedy rows are its T = 0 case)."""
    if feed is not None:
        if logits.is_cuda and not needs_sort:
            from nanosim.gpu.kernels.sampling import gumbel_argmax

            return gumbel_argmax(logits, temperature, u, feed=feed)
        ids = sample(logits, temperature, top_k, top_p, u, all_greedy, needs_sort)
        feed[:ids.numel()].copy_(ids)
        return ids
    if all_greedy:
        return logits.argmax(dim=-1)
    if not needs_sort:  # no top-k / top-p: Gumbel-max, one pass, no softmax, sort or cumsum
        if logits.is_cuda:
            from nanosim.gpu.kernels.sampling import gumbel_argmax

            return gumbel_argmax(logits, temperature, u)
        return gumbel_argmax_torch(logits, temperature, u)
    greedy = logits.argmax(dim=-1)
    V = logits.shape[-1]
    t = torch.where(temperature > 0, temperature, 1.0).unsqueeze(1)
    probs = torch.softmax(logits.float() / t, dim=-1)
    p_sorted, idx = probs.sort(dim=-1, descending=True)  # (S, V)
    rank = torch.arange(V, device=logits.device).unsqueeze(0)
    k = torch.where(top_k > 0, top_k, V).unsqueeze(1)
    mass_before = p_sorted.cumsum(-1) - p_sorted
    keep = (rank < k) & (mass_before < top_p.unsqueeze(1))  # rank 0 is always kept
    cdf = (p_sorted * keep).cumsum(-1)  # (S, V), flat after the last kept token
    target = (u * cdf[:, -1]).unsqueeze(1)
    pick = torch.searchsorted(cdf, target, right=True).clamp_(max=V - 1)  # first cdf > target
    sampled = idx.gather(1, pick).squeeze(1)
    return torch.where(temperature > 0, sampled, greedy)
