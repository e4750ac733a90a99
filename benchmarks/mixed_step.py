"""Steps with a prefill and decodes, as mixed CUDA graphs replay them (needs CUDA): runner.step
wall time (median of 30) for a few compositions, Qwen3-0.6B shapes, against the same steps
run eagerly; --tile-decodes runs the graphs with the one-token rows in the varlen kernel's
tiles (the previous path) instead of the split-KV decode kernel.

    python benchmarks/mixed_step.py [--tile-decodes]
"""
from __future__ import annotations

import argparse

import torch

# (prefill tokens, decodes, context per decode): a light-load arrival, a medium one, a big one
CASES = ((91, 2, 1300), (256, 8, 2048), (2048, 64, 2048))


def works(prefill: int, decodes: int, ctx: int, block_size: int, num_blocks: int):
    from nanosim.gpu.inputs import SeqWork

    per = -(-(ctx + 1) // block_size)
    out = [SeqWork([5] * prefill, 0, list(range(-(-prefill // block_size))), True, 0.6)]
    base = -(-prefill // block_size)
    for i in range(decodes):  # timing only: tables may share blocks
        out.append(SeqWork([7], ctx, [(base + i * per + j) % num_blocks for j in range(per)], True, 0.6))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tile-decodes", action="store_true")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("mixed_step.py needs a CUDA GPU")
    from profile_decode import median_s  # (benchmarks/ is this script's import path)

    from nanosim.config import get_model
    from nanosim.gpu.options import KernelOptions
    from nanosim.gpu.options import RunnerOptions
    from nanosim.gpu.runner import ModelRunner

    kw = {"block_size": 256, "max_num_seqs": 256, "max_num_batched_tokens": 8192,
          "max_model_len": 4096, "num_kv_blocks": 700,  # two runners share the GPU
          "kernels": KernelOptions(mixed_decode_kernel=not a.tile_decodes)}
    graphs = ModelRunner(get_model("qwen3-0.6b"), "cuda", RunnerOptions(**kw))
    eager = ModelRunner(get_model("qwen3-0.6b"), "cuda", RunnerOptions(mixed_graphs=False, **kw))
    for prefill, decodes, ctx in CASES:
        row = []
        for r in (graphs, eager):
            w = works(prefill, decodes, ctx, 256, r.num_kv_blocks)
            for _ in range(3):
                r.step(w)
            row.append(median_s(lambda r=r, w=w: r.step(w)))
        print(f"prefill {prefill:5d} + {decodes:3d} decodes x {ctx}: mixed graph {row[0] * 1e3:7.3f} ms, "
              f"eager {row[1] * 1e3:7.3f} ms ({'varlen tiles' if a.tile_decodes else 'decode kernel'} "
              f"for the decodes in the graph)", flush=True)


if __name__ == "__main__":
    main()
