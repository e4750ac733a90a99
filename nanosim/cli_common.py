"""What several `nanosim` commands share: the engine flags and the config built from them,
the workload flags and the requests loaded from them (the CLI, `nanosim serve` through the
builders the CLI hands it, and `validate --suite` each run)."""
from __future__ import annotations

import argparse

from nanosim.cli_args import (DEFAULT_RATE_RPS, add_config_args, add_trace_options, config_kwargs,
                              int_at_least, positive_float)
from nanosim.cli_checks import arrival_options, config_error_in_flags
from nanosim.config import EngineConfig


def add_engine_args(p: argparse.ArgumentParser) -> None:
    add_config_args(p.add_argument_group("engine"), EngineConfig)  # flags from its fields' metadata


def engine_config(a) -> EngineConfig:
    with config_error_in_flags():  # "max_num_seqs" -> "--max-num-seqs" in its message
        return EngineConfig(**config_kwargs(a, EngineConfig))


def add_workload_args(p: argparse.ArgumentParser, suite: bool = False) -> None:
    g = p.add_argument_group("workload")
    src = g.add_mutually_exclusive_group(required=True)
    if suite:
        src.add_argument("--suite", help="suite TOML: many runs, one scorecard (docs/calibration.md)")
    src.add_argument("--trace", help="trace file (format detected by content) or registered "
                                     "name (nanosim trace list), optionally with [start_s:end_s]")
    src.add_argument("--workload", help="synthetic suite: chatbot, rag, code, summarization")
    g.add_argument("--format", default=None, help="force a trace format")
    add_trace_options(g)
    g.add_argument("--num-requests", type=int_at_least(1), default=200,
                   help="requests for --workload")
    g.add_argument("--rate-scale", type=positive_float, default=1.0,
                   help="multiply the trace's arrival rate (compress arrival times)")
    g.add_argument("--max-requests", type=int_at_least(1), default=None,
                   help="keep the first N requests")



def load_requests(a) -> list:
    from nanosim.workload import load_trace
    from nanosim.workload.transforms import scale_rate

    if a.trace:
        reqs = load_trace(a.trace, format=a.format, **arrival_options(a, a.trace)[0])
    else:
        from nanosim.workload import make_workload

        reqs = make_workload(a.workload, a.rate or DEFAULT_RATE_RPS, num_requests=a.num_requests,
                             seed=a.seed)
    if a.max_requests is not None:
        reqs = reqs[: a.max_requests]
    if a.rate_scale != 1.0:
        reqs = scale_rate(reqs, a.rate_scale)
    return reqs
