"""Does a prefill step's time depend on what ran before it? (needs CUDA)

Times one prefill step of each chunk size (mixed CUDA graphs, Qwen3-0.6B shapes) after
8 decode steps run three ways: all packed step() calls (how `nanosim profile` ran its
prefill points in its first form), a step() then step_next() calls (steady serving), and
none (back to back). Prints the median wall ms per chunk and way.

    python benchmarks/prefill_context.py [--chunks 91 120 374 1313] [--reps 30]
"""
from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, nargs="+", default=[91, 120, 206, 374, 1313])
    ap.add_argument("--reps", type=int, default=30)
    a = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("prefill_context.py needs a CUDA GPU")
    from nanosim.calibrate.shapes import Composition
    from nanosim.config import get_model
    from nanosim.gpu.inputs import SeqWork
    from nanosim.gpu.options import RunnerOptions
    from nanosim.gpu.runner import ModelRunner

    r = ModelRunner(get_model("qwen3-0.6b"), "cuda", RunnerOptions(block_size=256, max_num_seqs=256,
                    max_num_batched_tokens=8192, max_model_len=4096, attention="triton",
                    gpu_memory_utilization=0.5))

    def decodes(way: str) -> None:
        works = Composition(num_decodes=2, decode_context=700).works(r.block_size, SeqWork)
        for w in works:
            w.block_table.append(w.block_table[-1])
        if way == "none":
            return
        r.step(works)
        for _ in range(7):
            r.step_next() if way == "step_next" else r.step(works)

    print(f"{'chunk':>6} {'after packed':>13} {'after step_next':>16} {'back to back':>13}  (ms, median of {a.reps})")
    for q in a.chunks:
        row = []
        for way in ("packed", "step_next", "none"):
            times = []
            for i in range(a.reps + 3):
                decodes(way)
                works = Composition(num_prefills=1, chunk=q).works(r.block_size, SeqWork, token=11 + i)
                t0 = time.perf_counter()
                r.step(works)
                if i >= 3:
                    times.append(time.perf_counter() - t0)
            row.append(statistics.median(times) * 1e3)
        print(f"{q:>6} {row[0]:>13.3f} {row[1]:>16.3f} {row[2]:>13.3f}")


if __name__ == "__main__":
    main()
