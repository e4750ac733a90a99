"""Workload layer: trace loaders -> canonical ``Request`` lists, synthetic generators,
transforms and statistics.

    from nanosim.workload import load_trace
    trace = load_trace("traces/demo_chatbot.csv")              # a file: format sniffed
    trace = load_trace("azure2023-conv-20min[0:600]")          # a registered name + window (s)
    trace = load_trace("lengths.csv", format="vidur", rate_rps=4.0, seed=1)

Registered names (registry.py, ``nanosim trace list``) are read from the trace cache
(cache.py: $NANOSIM_TRACE_DIR or the user cache dir), filled by ``nanosim trace download``
(download.py); a name that is not there raises ``TraceNotCached`` saying how to get it.

A trace is a list[Request] sorted by arrival_s, request_id 0..n-1, first arrival 0.0.
Formats are the modules in FORMATS (each has NAME, sniff(path, first_lines), load(path,
**options)); detection asks each in order and takes the first that recognises the header /
first JSON object. Malformed input raises one ``TraceError`` ("path:line: problem").
"""
from __future__ import annotations

from os import PathLike

from nanosim.core.request import Request
from nanosim.workload import (azure, burstgpt, canonical_csv, canonical_jsonl, mooncake,
                              sharegpt, vidur)
from nanosim.workload._parse import read_head
from nanosim.workload.cache import TraceNotCached, TraceSource, resolve_trace
from nanosim.workload.errors import TraceError, TraceWarning
from nanosim.workload.transforms import time_window

# Order matters only if two sniffs accepted the same file (none do for the known formats).
FORMATS = (azure, burstgpt, vidur, canonical_csv, mooncake, canonical_jsonl, sharegpt)
FORMAT_NAMES = tuple(m.NAME for m in FORMATS)


def detect_format(path: str | PathLike) -> str:
    """Name of the format of ``path`` (by its header / first JSON object)."""
    head = read_head(path)
    if not head:
        raise TraceError(path, 1, "empty file")
    for m in FORMATS:
        if m.sniff(path, head):
            return m.NAME
    first = head[0][:80] + ("..." if len(head[0]) > 80 else "")
    raise TraceError(path, 1, f"unknown trace format (first line {first!r}); known formats: "
                              f"{', '.join(FORMAT_NAMES)}; pass format=... to force one")


def load_trace(source: str | PathLike, format: str | None = None, **options) -> list[Request]:
    """Load a trace as canonical requests. ``source``: a file, or a registered trace name;
    either may end in a window ``[start_s:end_s]`` (requests arriving in it, rebased to 0).
    ``format=`` forces a format by NAME and ``options`` go to that format's ``load`` (e.g.
    ``model=`` for burstgpt, ``rate_rps=`` for vidur/sharegpt)."""
    src = resolve_trace(source)
    name = format or detect_format(src.path)
    for m in FORMATS:
        if m.NAME == name:
            trace = m.load(src.path, **options)
            return trace if src.window_s is None else time_window(trace, *src.window_s)
    raise TraceError(src.path, 1, f"unknown format {name!r}; known formats: "
                                  f"{', '.join(FORMAT_NAMES)}")


_LAZY = {"format_stats": "stats", "trace_stats": "stats", "write_canonical": "stats",
         "make_workload": "synthetic"}


def __getattr__(name: str):
    """Statistics and synthetic workloads, imported when first asked for (loading a trace,
    the simulate command's path, needs neither)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"nanosim.workload.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FORMATS", "FORMAT_NAMES", "Request", "TraceError", "TraceNotCached", "TraceSource", "TraceWarning", "detect_format",
           "format_stats", "load_trace", "make_workload", "resolve_trace", "trace_stats", "write_canonical"]
