"""Vidur request-length tables (microsoft/vidur ``data/processed_traces/*.csv``).

Columns ``num_prefill_tokens`` (prompt) and ``num_decode_tokens`` (output); the others
(``num_total_tokens``, ``pd_ratio``) are ignored. Most tables have no timestamps, so arrivals
come from an option:

* ``rate_rps=2.0`` (and ``seed=``): Poisson arrivals;
* ``arrivals=`` a callable ``n -> n sorted times`` (e.g.
  ``lambda n: gamma_arrivals(2.0, cv=3, num_requests=n, seed=1)``) or a sequence of times.

Vidur's converted traces that do carry ``arrived_at`` (seconds, e.g. splitwise_conv.csv) use
it when neither option is given. With no timestamps and no option: TraceError.

    num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio
    3772,54,3826,69.85185185185185
"""
from __future__ import annotations

import numpy as np

from nanosim.core.request import Request
from nanosim.workload._parse import (build_trace, csv_header, csv_numbers, read_csv,
                                     synthetic_arrivals)

NAME = "vidur"
COLUMNS = ("num_prefill_tokens", "num_decode_tokens")


def sniff(path, first_lines: list[str]) -> bool:
    return set(COLUMNS) <= csv_header(first_lines)


def load(path, *, rate_rps: float | None = None, seed: int = 0, arrivals=None) -> list[Request]:
    df = read_csv(path, COLUMNS)
    lines = np.arange(len(df)) + 2
    prompt = csv_numbers(path, df, "num_prefill_tokens", integer=True, min_value=1)
    output = csv_numbers(path, df, "num_decode_tokens", integer=True, min_value=1)
    if rate_rps is None and arrivals is None and "arrived_at" in df.columns:
        t = csv_numbers(path, df, "arrived_at", integer=False, min_value=0)
        return build_trace(path, t, prompt, output, lines, time_col="arrived_at")
    t = synthetic_arrivals(path, len(df), rate_rps=rate_rps, seed=seed, arrivals=arrivals,
                           what="a vidur length table")
    return build_trace(path, t, prompt, output, lines)
