"""Argument parsers and entry points of `nanosim serve` and `nanosim bench serve`
(cli.py adds them; the server stack is imported only when a command runs).

The CLI's builders reach these commands as parser defaults (``a.engine_config(a)``,
``a.make_llm(a)``, ``a.load_requests(a)``; see add_parsers), so this package never imports
nanosim.cli."""
from __future__ import annotations

import argparse


def _need_serve_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import aiohttp  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"{e.name} is missing: install the serve extra "
                           "(pip install 'nanosim[serve]')") from None


def cmd_serve(a) -> int:
    _need_serve_extra()
    if a.max_waiting < 1:
        raise ValueError("--max-waiting must be >= 1")
    if a.stream_interval < 1:
        raise ValueError("--stream-interval must be >= 1")
    if a.shutdown_timeout < 0:
        raise ValueError("--shutdown-timeout must be >= 0")
    from nanosim.serve.server import serve

    return serve(a)


def cmd_bench_serve(a) -> int:
    _need_serve_extra()
    from nanosim.output import format_summary, write_run
    from nanosim.serve.bench import BenchOptions, base_url, replay
    from nanosim.serve.bench_stats import bench_summary, tables

    if a.max_concurrency < 1:
        raise ValueError("--max-concurrency must be >= 1")
    base_url(a.endpoint)  # a malformed URL fails before the trace is read
    reqs = a.load_requests(a)
    if a.request_rate is not None:
        reqs = _retime(reqs, a.request_rate, a.burstiness, a.seed)
    if a.client_processes < 1:
        raise ValueError("--client-processes must be >= 1")
    opts = BenchOptions(a.endpoint, a.model, a.max_concurrency, a.temperature, a.timeout_s,
                        not a.no_ignore_eos, not a.no_token_ids, not a.no_progress,
                        a.client_processes)
    records, info = replay(reqs, opts)
    req_df, step_df = tables(records)
    summary = bench_summary(req_df, step_df, info, a.slo_ttft_ms / 1e3, a.slo_tpot_ms / 1e3)
    summary["source"] = a.trace or f"workload:{a.workload}"
    summary["max_concurrency"] = a.max_concurrency
    out = write_run(a.out, req_df, step_df, summary)
    print(format_summary(summary))
    itl, g = summary["itl_s"], summary["goodput"]
    if itl["p50"] is not None:
        print(f"ITL (ms)    p50 {itl['p50'] * 1e3:.1f}  p99 {itl['p99'] * 1e3:.1f}  "
              f"({summary['itl_count']} gaps)")
    print(f"goodput     {g['requests']}/{summary['requests']} requests within TTFT <= "
          f"{a.slo_ttft_ms:g} ms and TPOT <= {a.slo_tpot_ms:g} ms ({g['req_s']:.2f} req/s)")
    print(f"lateness    p50 {summary['lateness_s']['p50'] * 1e3:.2f} ms, max "
          f"{summary['lateness_s']['max'] * 1e3:.2f} ms; {summary['errors']} errors")
    print(f"wrote {out}/requests.parquet, steps.parquet (empty), summary.json")
    return 1 if summary["errors"] else 0


def _retime(reqs, rate: float, burstiness: float, seed: int):
    """vLLM bench serve's arrivals: gamma gaps (shape = burstiness) at ``rate`` req/s; inf:
    every request at t=0."""
    from dataclasses import replace

    import numpy as np

    from nanosim.workload.generators import gamma_arrivals

    if rate <= 0 or burstiness <= 0:
        raise ValueError("--request-rate and --burstiness must be > 0")
    if np.isinf(rate):
        times = np.zeros(len(reqs))
    else:
        times = gamma_arrivals(rate, 1.0 / np.sqrt(burstiness), num_requests=len(reqs), seed=seed)
        times = times - times[0]
    return [replace(r, arrival_s=float(t)) for r, t in zip(reqs, times)]


