"""Shared helpers of the format modules: reading, validating columns, building the trace.

Every loader validates the whole file first and builds the ``Request`` list last, so an
error leaves nothing half-loaded. Line numbers are physical, 1-based (CSV header = line 1).
"""
from __future__ import annotations

import math
from os import PathLike
from typing import Callable, Sequence

import numpy as np

from nanosim.core.request import Request
from nanosim.workload.errors import TraceError

Path_ = str | PathLike
MAX_INTEGER = 2**31 - 1  # integer cells are token counts and priorities: larger is a typo
HEAD_BYTES = 1 << 16  # format sniffing reads at most this much (a ShareGPT file is one huge line)


def read_head(path: Path_, max_lines: int = 5) -> list[str]:
    """First non-empty lines of the file (the last may be cut at HEAD_BYTES); [] if empty."""
    try:
        with open(path, "rb") as f:
            raw = f.read(HEAD_BYTES)
    except IsADirectoryError:
        raise TraceError(path, 1, "is a folder, not a trace file") from None
    except OSError as e:
        raise TraceError(path, 1, f"cannot read: {e.strerror or e}") from None
    text = raw.decode("utf-8", errors="replace").lstrip("\ufeff")
    return [ln.strip() for ln in text.splitlines() if ln.strip()][:max_lines]


def read_text(path: Path_) -> str:
    """The whole file as text (UTF-8, an optional BOM dropped); TraceError at the line of
    the first byte that is not UTF-8."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise TraceError(path, line, f"not UTF-8 text (byte {raw[e.start]:#04x})") from None


def csv_header(first_lines: list[str]) -> set[str]:
    """Column names of a CSV header line (quotes and blanks stripped)."""
    if not first_lines:
        return set()
    return {c.strip().strip('"').strip() for c in first_lines[0].split(",")}


# ----------------------------------------------------------------------------- CSV


def read_csv(path: Path_, required: Sequence[str]) -> "pd.DataFrame":
    """All cells as stripped strings; row i is on line i + 2. Checks the required columns."""
    import pandas as pd  # lazily: the simulate path's loaders need not import it

    if not read_head(path, 1):
        raise TraceError(path, 1, "empty file")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False,
                         encoding="utf-8-sig")
    except pd.errors.ParserError as e:
        line = _line_from(str(e))
        raise TraceError(path, line, f"malformed CSV row: {str(e).splitlines()[-1]}") from None
    except UnicodeDecodeError as e:
        raise TraceError(path, 1, f"not UTF-8 text ({e.reason})") from None
    except pd.errors.EmptyDataError:  # e.g. blank lines before the header
        raise TraceError(path, 1, "no CSV header on the first line") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise TraceError(path, 1, f"missing column(s) {missing}; header has {list(df.columns)}")
    df = df.apply(lambda col: col.astype(str).str.strip())
    # trailing blank lines are fine; blank lines in the middle are reported by the parsers
    nonblank = (df != "").any(axis=1).to_numpy()
    last = int(np.flatnonzero(nonblank)[-1]) + 1 if nonblank.any() else 0
    df = df.iloc[:last].copy()
    if not nonblank[:last].all():
        raise TraceError(path, int(np.argmin(nonblank[:last])) + 2, "blank line inside the data")
    if len(df) == 0:
        raise TraceError(path, 2, "no data rows (header only)")
    return df


def arrow_csv(path: Path_, types: dict, optional: Sequence[str] = ()):
    """The file as an Arrow table of the ``types`` columns (those in ``optional`` may be
    missing), parsed by Arrow's CSV reader (no pandas: ~100x faster than read_csv's checks
    on a million rows), or None when the file is anything but plain: a BOM, quotes, blank
    lines, a missing column, a cell the type does not parse, an empty cell. The loaders
    then take their checking path (read_csv), which reports the first bad line."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(b"\xef\xbb\xbf") or b'"' in raw:
        return None
    rows = raw.count(b"\n") + (0 if raw.endswith(b"\n") else 1) - 1  # lines after the header
    header = {c.strip() for c in raw.split(b"\n", 1)[0].decode("utf-8", "replace").split(",")}
    wanted = [c for c in types if c in header or c not in optional]
    try:
        table = pcsv.read_csv(pa.BufferReader(raw), convert_options=pcsv.ConvertOptions(
            column_types={c: types[c] for c in wanted}, include_columns=wanted,
            strings_can_be_null=False))
    except (pa.ArrowInvalid, KeyError):
        return None
    if table.num_rows != rows or rows == 0 or any(c.null_count for c in table.columns):
        return None  # blank lines (Arrow skips them), no rows, empty cells
    return table


