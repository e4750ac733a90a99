"""Diagnose real-replay step times (needs CUDA): replay a trace twice on one runner (a fresh
engine each pass) and print step-time statistics per batch kind and the slowest steps, to
tell one-time costs (JIT compiles, allocator growth) from steady-state ones.

    python benchmarks/diag_replay.py TRACE [--max-requests 100] [--model qwen3-0.6b]
"""
from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--max-requests", type=int, default=100)
    ap.add_argument("--model", default="qwen3-0.6b")
    ap.add_argument("--attention", default="auto")
    a = ap.parse_args()
    from nanosim.calibrate.validate import RecordingBackend, batch_kind
    from nanosim.core.engine import Engine
    from nanosim.gpu.backend import GpuBackend, SamplingParams
    from nanosim.gpu.llm import LLM
    from nanosim.sim.simulator import simulate
    from nanosim.workload import load_trace

    reqs = load_trace(a.trace)[: a.max_requests]
    llm = LLM(a.model, attention=a.attention, max_model_len=32768)
    greedy = GpuBackend(llm.runner, llm.host_blocks, llm.async_decode,  # the LLM's, greedy by default
                        default_sampling=SamplingParams(temperature=0.0, ignore_eos=True))
    for p in (1, 2):
        rec = RecordingBackend(greedy)
        eng = Engine(llm.cfg, rec, llm.engine.bm.num_blocks)
        simulate(eng, reqs, fast_forward=False)
        kinds = np.array([batch_kind(s) for s in rec.shapes])
        d = np.array(rec.durations) * 1e3
        print(f"pass {p}: {len(d)} steps, total {d.sum() / 1e3:.2f} s")
        for k in ("decode", "prefill", "mixed"):
            x = d[kinds == k]
            if len(x):
                print(f"  {k:8s} n={len(x):6d} median {np.median(x):8.2f} ms  p90 {np.percentile(x, 90):8.2f}"
                      f"  max {x.max():9.2f}  sum {x.sum() / 1e3:7.2f} s")
        for i in np.argsort(-d)[:6]:
            s = rec.shapes[i]
            print(f"  slow step {i}: {d[i]:.1f} ms {batch_kind(s)} prefill {s.num_prefill_seqs}x"
                  f"{s.prefill_tokens} tok, decode {s.num_decode_seqs}")


if __name__ == "__main__":
    main()
