"""Where a decode step's time goes (needs CUDA), for Qwen3-0.6B shapes at given batch sizes:

  * step: runner.step wall time with CUDA graphs (packing + graph + LM head + sampler + sync);
    step_next: the same for the steady-decode fast path (inputs edited in place)
  * graph: the decode graph's replay alone on the GPU (CUDA events)
  * phases: the step replayed by hand: packing (CPU ms), upload + graph, LM head, sampler
  * kernels: torch.profiler over eager forwards + LM head + sampler: kernels per step, kernel
    time per step, the top kernels
  * --prefill N: the same for one prefill step of about N tokens made of prompts of 100..1024
    tokens (gpu_throughput.py's first step), eager

    python benchmarks/profile_decode.py [--batch 1 256] [--context 1024] [--attention triton]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def median_s(fn, reps: int = 30) -> float:
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def graph_s(runner, bs: int, reps: int = 30) -> float:
    """GPU seconds of one replay of the decode graph of size bs (inputs as last packed)."""
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        runner.graphs.replay(bs)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    return statistics.median(times)


def phases(runner, works, reps: int = 30) -> str:
    """runner.step's phases, replayed by hand (medians, ms): host packing (CPU), then on the
    GPU upload + graph, LM head, sampler + copy back, and the whole wall time."""
    from nanosim.gpu.sampler import sample

    bs = runner.graphs.batch_size_for(len(works))
    rows = {k: [] for k in ("pack", "graph", "lm_head", "sample", "wall")}
    for _ in range(reps):
        torch.cuda.synchronize()
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        t0 = time.perf_counter()
        inp = runner.packer.pack(works, runner.num_kv_blocks, bs)
        t1 = time.perf_counter()
        ev[0].record()
        inp.upload()
        hidden = runner.graphs.replay(bs)[:len(works)]
        ev[1].record()
        logits = runner.model.compute_logits(hidden)
        ev[2].record()
        ids = sample(logits, inp.temperature, inp.top_k, inp.top_p, inp.u, inp.all_greedy,
                     inp.needs_sort)
        out = runner._tokens_host[0][:len(works)]
        out.copy_(ids, non_blocking=True)
        ev[3].record()
        ev[3].synchronize()
        out.tolist()
        rows["wall"].append(time.perf_counter() - t0)
        rows["pack"].append(t1 - t0)
        for k, a, b in (("graph", 0, 1), ("lm_head", 1, 2), ("sample", 2, 3)):
            rows[k].append(ev[a].elapsed_time(ev[b]) / 1e3)
    return ", ".join(f"{k} {statistics.median(v) * 1e3:.3f}" for k, v in rows.items())


def prefill_works(tokens: int, block_size: int, num_blocks: int):
    """Prompts of gpu_throughput.py's workload (lengths uniform in 100..1024, seed 0) until
    about ``tokens`` tokens, each with its own blocks."""
    from random import randint, seed

    from nanosim.gpu.inputs import SeqWork

    seed(0)
    works, total, nxt = [], 0, 0
    while True:
        n = randint(100, 1024)
        if total + n > tokens:
            return works
        per = -(-n // block_size)
        table = [b % num_blocks for b in range(nxt, nxt + per)]  # timing only: blocks may repeat
        works.append(SeqWork([randint(0, 10000) for _ in range(n)], 0, table, True, 0.6))
        total, nxt = total + n, nxt + per


def kernels(runner, works, steps: int, top: int):
    from torch.profiler import ProfilerActivity, profile

    from nanosim.gpu.sampler import sample

    def eager_step():
        logits = runner.logits(works)
        ones = torch.ones(len(works), device="cuda")
        sample(logits, ones * 0.6, ones.int() * 0, ones, ones * 0.5, False, False)

    for _ in range(3):
        eager_step()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            eager_step()
    events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
    total = sum(e.self_device_time_total for e in events) / steps
    count = sum(e.count for e in events) / steps
    print(f"  eager: {count:.0f} kernels/step, {total / 1e3:.3f} ms of kernel time/step")
    for e in sorted(events, key=lambda e: -e.self_device_time_total)[:top]:
        print(f"  {e.self_device_time_total / steps:9.1f} us {e.count / steps:6.1f}x  {e.key[:90]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[1])
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--attention", default="triton")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--top", type=int, default=14)
    ap.add_argument("--prefill", type=int, default=0, help="also one prefill step of ~N tokens")
    ap.add_argument("--no-pdl", action="store_true", help="programmatic dependent launch off (A/B)")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("profile_decode.py needs a CUDA GPU")
    from nanosim.config import get_model
    from nanosim.gpu.inputs import SeqWork
    from nanosim.gpu.options import KernelOptions
    from nanosim.gpu.options import RunnerOptions
    from nanosim.gpu.runner import ModelRunner

    r = ModelRunner(get_model("qwen3-0.6b"), "cuda", RunnerOptions(block_size=256, max_num_seqs=max(a.batch),
                    max_num_batched_tokens=max(8192, a.prefill), max_model_len=4096, attention=a.attention,
                    gpu_memory_utilization=0.5, mixed_graphs=False,
                    kernels=KernelOptions(pdl=not a.no_pdl)))
    per = -(-(a.context + 1) // 256)
    for bs in a.batch:
        works = [SeqWork([5], a.context, [b % r.num_kv_blocks for b in range(i * per, (i + 1) * per)],
                         True, 0.6) for i in range(bs)]  # timing only: blocks may repeat
        for _ in range(5):
            r.step(works)
        step = median_s(lambda: r.step(works))
        for w in works:  # a spare block: step_next runs the context past a block boundary
            w.block_table.append(w.block_table[-1])
        r.step(works)
        step_next = median_s(r.step_next)
        graph = graph_s(r, r.graphs.batch_size_for(bs))
        print(f"batch {bs}, context {a.context}, {a.attention}: step {step * 1e3:.3f} ms, "
              f"step_next {step_next * 1e3:.3f} ms (temperature 0.6), decode graph replay "
              f"{graph * 1e3:.3f} ms", flush=True)
        print(f"  phases (ms): {phases(r, works)}", flush=True)
        kernels(r, works, a.steps, a.top)
    if a.prefill:
        works = prefill_works(a.prefill, 256, r.num_kv_blocks)
        n = sum(len(w.token_ids) for w in works)
        step = median_s(lambda: r.step(works), reps=10)
        print(f"prefill step: {len(works)} prompts, {n} tokens, {a.attention}: {step * 1e3:.3f} ms", flush=True)
        kernels(r, works, 3, a.top)


if __name__ == "__main__":
    main()