def within_limits(*columns: np.ndarray) -> bool:
    """Every integer cell of a fast path's columns within MAX_INTEGER (else the checking
    path names the first one too large)."""
    return all(len(c) == 0 or int(np.abs(c).max()) <= MAX_INTEGER for c in columns)


def arrow_column(table, name: str, dtype) -> np.ndarray:
    """A column as a numpy array (Arrow's to_numpy would import pandas: pyarrow checks it)."""
    return np.array(table[name].to_pylist(), dtype=dtype)


def _line_from(msg: str) -> int:
    import re

    m = re.search(r"line (\d+)", msg)
    return int(m.group(1)) if m else 1


def csv_numbers(path: Path_, df: "pd.DataFrame", col: str, *, integer: bool,
                min_value: float | None) -> np.ndarray:
    """Column ``col`` as float64 (integer-valued if ``integer``), every cell checked.

    Raises TraceError at the first cell that is empty, not a number, NaN/inf, not an
    integer when one is needed, or below ``min_value``.
    """
    import pandas as pd

    raw = df[col]
    vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    return check_numbers(path, vals, raw.to_numpy(), col, integer=integer, min_value=min_value,
                         lines=np.arange(len(vals)) + 2)


def check_numbers(path: Path_, vals: np.ndarray, raw: Sequence, col: str, *, integer: bool,
                  min_value: float | None, lines: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(vals)
    if bad.any():
        i = int(np.argmax(bad))
        what = "empty cell" if str(raw[i]) == "" else f"{raw[i]!r} is not a finite number"
        raise TraceError(path, int(lines[i]), f"{col}: {what}")
    if integer:
        frac = vals != np.floor(vals)
        if frac.any():
            i = int(np.argmax(frac))
            raise TraceError(path, int(lines[i]), f"{col}: {raw[i]!r} is not an integer")
        big = np.abs(vals) > MAX_INTEGER
        if big.any():
            i = int(np.argmax(big))
            raise TraceError(path, int(lines[i]), f"{col}: {raw[i]!r} is too large "
                                                  f"(at most {MAX_INTEGER:,})")
    if min_value is not None:
        low = vals < min_value
        if low.any():
            i = int(np.argmax(low))
            raise TraceError(path, int(lines[i]), f"{col}: {raw[i]!r} must be >= {min_value:g}")
    return vals


def check_sorted(path: Path_, times: np.ndarray, lines: np.ndarray, col: str) -> None:
    """Timestamps must be non-decreasing (equal is fine: many traces are quantised)."""
    back = np.diff(times) < 0
    if back.any():
        i = int(np.argmax(back)) + 1
        raise TraceError(path, int(lines[i]),
                         f"{col} goes backwards ({times[i]:g} after {times[i - 1]:g} on line "
                         f"{int(lines[i - 1])}); traces must be sorted by arrival time")


# ----------------------------------------------------------------------------- JSON lines


def iter_json_lines(path: Path_):
    """Yield (line_number, object) for each non-blank line; bad JSON raises TraceError."""
    import json

    n = 0
    for lineno, line in enumerate(read_text(path).split("\n"), 1):  # physical lines
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise TraceError(path, lineno, f"bad JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(obj, dict):
            raise TraceError(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
        n += 1
        yield lineno, obj
    if n == 0:
        raise TraceError(path, 1, "empty file")


def json_number(path: Path_, lineno: int, obj: dict, key: str, *, integer: bool,
                min_value: float | None, default=None):
    """obj[key] checked like csv_numbers (bools and strings are rejected)."""
    if key not in obj or obj[key] is None:
        if default is not None:
            return default
        raise TraceError(path, lineno, f"missing key {key!r}")
    v = obj[key]
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > (MAX_INTEGER if integer
                                                                     else 2**1000):
        shown = v if abs(v) < 10**20 else f"a {len(str(abs(v)))}-digit number"
        raise TraceError(path, lineno, f"{key}: {shown} is too large")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise TraceError(path, lineno, f"{key}: {v!r} is not a finite number")
    if integer and v != int(v):
        raise TraceError(path, lineno, f"{key}: {v!r} is not an integer")
    if integer and abs(v) > MAX_INTEGER:
        raise TraceError(path, lineno, f"{key}: {v!r} is too large (at most {MAX_INTEGER:,})")
    if min_value is not None and v < min_value:
        raise TraceError(path, lineno, f"{key}: {v!r} must be >= {min_value:g}")
    return int(v) if integer else float(v)


def json_int_list(path: Path_, lineno: int, obj: dict, key: str, *, min_value: int | None = 0):
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, int) for x in v):
        raise TraceError(path, lineno, f"{key}: expected a list of integers")
    if min_value is not None and v and min(v) < min_value:
        raise TraceError(path, lineno, f"{key}: ids must be >= {min_value}")
    return tuple(v)


# ----------------------------------------------------------------------------- building


def build_trace(path: Path_, arrival: np.ndarray, prompt: np.ndarray, output: np.ndarray,
                lines: np.ndarray, *, priority: Sequence[int] | None = None,
                prefix_blocks: Sequence[tuple | None] | None = None,
                prefix_block_tokens: Sequence[int] | int = 512,
                token_ids: Sequence[tuple | None] | None = None,
                time_col: str = "arrival") -> list[Request]:
    """Validated columns -> canonical trace (ids 0..n-1, first arrival 0.0).

    ``arrival`` is in seconds, any origin; it must be sorted (checked here). Any error a
    ``Request`` raises is re-raised as a TraceError naming the row's line.
    """
    if len(arrival) == 0:
        raise TraceError(path, 1, "no requests")
    check_sorted(path, arrival, lines, time_col)
    t = (arrival - arrival[0]).tolist()
    p = prompt.astype(np.int64).tolist()
    o = output.astype(np.int64).tolist()
    n = len(t)
    prio = [0] * n if priority is None else [int(x) for x in priority]
    blocks = [None] * n if prefix_blocks is None else prefix_blocks
    btok = ([int(prefix_block_tokens)] * n if isinstance(prefix_block_tokens, (int, np.integer))
            else [int(x) for x in prefix_block_tokens])
    ids = [None] * n if token_ids is None else token_ids
    out = []
    for i in range(n):
        try:
            out.append(Request(i, t[i], p[i], o[i], prio[i], ids[i], blocks[i], btok[i]))
        except ValueError as e:
            raise TraceError(path, int(lines[i]), str(e)) from None
    return out


def synthetic_arrivals(path: Path_, n: int, *, rate_rps: float | None, seed: int,
                       arrivals: Callable[[int], Sequence[float]] | Sequence[float] | None,
                       what: str) -> np.ndarray:
    """Arrival times for a format without timestamps.

    ``rate_rps`` gives Poisson arrivals (seeded); ``arrivals`` is either a callable
    ``n -> n sorted times`` (e.g. ``functools.partial(gamma_arrivals_n, ...)``) or a sequence
    of n sorted times. Exactly one must be given.
    """
    from nanosim.workload.generators import poisson_arrivals

    if rate_rps is None and arrivals is None:
        raise TraceError(path, 1, f"{what} has no timestamps: pass rate_rps=<requests/s> "
                                  "(Poisson arrivals, seed=...) or arrivals=<callable n -> times "
                                  "or a sequence of times>")
    if rate_rps is not None and arrivals is not None:
        raise TraceError(path, 1, "pass rate_rps or arrivals, not both")
    if rate_rps is not None:
        return poisson_arrivals(rate_rps, num_requests=n, seed=seed)
    t = np.asarray(arrivals(n) if callable(arrivals) else arrivals, dtype=np.float64)
    if t.shape != (n,):
        raise TraceError(path, 1, f"arrivals gave {t.shape} times for {n} requests")
    if not np.isfinite(t).all() or (np.diff(t) < 0).any():
        raise TraceError(path, 1, "arrivals must be finite and sorted")
    return t
