"""Azure LLM inference traces: 2023 (Splitwise) and the 2024 week-long schema (DynamoLLM).

Columns: ``TIMESTAMP`` (arrival, wall clock), ``ContextTokens`` (prompt), ``GeneratedTokens``
(output). 2023 timestamps read ``2023-11-16 18:17:03.9799600`` (7 fractional digits, no
zone); 2024 ones carry an offset, ``...+00:00``. Timestamps are parsed exactly to integer
nanoseconds (never through a float of seconds since the epoch), then made relative to the
first request. A file must not mix zoned and zone-less timestamps.

    TIMESTAMP,ContextTokens,GeneratedTokens
    2023-11-16 18:17:03.9799600,4808,10
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from nanosim.core.request import Request
from nanosim.workload._parse import build_trace, csv_header, csv_numbers, read_csv
from nanosim.workload.errors import TraceError

NAME = "azure"
COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_TS = r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[+-]\d{2}:\d{2}|Z)?"
_ZONE = r"(?:[+-]\d{2}:\d{2}|Z)$"


def sniff(path, first_lines: list[str]) -> bool:
    return set(COLUMNS) <= csv_header(first_lines)


def load(path) -> list[Request]:
    df = read_csv(path, COLUMNS)
    lines = np.arange(len(df)) + 2
    ts = df["TIMESTAMP"]
    ok = ts.str.fullmatch(_TS).to_numpy(dtype=bool)
    if not ok.all():
        i = int(np.argmin(ok))
        raise TraceError(path, int(lines[i]), f"TIMESTAMP {ts.iloc[i]!r} is not "
                                              "'YYYY-MM-DD HH:MM:SS[.fffffff][+HH:MM]'")
    zoned = ts.str.contains(_ZONE).to_numpy(dtype=bool)
    if zoned.any() and not zoned.all():
        i = int(np.argmax(zoned != zoned[0]))
        raise TraceError(path, int(lines[i]), "TIMESTAMP mixes values with and without a time "
                                              "zone offset")
    parsed = pd.to_datetime(ts, format="ISO8601", utc=True, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise TraceError(path, int(lines[i]), f"TIMESTAMP {ts.iloc[i]!r} is not a valid date")
    ns = parsed.astype("int64").to_numpy()
    prompt = csv_numbers(path, df, "ContextTokens", integer=True, min_value=1)
    output = csv_numbers(path, df, "GeneratedTokens", integer=True, min_value=1)
    # exact: integer ns differences, one division
    seconds = (ns - ns[0]).astype(np.float64) / 1e9
    back = np.diff(ns) < 0
    if back.any():  # check on the exact integers, report with the original text
        i = int(np.argmax(back)) + 1
        raise TraceError(path, int(lines[i]), f"TIMESTAMP {ts.iloc[i]} is earlier than "
                                              f"{ts.iloc[i - 1]} on line {int(lines[i - 1])}; "
                                              "traces must be sorted by arrival time")
    return build_trace(path, seconds, prompt, output, lines, time_col="TIMESTAMP")
