"""Argparse pieces of `nanosim`: a parser whose errors are one line, flag types that check
ranges and name the flag, and the trace-reading options shared by several commands."""
from __future__ import annotations

import argparse
import math
import sys

MAX_COUNT = 2**31 - 1  # larger counts/lengths are typos (1e20 tokens), not workloads
DEFAULT_RATE_RPS = 2.0  # Poisson arrivals of --workload and of traces without timestamps


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (argparse prints the usage block first)."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def int_at_least(low: int):
    """An argparse type: an integer in [low, MAX_COUNT] ("1e3" is accepted when whole)."""
    def parse(text: str) -> int:
        try:
            v = float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if isinstance(v, float) and not (math.isfinite(v) and v == int(v)):
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer")
        v = int(v)
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low} (got {text})")
        if v > MAX_COUNT:
            raise argparse.ArgumentTypeError(f"must be <= {MAX_COUNT} (got {text})")
        return v
    parse.__name__ = f"integer >= {low}"
    return parse


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0 (got {text})")
    return v


def fraction(text: str) -> float:
    """An argparse type: a number in (0, 1]."""
    v = positive_float(text)
    if v > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (got {text})")
    return v


def add_trace_options(g) -> None:
    """--rate and --failed: how a trace is read (simulate, run, validate, trace)."""
    g.add_argument("--rate", type=positive_float, default=None,
                   help="req/s of Poisson arrivals for --workload and for traces without "
                        f"timestamps (vidur, sharegpt); default {DEFAULT_RATE_RPS}")
    g.add_argument("--failed", choices=["drop", "keep", "error"], default=None,
                   help="BurstGPT rows with 0 tokens (failed requests): drop (default), keep "
                        "as 1-token requests, or error")


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def add_config_args(g, cls) -> None:
    """One flag per field of the dataclass ``cls`` whose metadata names one (config._flag),
    with the field's default, help and kind."""
    from dataclasses import MISSING, fields

    types = {"count": int_at_least(1), "count0": int_at_least(0), "fraction": fraction}
    for f in fields(cls):
        m = f.metadata
        if "flag" not in m:
            continue
        default = None if f.default is MISSING else f.default
        if m["kind"] == "switch":
            g.add_argument(m["flag"], action=argparse.BooleanOptionalAction, default=default, help=m["help"])
        elif m["kind"] == "choice":
            g.add_argument(m["flag"], choices=list(m["choices"]), default=default, help=m["help"])
        else:
            g.add_argument(m["flag"], type=types[m["kind"]], default=default, help=m["help"])


def config_kwargs(a, cls) -> dict:
    """The fields of ``cls`` that have a flag, from parsed args ``a`` (add_config_args')."""
    from dataclasses import fields

    return {f.name: getattr(a, _dest(f.metadata["flag"])) for f in fields(cls) if "flag" in f.metadata}


def field_flags(cls) -> dict[str, str]:
    """Field name -> its flag, for the fields of ``cls`` that have one."""
    from dataclasses import fields

    return {f.name: f.metadata["flag"] for f in fields(cls) if "flag" in f.metadata}
