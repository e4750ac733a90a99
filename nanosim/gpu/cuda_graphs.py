"""CUDA graphs: decode steps by padded batch size, and steps of any composition by token bucket.

Each graph runs the model forward (not the LM head or sampler) on the fixed-layout input
views of one of InputPacker's graph staging buffers and writes hidden states into a static
output. Replay = pack into that buffer, one H2D copy, ``graph.replay()``.

* DecodeGraphs: one graph per batch size (1, 2, 4, 8, 16, then steps of 16); the decode
  attention kernel shares each KV head's reads across its q heads.
* MixedGraphs: one graph per token bucket (16, 24, 32, 48, ..., MIXED_MAX_TOKENS); prefill chunks,
  cached prefixes and decodes in any mix, padded to the bucket. Attention is the varlen
  kernel in tile-map mode, whose grid depends only on the bucket. Without them every step
  with a prefill runs eagerly: ~400 kernel launches from Python, 16-25 ms of host time for
  Qwen3-0.6B on our H100 whatever the step's size, with a tail to 100 ms.
"""
from __future__ import annotations

import bisect
from collections.abc import Callable

import torch

from nanosim.gpu.inputs import InputPacker, SeqWork, StepInputs

# Larger steps run eagerly (GPU-bound there). Eager steps cost 12-24 ms of launches on our
# H100 hosts whatever their size (benchmarks/mixed_step.py), so graphs pay up to here even
# padded: 1.5x buckets keep the padding under a third (a 2,048-token chunk + 64 decodes took
# 17.6 / 16.8 ms in the 4,096 bucket and 13.8 / 14.9 ms eagerly on two machines; with
# graphs only up to 2,048 tokens, replays' 2,200-2,900-token prefills ran eagerly in 14-44 ms)
MIXED_MAX_TOKENS = 8192


def graph_batch_sizes(max_num_seqs: int) -> list[int]:
    """1, 2, 4, 8, 16, 32, ... (steps of 16), and max_num_seqs itself."""
    sizes = [b for b in (1, 2, 4, 8) if b <= max_num_seqs] + list(range(16, max_num_seqs + 1, 16))
    return sorted(set(sizes) | {max_num_seqs})


def mixed_token_buckets(max_tokens: int, max_seqs: int) -> list[int]:
    """Powers of two and 1.5x powers of two from 16 up to min(max_tokens, MIXED_MAX_TOKENS),
    and that bound itself (padding wastes at most a third). A bucket holds any number of
    sequences (up to max_seqs) whose tokens add up to it."""
    top = min(max_tokens, MIXED_MAX_TOKENS)
    sizes = [n for k in range(4, 30) for n in (1 << k, 3 << (k - 1)) if n <= top]
    return sorted(set(sizes) | {top})


class _Graphs:
    """Graphs keyed by a size, sharing one memory pool, writing into one static output."""

    def __init__(self, model, kv_caches, sizes: list[int], pack: Callable[[int], StepInputs],
                 hidden_size: int, dtype: torch.dtype, device: torch.device) -> None:
        self.sizes = sorted(sizes)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.hidden = torch.zeros(self.sizes[-1], hidden_size, dtype=dtype, device=device)
        pool = None
        for n in reversed(self.sizes):  # largest first: later graphs reuse its pool memory
            inp = pack(n)
            inp.upload()
            meta = inp.meta
            self.hidden[:n] = model(inp.input_ids, inp.positions, meta, kv_caches)  # warm up / JIT
            torch.cuda.synchronize(device)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self.hidden[:n] = model(inp.input_ids, inp.positions, meta, kv_caches)
            pool = pool or graph.pool()
            self.graphs[n] = graph
        torch.cuda.synchronize(device)

    def size_for(self, n: int) -> int | None:
        """Smallest captured size >= n, or None (run eagerly)."""
        i = bisect.bisect_left(self.sizes, n)
        return self.sizes[i] if i < len(self.sizes) else None

    def replay(self, n: int) -> torch.Tensor:
        """Inputs must already be packed for size n and uploaded -> hidden (n, H)."""
        self.graphs[n].replay()
        return self.hidden[:n]


class DecodeGraphs(_Graphs):
    def __init__(self, model, kv_caches, packer: InputPacker, sizes: list[int], hidden_size: int,
                 dtype: torch.dtype, max_model_len: int, num_blocks: int) -> None:
        def pack(bs: int) -> StepInputs:
            inp = packer.pack([SeqWork([0], 0, [0], samples=False)], num_blocks, graph_bs=bs)
            meta = inp.meta  # as captured: bs decodes of any length up to max_model_len
            meta.max_seq_len, meta.query_lens_host, meta.seq_lens_host = max_model_len, None, None
            return inp

        super().__init__(model, kv_caches, sizes, pack, hidden_size, dtype, packer.graph.dev.device)

    def batch_size_for(self, num_seqs: int) -> int | None:
        return self.size_for(num_seqs)


class MixedGraphs(_Graphs):
    def __init__(self, model, kv_caches, packer: InputPacker, sizes: list[int], hidden_size: int,
                 dtype: torch.dtype, num_blocks: int) -> None:
        def pack(tokens: int) -> StepInputs:
            return packer.pack([SeqWork([0], 0, [0], samples=False)], num_blocks, mixed_tokens=tokens)

        super().__init__(model, kv_caches, sizes, pack, hidden_size, dtype, packer.mixed.dev.device)
