"""torch.compile against our fused Triton kernels for the elementwise ops (needs CUDA).

Three runners, one after another (Qwen3-0.6B shapes, random weights, triton attention):
  fused    the default: Triton RMSNorm (split-K sums, residual add), SwiGLU, q/k-norm + RoPE
           kernels, skinny GEMMs at <= 16 rows, the decode kernel's qkv prologue
  compile  the torch norms, activation and rotary embedding under torch.compile (inductor,
           dynamic shapes; ModelRunner(fused_ops=False, compile_ops=True))
  torch    the same torch code run eagerly (fused_ops=False)
Per runner: decode-graph replay at each --batch (context --context; GPU time, median), an
eager prefill step of --prefill-seqs prompts of 1024 tokens (wall, synchronised, median),
the runner's start-up seconds (compilation and graph capture included), and whether its
greedy tokens at each batch equal the fused runner's.

    python benchmarks/compile_ab.py [--batch 1 64 256] [--context 1024] [--prefill-seqs 16] [--json OUT]
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts
from decode_ab import works_for  # noqa: E402
from profile_decode import graph_s  # noqa: E402

ARMS = {"fused": {}, "compile": {"fused_ops": False, "compile_ops": True},
        "torch": {"fused_ops": False}}


def prefill_s(runner, seqs: int, reps: int) -> float:
    """Median wall seconds of one eager step prefilling `seqs` prompts of 1024 tokens."""
    from nanosim.gpu.inputs import SeqWork

    works = [SeqWork([(7 * i + j) % 1000 + 1 for j in range(1024)], 0, list(range(5 * i, 5 * i + 4)),
                     True, 0.0) for i in range(seqs)]
    runner.step(works)  # warm-up (and, for compile, any last specialisation)
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        runner.step(works)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 64, 256])
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--prefill-seqs", type=int, default=16)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("compile_ab.py needs a CUDA GPU")
    from nanosim.config import get_model
    from nanosim.gpu.options import RunnerOptions
    from nanosim.gpu.runner import ModelRunner

    blocks = max(max(a.batch) * (-(-(a.context + 2) // 256) + 1), 5 * a.prefill_seqs) + 8
    res = {"gpu": torch.cuda.get_device_name(), "context": a.context, "arms": {}}
    first_tokens = None
    for arm in a.arms:
        t0 = time.perf_counter()
        runner = ModelRunner(get_model("qwen3-0.6b"), "cuda", RunnerOptions(block_size=256,
                             max_num_seqs=max(a.batch), num_kv_blocks=blocks, max_model_len=4096,
                             mixed_graphs=False, seed=0, **ARMS[arm]))
        row = {"start_s": time.perf_counter() - t0, "decode_graph_ms": {}}
        tokens = {}
        for bs in a.batch:
            tokens[bs] = runner.step(works_for(bs, a.context, 0.0, blocks)).token_ids
            row["decode_graph_ms"][bs] = graph_s(runner, runner.graphs.batch_size_for(bs), a.reps) * 1e3
        row["prefill_ms"] = prefill_s(runner, a.prefill_seqs, 5) * 1e3
        first_tokens = first_tokens or tokens
        row["greedy_tokens_as_first_arm"] = tokens == first_tokens
        res["arms"][arm] = row
        print(f"{arm:8s} start {row['start_s']:6.1f} s  decode graph "
              + " / ".join(f"b{b} {t:.3f}" for b, t in row["decode_graph_ms"].items())
              + f" ms  prefill {a.prefill_seqs}x1024 {row['prefill_ms']:.2f} ms  "
              f"greedy as {a.arms[0]}: {row['greedy_tokens_as_first_arm']}", flush=True)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=1)
        del runner
        gc.collect()
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
