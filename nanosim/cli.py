"""`nanosim` command line. Each subcommand imports what it needs lazily.

    nanosim simulate  --trace FILE | --workload NAME  --model M --gpu G  --out DIR
    nanosim run       --trace FILE | --workload NAME  --model M [--weights DIR] --out DIR
    nanosim memory    --model M --gpu G [--tp N] [--block-size N]
    nanosim trace stats FILE      |  nanosim trace convert FILE OUT
"""
from __future__ import annotations

import argparse
import sys

from nanosim.config import ConfigError, EngineConfig


def _engine_args(p: argparse.ArgumentParser) -> None:
    d = EngineConfig()
    g = p.add_argument_group("engine")
    g.add_argument("--block-size", type=int, default=d.block_size_tokens, help="KV block size in tokens")
    g.add_argument("--max-num-seqs", type=int, default=d.max_num_seqs)
    g.add_argument("--max-num-batched-tokens", type=int, default=d.max_num_batched_tokens)
    g.add_argument("--max-model-len", type=int, default=d.max_model_len)
    g.add_argument("--policy", choices=["fcfs", "priority", "sjf"], default=d.policy)
    g.add_argument("--chunked-prefill", action=argparse.BooleanOptionalAction, default=True,
                   help="vLLM v1 mixed steps (default); --no-chunked-prefill = nano-vLLM prefill-first")
    g.add_argument("--preemption", choices=["recompute", "swap"], default=d.preemption_mode)
    g.add_argument("--prefix-caching", action=argparse.BooleanOptionalAction, default=True)
    g.add_argument("--gpu-memory-utilization", type=float, default=d.gpu_memory_utilization)
    g.add_argument("--num-kv-blocks", type=int, default=None, help="override the derived KV capacity")
    g.add_argument("--tp", type=int, default=1, help="tensor-parallel ranks")
    g.add_argument("--seed", type=int, default=0)


def _config(a) -> EngineConfig:
    return EngineConfig(
        block_size_tokens=a.block_size, max_num_seqs=a.max_num_seqs,
        max_num_batched_tokens=a.max_num_batched_tokens, max_model_len=a.max_model_len,
        chunked_prefill=a.chunked_prefill, policy=a.policy, preemption_mode=a.preemption,
        enable_prefix_caching=a.prefix_caching, gpu_memory_utilization=a.gpu_memory_utilization,
        num_kv_blocks=a.num_kv_blocks, tp=a.tp, seed=a.seed)


def _workload_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("workload")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--trace", help="trace file (format detected by content)")
    src.add_argument("--workload", help="synthetic suite: chatbot, rag, code, summarization")
    g.add_argument("--format", default=None, help="force a trace format")
    g.add_argument("--rate", type=float, default=2.0, help="req/s for --workload (Poisson)")
    g.add_argument("--num-requests", type=int, default=200, help="requests for --workload")
    g.add_argument("--rate-scale", type=float, default=1.0,
                   help="multiply the trace's arrival rate (compress arrival times)")
    g.add_argument("--max-requests", type=int, default=None, help="keep the first N requests")


def _load_requests(a) -> list:
    from nanosim.workload import load_trace, make_workload
    from nanosim.workload.transforms import scale_rate

    if a.trace:
        reqs = load_trace(a.trace, format=a.format)
    else:
        reqs = make_workload(a.workload, a.rate, num_requests=a.num_requests, seed=a.seed)
    if a.max_requests is not None:
        reqs = reqs[: a.max_requests]
    if a.rate_scale != 1.0:
        reqs = scale_rate(reqs, a.rate_scale)
    return reqs


def cmd_simulate(a) -> int:
    from nanosim.config import get_gpu, get_model
    from nanosim.output import format_summary, write_run
    from nanosim.sim.job import run_simulation

    model, gpu, cfg = get_model(a.model), get_gpu(a.gpu), _config(a)
    reqs = _load_requests(a)
    req_df, step_df, summary = run_simulation(reqs, model, gpu, cfg, a.profile,
                                              progress=not a.no_progress,
                                              replicas=a.replicas, router=a.router)
    summary["source"] = a.trace or f"workload:{a.workload}"
    out = write_run(a.out, req_df, step_df, summary)
    print(format_summary(summary))
    print(f"wrote {out}/requests.parquet, steps.parquet, summary.json")
    return 0


