"""What `nanosim` checks before a command does any work: its flags' ranges (argparse types
that name the flag), its input files, and where it will write (nanosim.output). Every
problem is one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from nanosim.config import ConfigError
from nanosim.output import check_out_dir, check_out_file

MAX_COUNT = 2**31 - 1  # larger counts/lengths are typos (1e20 tokens), not workloads


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


def check_in_file(path: str, flag: str) -> None:
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag} {p}: is a folder, not a file")
    if not p.exists():
        raise ConfigError(f"{flag} {p}: no such file")


def check_args(a) -> None:
    """Inputs and output locations of every command, before it starts (ConfigError)."""
    cmd = a.command
    if getattr(a, "trace", None):
        check_in_file(a.trace, "--trace")
    if cmd in ("simulate", "run", "validate"):
        check_out_dir(a.out, "--out")
    elif cmd == "profile":
        check_out_file(a.out, "--out")
    elif cmd == "trace":
        check_in_file(a.file, "FILE")
        if a.action == "convert":
            if not a.out:
                raise ConfigError("give an output file: nanosim trace convert FILE OUT")
            check_out_file(a.out, "OUT", (".csv", ".jsonl"))
    elif cmd == "sweep" and a.out and not a.dry_run and not a.keys:
        check_out_dir(a.out, "--out")  # the default folder is checked once the spec is read
    elif cmd == "report":
        check_out_file(a.out or Path(a.dir) / "report.html", "--out")
