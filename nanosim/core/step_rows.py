"""The per-step table while a replay runs: one tuple per engine step and one record per
fast-forwarded decode run, turned into columns only when asked.

A step appends one tuple (one list append instead of one per column); a decode run of k steps
is kept as its counts, its start times and durations appended to two flat float arrays (C
doubles, read while the run's floats are fresh: reading 100,000s of scattered float objects
at the end costs more), and its rows are made, vectorised, when the table is built. ``columns()`` gives the whole table as numpy arrays
with the values and order that appending row by row gives; ``lists()`` moves everything into
per-column lists (for readers of ``MetricsRecorder.steps`` during a run, e.g. the server's
last-step gauges), after which recording carries on.
"""
from __future__ import annotations

from array import array
from itertools import chain

import numpy as np

# the row tuple: every steps column after ``step`` (core/metrics.py STEP_COLUMNS), in order
ROW_COLUMNS = ("start_s", "duration_s", "num_prefill_seqs", "prefill_tokens", "num_decode_seqs",
               "decode_context_tokens", "decode_max_context_tokens", "kv_blocks_used",
               "kv_blocks_total", "preemptions", "prefix_cache_requests", "prefix_cache_queries",
               "prefix_cache_hits", "prefix_cache_preempted_requests",
               "prefix_cache_preempted_queries", "prefix_cache_preempted_hits",
               "prefix_cache_hit_rate_window")
_ZERO_IN_RUNS = ("num_prefill_seqs", "prefill_tokens", "preemptions", "prefix_cache_requests",
                 "prefix_cache_queries", "prefix_cache_hits", "prefix_cache_preempted_requests",
                 "prefix_cache_preempted_queries", "prefix_cache_preempted_hits")