def add_parsers(sub, engine_args, workload_args, builders: dict) -> None:
    """builders: engine_config(a) -> EngineConfig, make_llm(a) -> LLM and load_requests(a)
    -> requests, from the engine / real / workload flags (cli.py's)."""
    s = sub.add_parser("serve", help="OpenAI-compatible server (real runner, or --sim)")
    s.add_argument("--sim", action="store_true", help="serve the simulated GPU (no GPU needed)")
    s.add_argument("--model", default="qwen3-0.6b", help="preset name or local HF checkpoint dir")
    s.add_argument("--weights", default=None, help="local checkpoint dir for a preset's shapes")
    s.add_argument("--tokenizer", default=None, help="dir with a tokenizer (text prompts, chat)")
    s.add_argument("--served-model-name", default=None, help="model id clients send (default --model)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--max-waiting", type=int, default=4096,
                   help="requests received and not yet running; HTTP 503 beyond it")
    s.add_argument("--stream-interval", type=int, default=1,
                   help="after the first token, stream a request's tokens every N tokens "
                        "(SGLang's option; fewer SSE events per second at large batches)")
    s.add_argument("--shutdown-timeout", type=float, default=30.0,
                   help="on SIGTERM, seconds in-flight requests may finish before they are aborted")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sim = s.add_argument_group("sim mode")
    sim.add_argument("--gpu", default="h100", help="GPU preset of the simulated GPU")
    sim.add_argument("--profile", default="auto", help="as for `nanosim simulate`")
    sim.add_argument("--speedup", type=float, default=1.0,
                     help="simulated seconds per wall second (tests: > 1)")
    sim.add_argument("--no-step-jitter", action="store_true")
    real = s.add_argument_group("real mode")
    real.add_argument("--device", default="cuda")
    real.add_argument("--dtype", default="bfloat16")
    real.add_argument("--attention", default="auto", choices=["auto", "flash", "triton", "torch"])
    real.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs")
    real.add_argument("--engine-process", action=argparse.BooleanOptionalAction, default=True,
                      help="run the engine in its own process (default: HTTP and the engine do not "
                           "share one GIL) or in the server's process (--no-engine-process)")
    real.add_argument("--step-thread", action=argparse.BooleanOptionalAction, default=True,
                      help="with --no-engine-process: engine steps in a worker thread (default) "
                           "or inline in the event loop (--no-step-thread)")
    engine_args(s)
    s.set_defaults(func=cmd_serve, **builders)

    b = sub.add_parser("bench", help="load generators")
    bsub = b.add_subparsers(dest="bench_command", required=True)
    bs = bsub.add_parser("serve", help="replay a trace against an OpenAI-compatible endpoint")
    workload_args(bs)
    bs.add_argument("--endpoint", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    bs.add_argument("--model", default=None, help="model id to send (default: the first of /v1/models)")
    bs.add_argument("--out", required=True, help="output folder")
    bs.add_argument("--request-rate", type=float, default=None,
                    help="replace the trace's arrivals by gamma arrivals at this rate (inf: all at once)")
    bs.add_argument("--burstiness", type=float, default=1.0, help="gamma shape (1: Poisson)")
    bs.add_argument("--max-concurrency", type=int, default=256, help="connections at once")
    bs.add_argument("--client-processes", type=int, default=1,
                    help="client processes sharing the requests (one event loop each)")
    bs.add_argument("--temperature", type=float, default=0.0)
    bs.add_argument("--timeout-s", type=float, default=600.0, help="per request")
    bs.add_argument("--slo-ttft-ms", type=float, default=1000.0, help="goodput SLO on TTFT")
    bs.add_argument("--slo-tpot-ms", type=float, default=100.0, help="goodput SLO on TPOT")
    bs.add_argument("--no-ignore-eos", action="store_true", help="do not send ignore_eos")
    bs.add_argument("--no-token-ids", action="store_true",
                    help="do not send return_token_ids (each chunk then counts as one token)")
    bs.add_argument("--seed", type=int, default=0)
    bs.add_argument("--no-progress", action="store_true")
    bs.set_defaults(func=cmd_bench_serve, command="bench serve", **builders)
