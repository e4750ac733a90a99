"""Where a replay's prefill steps spend the time the profile does not see (needs CUDA).

Replays the first N requests of a trace for real (virtual clock, as `nanosim validate`),
and for each prefill-only step records the backend's measured duration (what validate
compares), the runner.step inside it and that step's device time (input copy to tokens
back), and the host gap since the previous step ended. Then times runner.step on a fresh
prefill of each chunk size back to back, as the profiler does (wall and device). Prints
medians per chunk size.

    python benchmarks/prefill_replay.py TRACE [--requests 100] [--max-model-len 4096]
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--max-model-len", type=int, default=4096)
    a = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("prefill_replay.py needs a CUDA GPU")
    from nanosim.calibrate.shapes import Composition
    from nanosim.gpu.inputs import SeqWork
    from nanosim.gpu.llm import LLM
    from nanosim.gpu.replay import replay
    from nanosim.workload import load_trace

    reqs = load_trace(a.trace)[: a.requests]
    with LLM("qwen3-0.6b", max_model_len=a.max_model_len, async_decode=False) as llm:  # virtual clock
        llm.warmup()
        runner, backend = llm.runner, llm.backend
        rows = defaultdict(lambda: {"execute": [], "step": [], "device": [], "gap": []})
        inner_step, inner_exec = runner.step, backend.execute
        last = {"end": None, "step": 0.0, "device": 0.0}

        def step(works):
            t0 = time.perf_counter()
            out = inner_step(works)
            last["step"], last["device"] = time.perf_counter() - t0, out.duration_s
            return out

        def execute(batch):
            gap = None if last["end"] is None else time.perf_counter() - last["end"]
            last["step"] = 0.0
            res = inner_exec(batch)
            last["end"] = time.perf_counter()
            s = batch.shape
            if s.num_prefill_seqs == 1 and not s.num_decode_seqs and gap is not None:
                r = rows[s.prefill_tokens]
                r["execute"].append(res.duration_s)
                r["step"].append(last["step"])
                r["device"].append(last["device"])
                r["gap"].append(gap)
            return res

        runner.step, backend.execute = step, execute
        replay(llm, reqs)
        runner.step, backend.execute = inner_step, inner_exec
        print(f"{'tokens':>6} {'n':>3} {'execute':>8} {'step':>8} {'device':>8} {'gap':>8} "
              f"{'bare step':>9} {'bare dev':>9}  (ms, medians)")
        for q in sorted(rows):
            r = rows[q]
            bare, bare_dev = [], []
            for i in range(23):
                works = Composition(num_prefills=1, chunk=q).works(runner.block_size, SeqWork, token=11 + i)
                t0 = time.perf_counter()
                out = runner.step(works)
                if i >= 3:
                    bare.append(time.perf_counter() - t0)
                    bare_dev.append(out.duration_s)
            med = [statistics.median(r[k]) * 1e3 for k in ("execute", "step", "device", "gap")]
            print(f"{q:>6} {len(r['step']):>3} " + " ".join(f"{m:>8.3f}" for m in med)
                  + f" {statistics.median(bare) * 1e3:>9.3f} {statistics.median(bare_dev) * 1e3:>9.3f}")


if __name__ == "__main__":
    main()
