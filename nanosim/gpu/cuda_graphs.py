"""CUDA graphs for decode steps: one graph per padded batch size, sharing a memory pool.

Each graph runs the model forward (not the LM head or sampler) on the fixed-layout input
views of InputPacker's graph staging buffer and writes hidden states into a static output.
Replay = pack into that buffer, one H2D copy, ``graph.replay()``.
"""
from __future__ import annotations

import bisect

import torch

from nanosim.gpu.inputs import InputPacker, SeqWork


def graph_batch_sizes(max_num_seqs: int) -> list[int]:
    """1, 2, 4, 8, 16, 32, ... (steps of 16), and max_num_seqs itself."""
    sizes = [b for b in (1, 2, 4, 8) if b <= max_num_seqs] + list(range(16, max_num_seqs + 1, 16))
    return sorted(set(sizes) | {max_num_seqs})


class DecodeGraphs:
    def __init__(self, model, kv_caches, packer: InputPacker, sizes: list[int], hidden_size: int,
                 dtype: torch.dtype, max_model_len: int, num_blocks: int) -> None:
        self.sizes = sorted(sizes)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        device = packer.graph.dev.device
        self.hidden = torch.zeros(self.sizes[-1], hidden_size, dtype=dtype, device=device)
        pool = None
        for bs in reversed(self.sizes):  # largest first: later graphs reuse its pool memory
            inp = packer.pack([SeqWork([0], 0, [0], samples=False)], num_blocks, graph_bs=bs)
            inp.upload()
            meta = inp.meta
            meta.max_seq_len, meta.query_lens_host, meta.seq_lens_host = max_model_len, None, None
            self.hidden[:bs] = model(inp.input_ids, inp.positions, meta, kv_caches)  # warm up / JIT
            torch.cuda.synchronize(device)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self.hidden[:bs] = model(inp.input_ids, inp.positions, meta, kv_caches)
            pool = pool or graph.pool()
            self.graphs[bs] = graph
        torch.cuda.synchronize(device)

    def batch_size_for(self, num_seqs: int) -> int | None:
        """Smallest captured batch size >= num_seqs, or None (run eagerly)."""
        i = bisect.bisect_left(self.sizes, num_seqs)
        return self.sizes[i] if i < len(self.sizes) else None

    def replay(self, bs: int) -> torch.Tensor:
        """Inputs must already be packed (graph_bs=bs) and uploaded -> hidden (bs, H)."""
        self.graphs[bs].replay()
        return self.hidden[:bs]