class StepRows:
    __slots__ = ("kv_blocks_total", "rows", "runs", "starts", "durations", "cols")

    def __init__(self, kv_blocks_total: int) -> None:
        self.kv_blocks_total = kv_blocks_total
        self.rows: list[tuple] = []  # pending steps, ROW_COLUMNS order
        # pending decode runs: (rows before it, offset of its steps in starts / durations,
        # steps, seqs, context at its first step, longest context at its first step, KV
        # blocks used per step (array) or the constant (int), windowed hit rate)
        self.runs: list[tuple] = []
        self.starts, self.durations = array("d"), array("d")  # the pending runs' steps, in order
        self.cols: dict[str, list] = {c: [] for c in ("step", *ROW_COLUMNS)}  # moved by lists()

    def add_run(self, starts, durations, num_seqs: int, context0: int,
                max_context0: int, kv_used, hit_rate: float) -> None:
        """starts, durations: lists of floats (the engine's) or float arrays (lazy_cluster's)."""
        self.runs.append((len(self.rows), len(self.starts), len(durations), num_seqs, context0,
                          max_context0, kv_used, hit_rate))
        for flat, values in ((self.starts, starts), (self.durations, durations)):
            if isinstance(values, list):
                flat.fromlist(values)
            else:
                flat.frombytes(np.ascontiguousarray(values, dtype=np.float64).tobytes())

    def __len__(self) -> int:
        return len(self.cols["step"]) + len(self.rows) + len(self.starts)

    # ---- per-column lists -------------------------------------------------------------------
    def lists(self) -> dict[str, list]:
        """Every step so far as per-column lists (the pending rows and runs moved in)."""
        if self.rows or self.runs:
            cols, i = self.cols, 0
            for run in self.runs:
                self._extend_rows(self.rows[i:run[0]])
                i = run[0]
                self._extend_run(*run[1:])
            self._extend_rows(self.rows[i:])
            self.rows, self.runs = [], []
            self.starts, self.durations = array("d"), array("d")
        return self.cols

    def _extend_rows(self, rows: list[tuple]) -> None:
        if not rows:
            return
        cols = self.cols
        n = len(cols["step"])
        cols["step"].extend(range(n, n + len(rows)))
        for c, values in zip(ROW_COLUMNS, zip(*rows)):
            cols[c].extend(values)

    def _extend_run(self, off, k, num_seqs, context0, max_context0, kv_used, hit_rate) -> None:
        s = self.cols
        n = len(s["step"])
        s["step"].extend(range(n, n + k))
        s["start_s"].extend(self.starts[off:off + k].tolist())
        s["duration_s"].extend(self.durations[off:off + k].tolist())
        s["num_decode_seqs"].extend([num_seqs] * k)
        s["decode_context_tokens"].extend(range(context0, context0 + num_seqs * k, num_seqs)
                                          if num_seqs else [0] * k)
        s["decode_max_context_tokens"].extend(range(max_context0, max_context0 + k)
                                              if num_seqs else [0] * k)
        s["kv_blocks_used"].extend([kv_used] * k if isinstance(kv_used, int) else
                                   kv_used if isinstance(kv_used, list) else kv_used.tolist())
        s["kv_blocks_total"].extend([self.kv_blocks_total] * k)
        for col in _ZERO_IN_RUNS:  # decode-only: nothing admitted or preempted
            s[col].extend([0] * k)
        s["prefix_cache_hit_rate_window"].extend([hit_rate] * k)

    # ---- numpy columns ----------------------------------------------------------------------
    def first(self, column: str):
        """The column's value in the table's first row (None: no rows)."""
        if self.cols["step"]:
            return self.cols[column][0]
        if self.runs and self.runs[0][0] == 0:
            return float(self.starts[0]) if column.endswith("_s") else None
        return self.rows[0][ROW_COLUMNS.index(column)] if self.rows else None

    def columns(self, dtypes: dict[str, type]) -> dict[str, np.ndarray]:
        """The table as {column: array of dtypes[column]}: the values lists() would hold."""
        if self.cols["step"]:
            cols = self.lists()
            return {c: np.asarray(cols[c], dtype=dtypes[c]) for c in dtypes}
        rows, runs = self.rows, self.runs
        n_rows = len(rows)
        n_run = len(self.starts)
        total = n_rows + n_run
        out = {"step": np.arange(total, dtype=dtypes["step"])}
        if not runs:
            out.update(_row_columns(rows, dtypes))
            return out
        # the runs' fields as arrays, one per field
        pos, _, ks, seqs, ctx0, max0, kvs, hits = (np.array(f) if i not in (1, 6) else f
                                                   for i, f in enumerate(zip(*runs)))
        # where each row and each run step lands: after the run steps recorded before it
        before = np.concatenate(([0], np.cumsum(ks)))  # run steps before run i (and in all)
        row_at = np.arange(n_rows, dtype=np.int64)
        row_at += before[np.searchsorted(pos, row_at, side="right")]
        run_of = np.repeat(np.arange(len(runs)), ks)  # each run step's run
        j = np.arange(n_run, dtype=np.int64) - before[:-1][run_of]  # its index in the run
        run_at = pos[run_of] + before[:-1][run_of] + j
        seqs, ctx0, max0 = seqs[run_of], ctx0[run_of], max0[run_of]
        has = seqs > 0
        # KV blocks used: one value per run where it did not change (most runs), else per step
        kv = np.repeat(np.array([v if isinstance(v, int) else 0 for v in kvs], dtype=np.int64), ks)
        for i, v in enumerate(kvs):
            if not isinstance(v, int):
                kv[before[i]:before[i + 1]] = v
        run_values = {
            "start_s": np.array(self.starts, dtype=np.float64),
            "duration_s": np.array(self.durations, dtype=np.float64),
            "num_decode_seqs": seqs,
            "decode_context_tokens": np.where(has, ctx0 + seqs * j, 0),
            "decode_max_context_tokens": np.where(has, max0 + j, 0),
            "kv_blocks_used": kv,
            "kv_blocks_total": self.kv_blocks_total,
            "prefix_cache_hit_rate_window": hits.astype(np.float64)[run_of],
        }
        by_column = _row_columns(rows, dtypes) if rows else {}
        for c in ROW_COLUMNS:
            a = np.empty(total, dtype=dtypes[c])
            if rows:
                a[row_at] = by_column[c]
            a[run_at] = run_values.get(c, 0)
            out[c] = a
        return out


def _row_columns(rows: list[tuple], dtypes: dict[str, type]) -> dict[str, np.ndarray]:
    """The step tuples as {column: array of dtypes[column]}: one float64 matrix read in one
    pass (~2x faster than an array per column of ``zip(*rows)``), its int columns cast back,
    exactly while every value is below 2**53 (token counts, blocks: far below); else per
    column."""
    m = np.fromiter(chain.from_iterable(rows), dtype=np.float64,
                    count=len(rows) * len(ROW_COLUMNS)).reshape(len(rows), len(ROW_COLUMNS))
    exact = np.abs(m) < 2.0 ** 53
    if not exact.all() and not (exact | np.isnan(m)).all():  # NaN: a float column's, kept
        return {c: np.asarray(v, dtype=dtypes[c]) for c, v in zip(ROW_COLUMNS, zip(*rows))}
    return {c: m[:, i].astype(dtypes[c]) for i, c in enumerate(ROW_COLUMNS)}
