"""Same-machine A/B of the small-batch decode switches (needs CUDA), Qwen3-0.6B shapes.

An arm sets module switches read while the graphs are captured, ``NAME:mod.ATTR=V,...`` with
mod one of skinny_gemm, decode_attention, pdl, splitk_gemm (nanosim.gpu.kernels); unnamed switches keep
their defaults. The default arms: programmatic dependent launch on (the default) and off.

One runner per arm (its CUDA graphs captured with that arm's switches), all alive at once;
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

ARMS = ["pdl:", "no_pdl:pdl.ENABLED=0"]


def parse_arm(text: str) -> tuple[str, list[tuple[object, str, int]]]:
    """'name:mod.ATTR=V,...' -> (name, [(module, attr, int value)]); later settings win."""
    from nanosim.gpu.kernels import decode_attention, pdl, skinny_gemm, splitk_gemm

    mods = {"skinny_gemm": skinny_gemm, "decode_attention": decode_attention, "pdl": pdl,
            "splitk_gemm": splitk_gemm}
    name, _, spec = text.partition(":")
    sets = []
    for item in filter(None, spec.split(",")):
        path, _, value = item.partition("=")
        mod, _, attr = path.partition(".")
        if mod not in mods or not hasattr(mods[mod], attr):
            raise SystemExit(f"arm {name!r}: unknown switch {path!r}")
        sets.append((mods[mod], attr, int(value)))
    return name, sets


def build(sets, max_bs: int, blocks: int):
    from nanosim.config import get_model
    from nanosim.gpu.runner import ModelRunner

    saved = [(mod, attr, getattr(mod, attr)) for mod, attr, _ in sets]
    for mod, attr, value in sets:
        setattr(mod, attr, type(getattr(mod, attr))(value))
    try:  # the same seed: the same random weights in every arm
        return ModelRunner(get_model("qwen3-0.6b"), "cuda", block_size=256, max_num_seqs=max_bs,
                           num_kv_blocks=blocks, max_model_len=4096, mixed_graphs=False, seed=0)
    finally:
        for mod, attr, value in reversed(saved):
            setattr(mod, attr, value)


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
    ap.add_argument("--arm", nargs="+", default=ARMS, help="NAME:mod.ATTR=V,... (see the doc)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("decode_ab.py needs a CUDA GPU")
    blocks = max(a.batch) * (-(-(a.context + 2) // 256) + 1) + 8
    arms = [parse_arm(t) for t in a.arm]
    runners = {name: build(sets, max(a.batch), blocks) for name, sets in arms}
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