def cmd_run(a) -> int:
    from nanosim.gpu.llm import LLM
    from nanosim.gpu.replay import replay
    from nanosim.output import format_summary, write_run

    cfg = _config(a)
    opts = dict(block_size=cfg.block_size_tokens, max_num_seqs=cfg.max_num_seqs,
                max_num_batched_tokens=cfg.max_num_batched_tokens, max_model_len=cfg.max_model_len,
                chunked_prefill=cfg.chunked_prefill, policy=cfg.policy,
                preemption_mode=cfg.preemption_mode, enable_prefix_caching=cfg.enable_prefix_caching,
                gpu_memory_utilization=cfg.gpu_memory_utilization, enforce_eager=a.enforce_eager,
                attention=a.attention, seed=cfg.seed)
    if cfg.num_kv_blocks is not None:
        opts["num_kv_blocks"] = cfg.num_kv_blocks
    llm = LLM(a.model, device=a.device, dtype=a.dtype, weights=a.weights, **opts)
    reqs = _load_requests(a)
    bar = _bar(len(reqs), "run") if not a.no_progress else None
    req_df, step_df, summary = replay(llm, reqs, a.clock, a.temperature,
                                      None if bar is None else bar.update_to)
    if bar is not None:
        bar.close()
    summary["source"] = a.trace or f"workload:{a.workload}"
    out = write_run(a.out, req_df, step_df, summary)
    print(format_summary(summary))
    print(f"attention backend {summary['attention_backend']}, CUDA graphs {summary['cuda_graphs']}")
    print(f"wrote {out}/requests.parquet, steps.parquet, summary.json")
    return 0


def _bar(total: int, desc: str):
    from nanosim.sim.job import _progress_bar

    bar = _progress_bar(total)
    bar.set_description(desc)
    return bar


def cmd_memory(a) -> int:
    from nanosim.config import get_gpu, get_model
    from nanosim.sim.memory import format_capacity, kv_capacity

    model, gpu, cfg = get_model(a.model), get_gpu(a.gpu), _config(a)
    print(format_capacity(kv_capacity(model, gpu, cfg), model, gpu, cfg, tuple(a.seq_len)))
    return 0


def cmd_trace(a) -> int:
    from nanosim.workload import format_stats, load_trace, trace_stats, write_canonical

    reqs = load_trace(a.file, format=a.format)
    if a.action == "stats":
        print(format_stats(trace_stats(reqs, block_size_tokens=a.block_size)))
    else:
        write_canonical(reqs, a.out)
        print(f"wrote {len(reqs)} requests to {a.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nanosim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="replay a trace against the simulated GPU")
    _workload_args(s)
    s.add_argument("--model", default="qwen3-8b")
    s.add_argument("--gpu", default="h100")
    s.add_argument("--profile", default=None, help="measured profile JSON (or a folder of them)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--replicas", type=int, default=1, help="engines behind a router")
    s.add_argument("--router", default="round_robin",
                   choices=["round_robin", "least_tokens", "least_kv", "prefix"])
    s.add_argument("--no-progress", action="store_true")
    _engine_args(s)
    s.set_defaults(func=cmd_simulate)

    r = sub.add_parser("run", help="replay a trace on a real GPU (Qwen3 runner)")
    _workload_args(r)
    r.add_argument("--model", default="qwen3-0.6b", help="preset name or local HF checkpoint dir")
    r.add_argument("--weights", default=None, help="local checkpoint dir for a preset's shapes")
    r.add_argument("--device", default="cuda")
    r.add_argument("--dtype", default="bfloat16")
    r.add_argument("--attention", default="auto", choices=["auto", "flash", "triton", "torch"])
    r.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs")
    r.add_argument("--clock", default="virtual", choices=["virtual", "wall"])
    r.add_argument("--temperature", type=float, default=0.0)
    r.add_argument("--out", required=True)
    r.add_argument("--no-progress", action="store_true")
    _engine_args(r)
    r.set_defaults(func=cmd_run)

    m = sub.add_parser("memory", help="KV-cache capacity of a model on a GPU")
    m.add_argument("--model", default="qwen3-8b")
    m.add_argument("--gpu", default="h100")
    m.add_argument("--seq-len", type=int, nargs="+", default=[1024, 4096, 16384, 32768])
    _engine_args(m)
    m.set_defaults(func=cmd_memory)

    t = sub.add_parser("trace", help="inspect or convert a trace")
    t.add_argument("action", choices=["stats", "convert"])
    t.add_argument("file")
    t.add_argument("out", nargs="?", help="output file for convert (.csv or .jsonl)")
    t.add_argument("--format", default=None)
    t.add_argument("--block-size", type=int, default=16, help="block size for the reuse ratio")
    t.set_defaults(func=cmd_trace)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "action", None) == "convert" and not args.out:
        print("nanosim trace convert: give an output file", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError, NotImplementedError) as e:
        print(f"nanosim {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
