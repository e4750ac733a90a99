"""BurstGPT (Azure OpenAI GPT usage at a university; Wang et al., KDD'25).

Columns: ``Timestamp`` (s since 0:00 of the first day), ``Model`` (``ChatGPT`` | ``GPT-4``),
``Request tokens``, ``Response tokens``, ``Total tokens``, ``Log Type``
(``Conversation log`` | ``API log``). ``Total tokens`` is not used.

Failed requests (``Request tokens`` = 0 or ``Response tokens`` = 0) are handled by
``failed=``:

* ``"drop"`` (default): left out; a ``TraceWarning`` says how many;
* ``"keep"``: kept, each zero count raised to 1 token (the smallest a ``Request`` allows):
  a failed request still arrives, is prefilled and takes one decode step;
* ``"error"``: TraceError at the first such row.

Filters: ``model="GPT-4"`` or a collection of names; ``log_type="Conversation log"`` likewise.
Filtering happens after validation (the whole file must be well formed) and before the
trace is rebased, so the first kept request arrives at 0.0.

    Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
    5,ChatGPT,472,18,490,Conversation log
"""
from __future__ import annotations

import warnings
from collections.abc import Collection

import numpy as np

from nanosim.core.request import Request
from nanosim.workload._parse import build_trace, check_sorted, csv_header, csv_numbers, read_csv
from nanosim.workload.errors import TraceError, TraceWarning

NAME = "burstgpt"
COLUMNS = ("Timestamp", "Request tokens", "Response tokens")
FAILED_RULES = ("drop", "keep", "error")


def sniff(path, first_lines: list[str]) -> bool:
    return set(COLUMNS) <= csv_header(first_lines)


def _as_set(x: str | Collection[str]) -> set[str]:
    return {x} if isinstance(x, str) else set(x)


def load(path, *, model: str | Collection[str] | None = None,
         log_type: str | Collection[str] | None = None, failed: str = "drop") -> list[Request]:
    if failed not in FAILED_RULES:
        raise ValueError(f"failed={failed!r}: expected one of {FAILED_RULES}")
    required = COLUMNS + (("Model",) if model is not None else ()) + \
        (("Log Type",) if log_type is not None else ())
    df = read_csv(path, required)
    lines = np.arange(len(df)) + 2
    t = csv_numbers(path, df, "Timestamp", integer=False, min_value=0)
    req = csv_numbers(path, df, "Request tokens", integer=True, min_value=0)
    resp = csv_numbers(path, df, "Response tokens", integer=True, min_value=0)
    check_sorted(path, t, lines, "Timestamp")

    keep = np.ones(len(df), dtype=bool)
    for col, want in (("Model", model), ("Log Type", log_type)):
        if want is not None:
            keep &= df[col].isin(_as_set(want)).to_numpy()
            if not keep.any():
                raise TraceError(path, 1, f"no rows left after filtering {col} in "
                                          f"{sorted(_as_set(want))}; values present: "
                                          f"{sorted(set(df[col]))}")
    zero = keep & ((req == 0) | (resp == 0))
    if zero.any():
        if failed == "error":
            i = int(np.argmax(zero))
            raise TraceError(path, int(lines[i]), "failed request (0 request or response "
                                                  "tokens); pass failed='drop' or 'keep'")
        if failed == "drop":
            keep &= ~zero
            warnings.warn(f"{path}: dropped {int(zero.sum())} failed rows (0 request or response "
                          "tokens); pass failed='keep' to keep them as 1-token requests",
                          TraceWarning, stacklevel=3)
            if not keep.any():
                raise TraceError(path, 1, "no rows left after dropping failed requests")
        else:
            req, resp = np.maximum(req, 1), np.maximum(resp, 1)
    return build_trace(path, t[keep], req[keep], resp[keep], lines[keep], time_col="Timestamp")
