"""What `nanosim` checks before a command does any work: its input files and where it will
write (nanosim.output); the arrivals it assumes for traces without timestamps; library
messages put in the CLI's flags. Every problem is one line on stderr and exit code 2.
(The flags' own ranges are argparse types in cli_args.py.)"""
from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path

from nanosim.cli_args import DEFAULT_RATE_RPS, field_flags
from nanosim.config import ConfigError, EngineConfig
from nanosim.output import check_out_dir, check_out_file


def check_in_file(path: str, flag: str) -> None:
    """A trace given as a folder is refused here (a file that does not exist may be a
    registered trace name: load_trace resolves it and says when it is neither)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag} {p}: is a folder, not a trace file")


def check_args(a) -> None:
    """Inputs and output locations of every command, before it starts (ConfigError)."""
    cmd = a.command
    if getattr(a, "trace", None):
        check_in_file(a.trace, "--trace")
    if cmd in ("simulate", "run", "validate", "bench serve"):
        check_out_dir(a.out, "--out")
    elif cmd == "profile":
        check_out_file(a.out, "--out")
    elif cmd == "trace" and a.action in ("stats", "convert"):
        check_in_file(a.file, "SOURCE")
        if a.action == "convert":
            check_out_file(a.out, "OUT", (".csv", ".jsonl"))
    elif cmd == "trace" and a.action == "download" and a.dir:
        check_out_dir(a.dir, "--dir")
    elif cmd == "sweep" and a.out and not a.dry_run and not a.keys:
        check_out_dir(a.out, "--out")  # the default folder is checked once the spec is read
    elif cmd == "report":
        check_out_file(a.out or Path(a.dir) / "report.html", "--out")


# ----------------------------------------------------------------------------- arrivals

def _has_timestamps(path, fmt: str) -> bool:
    from nanosim.workload._parse import csv_header, read_head

    if fmt == "sharegpt":
        return False
    if fmt == "vidur":  # vidur's converted traces may carry arrived_at
        return "arrived_at" in csv_header(read_head(path, 1))
    return True


def arrival_options(a, path: str) -> tuple[dict, str | None]:
    """load_trace options from the flags, and for a trace without timestamps a note of the
    arrivals assumed (None when the trace has its own). Says on stderr which rate it
    assumed, and warns when --rate is given for a trace whose timestamps win."""
    import warnings

    from nanosim.workload import detect_format, resolve_trace

    file = resolve_trace(path).path
    fmt = a.format or detect_format(file)
    failed = getattr(a, "failed", None)  # callers building their own Namespace may omit it
    opts = {"failed": failed} if fmt == "burstgpt" and failed else {}
    if _has_timestamps(file, fmt):
        if a.rate is not None:
            warnings.warn(f"--rate {a.rate:g} ignored: {path} has its own arrival times "
                          "(--rate-scale scales them)")
        return opts, None
    rate = DEFAULT_RATE_RPS if a.rate is None else a.rate
    note = f"Poisson at {rate:g} req/s (--rate), seed {a.seed}"
    if a.rate is None:
        print(f"nanosim: note: {path} has no timestamps: arrivals are synthetic, Poisson at "
              f"{rate:g} req/s (the default; set it with --rate)", file=sys.stderr)
    return {**opts, "rate_rps": rate, "seed": a.seed}, note


# ----------------------------------------------------------------------------- messages

# EngineConfig field -> its flag (messages of ConfigError raised by EngineConfig)
FIELD_FLAGS = field_flags(EngineConfig)

# API wording in library messages -> the CLI's flags (the API keeps its own wording)
API_TO_FLAGS = (("pass format=... to force one", "force one with --format NAME"),
                ("pass failed='drop' or 'keep'", "use --failed drop or --failed keep"),
                ("pass failed='keep'", "use --failed keep"),
                ("device='cuda'", "--device cuda"), ("device='cpu'", "--device cpu"),
                ("pass rate_rps=<requests/s> (Poisson arrivals, seed=...) or arrivals=<callable "
                 "n -> times or a sequence of times>", "give --rate <requests/s>"))


def speak_cli(message: str) -> str:
    """A library message as the command line should say it."""
    for api, flag in API_TO_FLAGS:
        message = message.replace(api, flag)
    return message


@contextlib.contextmanager
def config_error_in_flags():
    """Re-raise EngineConfig's ConfigError with its field names as the CLI's flags."""
    try:
        yield
    except ConfigError as e:
        msg = re.sub(r"\b(" + "|".join(FIELD_FLAGS) + r")\b",
                     lambda m: FIELD_FLAGS[m.group(1)], str(e))
        raise ConfigError(msg) from None
