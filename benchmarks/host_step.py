"""Host-side cost of an engine decode step, without a GPU: the scheduler, GpuBackend and the
input packer around a runner that packs the inputs and samples nothing (tokens are a
constant), so what is timed is everything the host does per step except the forward.

Prints, per batch size, microseconds per step of the whole Engine.step with the steady-decode
fast path (runner.step_next: inputs edited in place) and without it (every step packs anew),
and of InputPacker.pack against pack_next alone. Decode-only batches of Qwen3-0.6B shapes,
block 256, context ~500, temperature 0.6 (the uniforms are hashed on the host).

    python benchmarks/host_step.py [--batch 1 64 256] [--steps 300]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nanosim.config import EngineConfig, get_model
from nanosim.core.engine import Engine
from nanosim.core.request import Request
from nanosim.gpu.backend import GpuBackend, SamplingParams
from nanosim.gpu.inputs import InputPacker, SeqWork
from nanosim.gpu.runner import StepOutput

BLOCK, GRAPH_MAX, WIDTH, BLOCKS = 256, 512, 16, 8000


def graph_size(n: int) -> int:
    return next(b for b in [1, 2, 4, 8] + list(range(16, GRAPH_MAX + 1, 16)) if b >= n)


class PackingRunner:
    """ModelRunner's host side: decode-only steps go to the graph layout and arm step_next."""

    def __init__(self) -> None:
        self.spec, self.block_size, self.num_kv_blocks = get_model("qwen3-0.6b"), BLOCK, BLOCKS
        self.packer = InputPacker(torch.device("cpu"), BLOCK, 16384, GRAPH_MAX, WIDTH, GRAPH_MAX)
        self.can_step_next = False

    def step(self, works):
        decode = all(len(w.token_ids) == 1 for w in works)
        gbs = graph_size(len(works)) if decode else None
        inp = self.packer.pack(works, BLOCKS, gbs)
        self.can_step_next = decode
        self._tables, self._tokens = [w.block_table for w in works], np.full(len(works), 5)
        return StepOutput([5] * inp.num_samples, 0.0, 0.0)

    def step_next(self, keep):
        tokens = self._tokens if keep is None else self._tokens[keep]
        if keep is not None:
            self._tables = [self._tables[i] for i in keep]
        self.packer.pack_next(self._tables, keep, tokens, BLOCKS, graph_size(len(tokens)))
        self._tokens = tokens
        return StepOutput(tokens.tolist(), 0.0, 0.0)


def engine_step_us(batch: int, steps: int, fast: bool) -> float:
    cfg = EngineConfig(block_size_tokens=BLOCK, max_num_seqs=GRAPH_MAX, max_num_batched_tokens=16384,
                       max_model_len=4096)
    backend = GpuBackend(PackingRunner(), fast_decode=fast)
    eng = Engine(cfg, backend, BLOCKS)
    for i in range(batch):
        sp = SamplingParams(temperature=0.6, ignore_eos=True, max_tokens=steps + 10)
        eng.add_request(Request(i, 0.0, 500, steps + 10), steps + 10, sp)
    eng.step(0.0)  # the prefill
    eng.step(0.0)
    t0 = time.perf_counter()
    for _ in range(steps):
        eng.step(0.0)
    return (time.perf_counter() - t0) / steps * 1e6


def pack_us(batch: int, steps: int) -> tuple[float, float]:
    p = InputPacker(torch.device("cpu"), BLOCK, 16384, GRAPH_MAX, WIDTH, GRAPH_MAX)
    works = [SeqWork([5], 500, list(range(3 * i, 3 * i + 3)), True, 0.6, seed=i) for i in range(batch)]
    gbs, tables, toks = graph_size(batch), [w.block_table for w in works], np.full(batch, 5)
    t0 = time.perf_counter()
    for _ in range(steps):
        p.pack(works, BLOCKS, gbs)
    full = (time.perf_counter() - t0) / steps * 1e6
    p.pack(works, BLOCKS, gbs)
    t0 = time.perf_counter()
    for _ in range(min(steps, 200)):  # (stays inside the three blocks of each table)
        p.pack_next(tables, None, toks, BLOCKS, gbs)
    return full, (time.perf_counter() - t0) / min(steps, 200) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 64, 256])
    ap.add_argument("--steps", type=int, default=300)
    a = ap.parse_args()
    print("batch   engine step, fast path   without it   pack   pack_next   (us, host only)")
    for b in a.batch:
        fast, slow = engine_step_us(b, a.steps, True), engine_step_us(b, a.steps, False)
        full, nxt = pack_us(b, a.steps)
        print(f"{b:5d}   {fast:22.0f}   {slow:10.0f}   {full:4.0f}   {nxt:9.0f}", flush=True)


if __name__ == "__main__":
    main()
