"""`nanosim` command line. Each subcommand imports what it needs lazily.

    nanosim simulate  --trace FILE | --workload NAME  --model M --gpu G  --out DIR
    nanosim run       --trace FILE | --workload NAME  --model M [--weights DIR] --out DIR
    nanosim profile   --model M --out FILE.json                      (on a GPU)
    nanosim validate  --trace FILE --model M --profile P --out DIR   (on a GPU)
    nanosim memory    --model M --gpu G [--tp N] [--block-size N]
    nanosim trace list | info NAME | download NAME...   (registered public traces)
    nanosim trace stats SOURCE    |  nanosim trace convert SOURCE OUT
    nanosim sweep SPEC [--out DIR] [--ray auto|ADDRESS]  |  nanosim report DIR
    nanosim serve [--sim --gpu G] --model M [--port 8000]           (OpenAI-compatible server)
    nanosim bench serve --endpoint URL --trace FILE --out DIR        (replay against a server)
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import warnings

from nanosim.cli_args import OneLineParser, int_at_least
from nanosim.cli_checks import arrival_options, check_args, speak_cli
from nanosim.cli_common import add_engine_args as _engine_args
from nanosim.cli_common import add_workload_args as _workload_args
from nanosim.cli_common import engine_config as _config
from nanosim.cli_common import load_requests as _load_requests
from nanosim.config import ConfigError, EngineConfig


def cmd_simulate(a) -> int:
    from nanosim.config import get_gpu, get_model
    from nanosim.output import format_summary, write_run
    from nanosim.sim.job import run_simulation
    from nanosim.sim.router import RouterConfig

    model, gpu, cfg = get_model(a.model), get_gpu(a.gpu), _config(a)
    router = RouterConfig(a.router, a.router_balance_abs, a.router_balance_rel,
                          a.router_cache_threshold)
    reqs = _load_requests(a)
    if a.whole_process:  # what exists now (modules, the trace) lives to the process's end:
        gc.freeze()  # collections in the replay scan only what it makes (a full one: ~10 ms)
    profile = None if a.profile.lower() == "none" else a.profile
    req_df, step_df, summary = run_simulation(reqs, model, gpu, cfg, profile,
                                              progress=not a.no_progress,
                                              replicas=a.replicas, router=router,
                                              step_jitter=not a.no_step_jitter, frames=False,
                                              step_rows=a.steps == "rows",
                                              profile_from=a.profile_from)
    summary["source"] = a.trace or f"workload:{a.workload}"
    out = write_run(a.out, req_df, step_df, summary)
    print(format_summary(summary))
    print(f"wrote {out}/requests.parquet, steps.parquet, summary.json")
    return 0


def cmd_run(a) -> int:
    from nanosim.gpu.replay import replay
    from nanosim.output import format_summary, write_run

    if a.async_decode and a.clock != "wall":
        raise ValueError("--async-decode needs --clock wall (on the virtual clock each step's "
                         "duration must be its own, not the host's pace)")
    reqs = _load_requests(a)
    with _llm(a, tp=a.tp, async_decode=a.async_decode) as llm:  # tp > 1: worker processes, stopped on leaving the block
        if a.device != "cpu":
            llm.warmup()  # no one-time kernel compile inside the measured replay
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


def _llm(a, tp: int = 1, async_decode: bool = False):
    """An LLM from the run/profile flags; tp > 1 only where the caller handles TP (run)."""
    from nanosim.gpu.llm import LLM, config_kwargs

    return LLM(a.model, device=a.device, dtype=a.dtype, weights=a.weights, tensor_parallel_size=tp,
               async_decode=async_decode, enforce_eager=a.enforce_eager, attention=a.attention,
               **config_kwargs(_config(a)))


def cmd_profile(a) -> int:
    from nanosim.calibrate.profile import gpu_preset, profile_runner
    from nanosim.sim.profile import save_profile

    import torch

    with _llm(a, tp=a.tp) as llm:  # tp > 1: every rank steps; the profile records tp
        gpu = a.gpu or gpu_preset(torch.cuda.get_device_name(llm.device))
        bar = None if a.no_progress else _bar(1, "profile")

        def progress(done: int, total: int) -> None:
            if bar is not None:
                bar.total = total
                bar.update(done - bar.n)

        prof = profile_runner(llm.runner, gpu, reps=a.reps, progress=progress, tp=llm.tp,
                              passes=a.passes, prefill_passes=a.prefill_passes)
        if bar is not None:
            bar.close()
    save_profile(prof, a.out)
    print(f"wrote {a.out}: {len(prof.decode)} decode, {len(prof.prefill)} prefill, "
          f"{len(prof.mixed)} mixed points ({prof.gpu_device_name}, {prof.attention_backend})")
    return 0


def cmd_validate(a) -> int:
    if a.suite:
        from nanosim.calibrate.suite_cli import run_suite_command

        return run_suite_command(a, _config(a), make_llm=_suite_llm)
    from nanosim.calibrate.live import device_name, validate_on
    from nanosim.calibrate.profile import gpu_preset
    from nanosim.calibrate.validate import format_validation, write
    from nanosim.config import get_gpu
    from nanosim.sim.cost_select import make_cost_model

    reqs = _load_requests(a)
    with _llm(a, tp=a.tp) as llm:  # tp > 1: the profile must be one measured at that tp
        gpu = get_gpu(a.gpu or gpu_preset(device_name(llm)))
        # a bad profile fails early
        profile = None if (a.profile or "none").lower() == "none" else a.profile
        cost = make_cost_model(llm.spec, gpu, llm.cfg, profile, a.profile_from)
        llm.warmup()
        v, run = validate_on(llm, reqs, cost, step_jitter=not a.no_step_jitter,
                             temperature=a.temperature)
        run["workload"] = {k: getattr(a, k) for k in ("format", "rate", "num_requests", "rate_scale",
                                                      "max_requests", "seed")}
    v.check(a.max_step_mape, a.max_latency_error)
    meta = {"trace": a.trace or f"workload:{a.workload}", "requests": len(reqs), **run}
    out = write(v, a.out, meta)
    print(format_validation(v))
    print(f"wrote {out}/validation.html, validation.json, step_summary.csv, latency_errors.csv")
    return 1 if v.failures else 0


def _suite_llm(a, model: str, tp: int, cfg: EngineConfig):
    """The LLM of a suite's (model, tp): the run flags with the suite's model and config."""
    from nanosim.gpu.llm import LLM, config_kwargs

    return LLM(model, device=a.device, dtype=a.dtype, weights=a.weights, tensor_parallel_size=tp,
               async_decode=False, enforce_eager=a.enforce_eager, attention=a.attention,
               **config_kwargs(cfg))


def cmd_memory(a) -> int:
    from nanosim.config import get_gpu, get_model
    from nanosim.sim.memory import format_capacity, kv_capacity

    model, gpu, cfg = get_model(a.model), get_gpu(a.gpu), _config(a)
    print(format_capacity(kv_capacity(model, gpu, cfg), model, gpu, cfg, tuple(a.seq_len)))
    return 0


def cmd_sweep(a) -> int:
    from nanosim.sweep.commands import sweep

    return sweep(a)


def cmd_report(a) -> int:
    from nanosim.report.html import write_report

    print(f"wrote {write_report(a.dir, a.out, max_curves=a.max_curves)}")
    return 0


def _real_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="qwen3-0.6b", help="preset name or local HF checkpoint dir")
    p.add_argument("--weights", default=None, help="local checkpoint dir for a preset's shapes")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--attention", default="auto", choices=["auto", "flash", "triton", "torch"])
    p.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs")
    p.add_argument("--gpu", default=None, help="GPU preset name (default: from the device)")
    p.add_argument("--out", required=True, help="output folder (profile: the JSON file)")
    p.add_argument("--no-progress", action="store_true")
    _engine_args(p)


def _simulate_parser(sub) -> None:
    from nanosim.sim.router import RouterConfig

    s = sub.add_parser("simulate", help="replay a trace against the simulated GPU")
    _workload_args(s)
    s.add_argument("--model", default="qwen3-8b")
    s.add_argument("--gpu", default="h100")
    s.add_argument("--profile", default="auto",
                   help="measured profile JSON or folder; 'auto' (default): the shipped profiles "
                        "when one matches model/GPU/tp, else the roofline; 'none': the roofline")
    s.add_argument("--profile-from", default=None, metavar="GPU",
                   help="price steps with GPU's profile, its GPU time scaled to --gpu's roofline "
                        "phase by phase and its host time kept (docs/calibration.md)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--replicas", type=int_at_least(1), default=1, help="engines behind a router")
    s.add_argument("--no-step-jitter", action="store_true",
                   help="steps take the profile's medians (default: each step's time is drawn "
                        "from the profile's recorded step-time jitter, when it has one)")
    s.add_argument("--router", default="round_robin",
                   choices=["round_robin", "least_tokens", "least_kv", "prefix"])
    r = RouterConfig()
    s.add_argument("--router-balance-abs", type=int, default=r.balance_abs_threshold,
                   help="prefix router: route by load when in-flight max - min exceeds this ...")
    s.add_argument("--router-balance-rel", type=float, default=r.balance_rel_threshold,
                   help="... and max exceeds this times min (SGLang's cache-aware thresholds)")
    s.add_argument("--router-cache-threshold", type=float, default=r.cache_threshold,
                   help="prefix router: follow the cache only when it holds more than this share "
                        "of the prompt")
    s.add_argument("--steps", choices=["rows", "summary"], default="rows", help="steps.parquet: a row "
                   "per engine step, or 'summary': a row per step kind (decode/prefill/mixed/other, per "
                   "replica) of counts, sums, peaks. Summary drops the per-step timeline (each step's start, "
                   "duration, batch shape, KV use); requests.parquet and summary.json stay the same")
    s.add_argument("--no-progress", action="store_true")
    _engine_args(s)
    s.set_defaults(func=cmd_simulate)


def _real_parsers(sub) -> None:
    r = sub.add_parser("run", help="replay a trace on a real GPU (Qwen3 runner)")
    _workload_args(r)
    _real_args(r)
    r.add_argument("--clock", default="virtual", choices=["virtual", "wall"])
    r.add_argument("--async-decode", action="store_true",
                   help="launch each steady decode step one step ahead, so the GPU does not "
                        "wait for the scheduler (needs --clock wall, tp 1, CUDA graphs)")
    r.add_argument("--temperature", type=float, default=0.0)
    r.set_defaults(func=cmd_run)

    pr = sub.add_parser("profile", help="measure step times on this GPU -> profile JSON")
    _real_args(pr)
    pr.add_argument("--reps", type=int_at_least(1), default=5, help="timed repeats per point (median)")
    pr.add_argument("--passes", type=int_at_least(1), default=4,
                    help="alternating sweeps over the grid; a point is the median of its passes")
    pr.add_argument("--prefill-passes", type=int_at_least(1), default=16,
                    help="sweeps over the points with a prefill, each timed once per visit")
    pr.set_defaults(func=cmd_profile)

    va = sub.add_parser("validate", help="real replay vs simulation of one trace on this GPU")
    _workload_args(va, suite=True)
    _real_args(va)
    va.add_argument("--profile", default=None,
                    help="profile JSON or folder for the simulator; 'auto': the shipped ones; "
                         "none given or 'none': the roofline (with --suite the default is 'auto')")
    va.add_argument("--temperature", type=float, default=0.0)
    va.add_argument("--no-step-jitter", action="store_true",
                    help="the simulated replay takes the profile's medians (step errors always do)")
    va.add_argument("--max-step-mape", type=float, default=0.03, help="fraction; exit 1 above it")
    va.add_argument("--max-latency-error", type=float, default=0.05,
                    help="fraction, on TTFT/TPOT/E2E P50 and P99; exit 1 above it")
    va.add_argument("--profile-from", default=None, metavar="GPU",
                    help="simulate with GPU's profile scaled to this GPU's roofline (cross_gpu.py)")
    from nanosim.calibrate.suite_cli import add_suite_args

    add_suite_args(va.add_argument_group("suite (with --suite)"))
    va.set_defaults(func=cmd_validate)


def _tool_parsers(sub) -> None:
    m = sub.add_parser("memory", help="KV-cache capacity of a model on a GPU")
    m.add_argument("--model", default="qwen3-8b")
    m.add_argument("--gpu", default="h100")
    m.add_argument("--seq-len", type=int_at_least(1), nargs="+", default=[1024, 4096, 16384, 32768])
    _engine_args(m)
    m.set_defaults(func=cmd_memory)

    from nanosim.workload.commands import add_trace_parser

    add_trace_parser(sub, arrival_options)


def _sweep_parsers(sub) -> None:
    w = sub.add_parser("sweep", help="run an experiment spec's points into a results store")
    w.add_argument("spec", nargs="?", help="experiment spec (experiments/*.toml)")
    w.add_argument("--out", default=None, help="results folder (default out/<spec name>)")
    w.add_argument("--workers", type=int_at_least(0), default=None,
                   help="local processes (default: all cores; 0 = run inline, for debugging)")
    w.add_argument("--ray", default=None, metavar="auto|local|ADDRESS",
                   help="run on Ray: a running cluster (auto), a new local one, or host:port")
    w.add_argument("--limit", type=int_at_least(1), default=None,
                   help="only the first N points of the spec")
    w.add_argument("--dry-run", action="store_true", help="validate and list the points")
    w.add_argument("--retry-failed", action="store_true", help="run failed points again")
    w.add_argument("--force", action="store_true",
                   help="adopt this spec in a folder made by another version of it")
    w.add_argument("--keys", action="store_true", help="list the spec keys and exit")
    w.add_argument("--no-progress", action="store_true")
    w.set_defaults(func=cmd_sweep)

    r = sub.add_parser("report", help="one self-contained HTML page of a sweep's results")
    r.add_argument("dir", help="results folder of `nanosim sweep`")
    r.add_argument("--out", default=None, help="HTML file (default DIR/report.html)")
    r.add_argument("--max-curves", type=int_at_least(1), default=8, help="curves per CDF / timeline figure")
    r.set_defaults(func=cmd_report)


def _serve_parsers(sub) -> None:
    from nanosim.serve.commands import add_parsers

    add_parsers(sub, _engine_args, _workload_args,  # builders: serve does not import the CLI
                dict(engine_config=_config, make_llm=_llm, load_requests=_load_requests))


# The subcommands each builder adds (their flags, and what the builders import, are needed only
# to parse a command line of theirs)
_BUILDERS = ((("simulate",), _simulate_parser), (("run", "profile", "validate"), _real_parsers),
             (("memory", "trace"), _tool_parsers), (("sweep", "report"), _sweep_parsers),
             (("serve", "bench"), _serve_parsers))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``command`` (a command line's first word) naming a
    subcommand, only the subcommands built with it: argparse hands the rest of the line to
    that subcommand's parser alone, so the parse is the same (a `simulate` run skips ~10 ms
    of building and importing the other commands' flags)."""
    p = OneLineParser(prog="nanosim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    known = any(command in names for names, _ in _BUILDERS)
    for names, add in _BUILDERS:
        if not known or command in names:
            add(sub)
    return p


def _warn(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"nanosim: warning: {speak_cli(str(message))}", file=sys.stderr)


def main(argv: list[str] | None = None, whole_process: bool = False) -> int:
    """Run one command line; the exit code. whole_process: this call is the process (run()),
    which ends after it: simulate freezes what exists before its replay out of the garbage
    collector (a library caller's objects are left alone)."""
    warnings.showwarning = _warn
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    args.whole_process = whole_process
    try:
        check_args(args)  # inputs and output locations, before any work
        return args.func(args)
    except (ConfigError, ValueError, OSError, RuntimeError, NotImplementedError) as e:
        print(f"nanosim {args.command}: error: {speak_cli(str(e))}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"nanosim {args.command}: error: out of host memory", file=sys.stderr)
        return 2


def run() -> None:
    """The `nanosim` command (the console script, ``python -m nanosim``): main(), then, for
    `simulate`, an exit without the interpreter's teardown. Freeing a replay's tables,
    sequences and modules object by object takes ~80 ms of a ~1 s run on the dev VM, and
    nothing is left to do: the files are written and closed, the output is flushed here,
    and the command leaves no atexit work (other commands exit as usual: pools, servers).
    simulate also runs numpy's BLAS on one thread (below)."""
    argv = sys.argv[1:]
    if argv[:1] == ["simulate"]:
        # numpy's OpenBLAS starts a thread per core when numpy is imported (~40 ms of CPU on
        # the dev VM); a replay does no linear algebra big enough to use one (the cost
        # model's fit solves a few small least-squares problems). Arrow's default allocator
        # (mimalloc in pyarrow's wheels) costs the trace read and the Parquet writes ~0.08 s
        # of system CPU on the dev VM against the C library's malloc (same bytes written).
        # A setting of the user's stays.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    rc = main(argv, whole_process=True)
    if argv[:1] == ["simulate"]:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:  # e.g. a closed pipe: the usual exit reports it
            sys.exit(rc)
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":  # pragma: no cover
    run()
