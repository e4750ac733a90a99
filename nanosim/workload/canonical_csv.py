"""nanosim's canonical CSV: one request per row, the fields of ``Request``.

Columns (header names exact; extra columns are ignored):

* ``arrival_s``   seconds, >= 0, non-decreasing (made relative to the first row on load)
* ``prompt_tokens``, ``output_tokens``   integers >= 1
* ``priority``    optional integer (lower runs first), default 0
* ``prefix_blocks``   optional, space-separated content-block ids (``0 1 2``); empty = none
* ``prefix_block_tokens``   optional integer >= 1, default 512 (tokens per content block)
* ``prompt_token_ids``   optional, space-separated token ids; empty = none; if given its
  count must equal prompt_tokens

``write`` emits exactly the optional columns some request needs; ``load(write(t)) == t`` for a
canonical trace t (ids 0..n-1, first arrival 0.0).

    arrival_s,prompt_tokens,output_tokens
    0.0,131,240
"""
from __future__ import annotations

import csv
from os import PathLike

import numpy as np

from nanosim.core.request import Request
from nanosim.workload._parse import (arrow_column, arrow_csv, build_trace, csv_header, csv_numbers,
                                     read_csv, within_limits)
from nanosim.workload.errors import TraceError

NAME = "canonical_csv"
COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens")


def sniff(path, first_lines: list[str]) -> bool:
    return set(COLUMNS) <= csv_header(first_lines)


def _int_lists(path, cells, col: str, min_value: int) -> list[tuple[int, ...] | None]:
    out = []
    for i, cell in enumerate(cells):
        if cell == "":
            out.append(None)
            continue
        try:
            ids = tuple(int(x) for x in cell.split())
        except ValueError:
            raise TraceError(path, i + 2, f"{col}: {cell[:40]!r} is not space-separated "
                                          "integers") from None
        if min(ids) < min_value:
            raise TraceError(path, i + 2, f"{col}: ids must be >= {min_value}")
        out.append(ids)
    return out


def load(path) -> list[Request]:
    fast = _read_fast(path)
    if fast is not None:
        return fast
    df = read_csv(path, COLUMNS)
    lines = np.arange(len(df)) + 2
    t = csv_numbers(path, df, "arrival_s", integer=False, min_value=0)
    prompt = csv_numbers(path, df, "prompt_tokens", integer=True, min_value=1)
    output = csv_numbers(path, df, "output_tokens", integer=True, min_value=1)
    opt = {}
    if "priority" in df.columns:
        df.loc[df["priority"] == "", "priority"] = "0"
        opt["priority"] = csv_numbers(path, df, "priority", integer=True, min_value=None)
    if "prefix_blocks" in df.columns:
        opt["prefix_blocks"] = _int_lists(path, df["prefix_blocks"], "prefix_blocks", 0)
    if "prefix_block_tokens" in df.columns:
        df.loc[df["prefix_block_tokens"] == "", "prefix_block_tokens"] = "512"
        opt["prefix_block_tokens"] = csv_numbers(path, df, "prefix_block_tokens", integer=True,
                                                 min_value=1)
    if "prompt_token_ids" in df.columns:
        opt["token_ids"] = _int_lists(path, df["prompt_token_ids"], "prompt_token_ids", 0)
    return build_trace(path, t, prompt, output, lines, time_col="arrival_s", **opt)


def _read_fast(path) -> list[Request] | None:
    """The trace of a plain file (no token ids, every cell filled) read by Arrow, or None:
    load() then takes the checking path, which names the first bad line."""
    import pyarrow as pa

    table = arrow_csv(path, {"arrival_s": pa.float64(), "prompt_tokens": pa.int64(),
                             "output_tokens": pa.int64(), "priority": pa.int64(),
                             "prefix_blocks": pa.string(), "prefix_block_tokens": pa.int64()},
                      optional=("priority", "prefix_blocks", "prefix_block_tokens"))
    if table is None or "prompt_token_ids" in _header(path):
        return None
    t = arrow_column(table, "arrival_s", np.float64)
    prompt, output = (arrow_column(table, c, np.int64) for c in COLUMNS[1:])
    if not np.isfinite(t).all() or t.min() < 0 or (np.diff(t) < 0).any() or prompt.min() < 1 \
            or output.min() < 1 or not within_limits(prompt, output):
        return None
    opt = {}
    names = table.column_names
    if "priority" in names:
        opt["priority"] = arrow_column(table, "priority", np.int64)
        if not within_limits(opt["priority"]):
            return None
    if "prefix_block_tokens" in names:
        opt["prefix_block_tokens"] = arrow_column(table, "prefix_block_tokens", np.int64)
        if opt["prefix_block_tokens"].min() < 1 or not within_limits(opt["prefix_block_tokens"]):
            return None
    if "prefix_blocks" in names:
        try:
            blocks = [tuple(int(x) for x in c.split()) or None for c in table["prefix_blocks"].to_pylist()]
        except ValueError:
            return None
        if any(b is not None and min(b) < 0 for b in blocks):
            return None
        opt["prefix_blocks"] = blocks
    return build_trace(path, t, prompt.astype(np.float64), output.astype(np.float64),
                       np.arange(len(t)) + 2, time_col="arrival_s", **opt)


def _header(path) -> set[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return {c.strip() for c in f.readline().split(",")}


def write(requests: list[Request], path: str | PathLike) -> None:
    """Write requests as canonical CSV (arrival_s with repr precision: exact round trip)."""
    cols = list(COLUMNS)
    if any(r.priority != 0 for r in requests):
        cols.append("priority")
    if any(r.prefix_blocks is not None for r in requests):
        cols += ["prefix_blocks", "prefix_block_tokens"]
    if any(r.prompt_token_ids is not None for r in requests):
        cols.append("prompt_token_ids")
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(cols)
        for r in requests:
            row = [repr(float(r.arrival_s)), r.prompt_tokens, r.output_tokens]
            if "priority" in cols:
                row.append(r.priority)
            if "prefix_blocks" in cols:
                row.append(" ".join(map(str, r.prefix_blocks or ())))
                row.append(r.prefix_block_tokens)
            if "prompt_token_ids" in cols:
                row.append(" ".join(map(str, r.prompt_token_ids or ())))
            w.writerow(row)
