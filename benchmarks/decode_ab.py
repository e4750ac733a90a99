"""Same-machine A/B of the small-batch decode switches (needs CUDA), Qwen3-0.6B shapes.

An arm is a KernelOptions (nanosim/gpu/options.py), ``NAME:field=V,...`` (e.g.
``no_pdl:pdl=0``, ``prewait0:prewait_max_rows=0``); unnamed fields keep their defaults. The
older ``mod.ATTR=V`` spellings of the same switches (``pdl.ENABLED``,
``decode_attention.PREWAIT_MAX_ROWS``, ...) are read too. The default arms: programmatic
dependent launch on (the default) and off.

One runner per arm (its options fixed for its life, graphs captured with them), all alive at once;
the arms are timed in turn, ``--rounds`` times, so machine drift hits them alike. Per arm and
batch size: median wall of ``runner.step_next`` (the engine's steady decode step: inputs
edited in place, graph, LM head, sampler, copy back; temperature 0.6), median GPU time of the
decode graph replay, and the kernels per step of the graph (torch.profiler over one replay).
Also checks whether every arm samples the same greedy tokens as the first arm.

    python benchmarks/decode_ab.py [--batch 1 2 4 8 16] [--context 1024] [--rounds 5] [--arm ...]
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts
from profile_decode import graph_s  # noqa: E402  (GPU time of one decode-graph replay)

ARMS = ["pdl:", "no_pdl:pdl=0"]
# the module-global spellings these switches had before KernelOptions (recorded results use them)
OLD_NAMES = {"pdl.ENABLED": "pdl", "decode_attention.PREWAIT_MAX_ROWS": "prewait_max_rows",
             "decode_attention.QKV_PROLOGUE": "qkv_prologue", "decode_attention.ORDER": "decode_order",
             "decode_attention.SPLIT_WAVES": "split_waves", "decode_attention.SPLIT_TOKENS": "split_tokens",
             "skinny_gemm.PROGRAMS_PER_SM": "skinny_programs_per_sm", "splitk_gemm.MID_MAX_M": "splitk_max_m"}


def parse_arm(text: str):
    """'name:field=V,...' -> (name, KernelOptions); later settings win."""
    from nanosim.gpu.options import KernelOptions

    name, _, spec = text.partition(":")
    items = []
    for item in filter(None, spec.split(",")):
        key, sep, value = item.partition("=")
        items.append(f"{OLD_NAMES.get(key, key)}{sep}{value}")
    try:
        return name, KernelOptions.parse(",".join(items))
    except ValueError as e:
        raise SystemExit(f"arm {name!r}: {e}") from None


def build(kernels, max_bs: int, blocks: int):
    from nanosim.config import get_model
    from nanosim.gpu.options import RunnerOptions
    from nanosim.gpu.runner import ModelRunner

    # the same seed: the same random weights in every arm
    return ModelRunner(get_model("qwen3-0.6b"), "cuda", RunnerOptions(block_size=256, max_num_seqs=max_bs,
                       num_kv_blocks=blocks, max_model_len=4096, mixed_graphs=False, seed=0,
                       kernels=kernels))


def works_for(bs: int, context: int, temperature: float, blocks: int):
    from nanosim.gpu.inputs import SeqWork

    per = -(-(context + 2) // 256) + 1  # + a spare block: step_next crosses a block boundary
    return [SeqWork([5 + i], context, [(i * per + b) % blocks for b in range(per)], True, temperature)
            for i in range(bs)]


def step_next_s(runner, works, reps: int) -> float:
    runner.step(works)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        runner.step_next()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def graph_kernels(runner, bs: int) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        runner.graphs.replay(bs)
        torch.cuda.synchronize()
    return sum(e.count for e in prof.key_averages() if e.device_type.name == "CUDA")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=50, help="steps per arm, batch and round")
    ap.add_argument("--arm", nargs="+", default=ARMS, help="NAME:field=V,... (KernelOptions fields; see the doc)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("decode_ab.py needs a CUDA GPU")
    blocks = max(a.batch) * (-(-(a.context + 2) // 256) + 1) + 8
    arms = [parse_arm(t) for t in a.arm]
    runners = {name: build(kernels, max(a.batch), blocks) for name, kernels in arms}
    res = {"gpu": torch.cuda.get_device_name(), "context": a.context, "arm_switches": a.arm,
           "arms": {}}
    first = arms[0][0]
    for bs in a.batch:
        greedy = {k: r.step(works_for(bs, a.context, 0.0, blocks)).token_ids for k, r in runners.items()}
        same = {k: greedy[k] == greedy[first] for k in runners}
        walls = {k: [] for k in runners}
        graphs = {k: [] for k in runners}
        for _, (k, r) in itertools.product(range(a.rounds), runners.items()):
            walls[k].append(step_next_s(r, works_for(bs, a.context, 0.6, blocks), a.reps))
            graphs[k].append(graph_s(r, r.graphs.batch_size_for(bs), a.reps))
        for k, r in runners.items():
            row = {"step_next_ms": statistics.median(walls[k]) * 1e3,
                   "step_next_ms_rounds": [round(w * 1e3, 4) for w in walls[k]],
                   "graph_ms": statistics.median(graphs[k]) * 1e3,
                   "graph_kernels": graph_kernels(r, r.graphs.batch_size_for(bs)),
                   "greedy_tokens_as_first_arm": same[k]}
            res["arms"].setdefault(k, {})[bs] = row
            print(f"batch {bs:3d} {k:12s} step_next {row['step_next_ms']:.3f} ms  graph "
                  f"{row['graph_ms']:.3f} ms  {row['graph_kernels']} kernels  "
                  f"greedy as {first}: {same[k]}", flush=True)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
