"""The per-step table while a replay runs: one tuple per engine step and one record per
fast-forwarded decode run, turned into columns only when asked.

A step appends one tuple (one list append instead of one per column); a decode run of k steps
is kept as its arrays and counts (O(1) Python work, however long the run), and its rows are
made, vectorised, when the table is built. ``columns()`` gives the whole table as numpy arrays
with the values and order that appending row by row gives; ``lists()`` moves everything into
per-column lists (for readers of ``MetricsRecorder.steps`` during a run, e.g. the server's
last-step gauges), after which recording carries on.
"""
from __future__ import annotations

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
    __slots__ = ("kv_blocks_total", "rows", "runs", "cols")

    def __init__(self, kv_blocks_total: int) -> None:
        self.kv_blocks_total = kv_blocks_total
        self.rows: list[tuple] = []  # pending steps, ROW_COLUMNS order
        # pending decode runs: (rows before it, starts, durations (lists of floats or arrays), seqs, context at its first
        # step, longest context at its first step, KV blocks used per step (array) or the
        # constant (int), windowed hit rate)
        self.runs: list[tuple] = []
        self.cols: dict[str, list] = {c: [] for c in ("step", *ROW_COLUMNS)}  # moved by lists()

    def add_run(self, starts, durations, num_seqs: int, context0: int,
                max_context0: int, kv_used, hit_rate: float) -> None:
        self.runs.append((len(self.rows), starts, durations, num_seqs, context0, max_context0,
                          kv_used, hit_rate))

    def __len__(self) -> int:
        return len(self.cols["step"]) + len(self.rows) + sum(len(r[2]) for r in self.runs)

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
        return self.cols

    def _extend_rows(self, rows: list[tuple]) -> None:
        if not rows:
            return
        cols = self.cols
        n = len(cols["step"])
        cols["step"].extend(range(n, n + len(rows)))
        for c, values in zip(ROW_COLUMNS, zip(*rows)):
            cols[c].extend(values)

    def _extend_run(self, starts, durations, num_seqs, context0, max_context0, kv_used, hit_rate) -> None:
        s, k = self.cols, len(durations)
        n = len(s["step"])
        s["step"].extend(range(n, n + k))
        s["start_s"].extend(_floats(starts))
        s["duration_s"].extend(_floats(durations))
        s["num_decode_seqs"].extend([num_seqs] * k)
        s["decode_context_tokens"].extend(range(context0, context0 + num_seqs * k, num_seqs)
                                          if num_seqs else [0] * k)
        s["decode_max_context_tokens"].extend(range(max_context0, max_context0 + k)
                                              if num_seqs else [0] * k)
        s["kv_blocks_used"].extend([kv_used] * k if isinstance(kv_used, int) else kv_used.tolist())
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
            return float(self.runs[0][1][0]) if column.endswith("_s") else None
        return self.rows[0][ROW_COLUMNS.index(column)] if self.rows else None

    def columns(self, dtypes: dict[str, type]) -> dict[str, np.ndarray]:
        """The table as {column: array of dtypes[column]}: the values lists() would hold."""
        if self.cols["step"]:
            cols = self.lists()
            return {c: np.asarray(cols[c], dtype=dtypes[c]) for c in dtypes}
        rows, runs = self.rows, self.runs
        n_rows = len(rows)
        ks = np.fromiter((len(r[2]) for r in runs), dtype=np.int64, count=len(runs))
        n_run = int(ks.sum())
        total = n_rows + n_run
        out = {"step": np.arange(total, dtype=dtypes["step"])}
        if not runs:
            for c, values in zip(ROW_COLUMNS, zip(*rows)):
                out[c] = np.asarray(values, dtype=dtypes[c])
            return out
        # where each row and each run step lands: after the run steps recorded before it
        pos = np.fromiter((r[0] for r in runs), dtype=np.int64, count=len(runs))
        before = np.concatenate(([0], np.cumsum(ks)))  # run steps before run i (and in all)
        row_at = np.arange(n_rows, dtype=np.int64)
        row_at += before[np.searchsorted(pos, row_at, side="right")]
        run_of = np.repeat(np.arange(len(runs)), ks)  # each run step's run
        j = np.arange(n_run, dtype=np.int64) - before[:-1][run_of]  # its index in the run
        run_at = pos[run_of] + before[:-1][run_of] + j
        seqs = np.fromiter((r[3] for r in runs), dtype=np.int64, count=len(runs))[run_of]
        has = seqs > 0
        ctx0 = np.fromiter((r[4] for r in runs), dtype=np.int64, count=len(runs))[run_of]
        max0 = np.fromiter((r[5] for r in runs), dtype=np.int64, count=len(runs))[run_of]
        # KV blocks used: one value per run where it did not change (most runs), else per step
        kv = np.repeat(np.fromiter((r[6] if isinstance(r[6], int) else 0 for r in runs),
                                   dtype=np.int64, count=len(runs)), ks)
        for i, r in enumerate(runs):
            if not isinstance(r[6], int):
                kv[before[i]:before[i + 1]] = r[6]
        run_values = {
            "start_s": _concat([r[1] for r in runs], n_run),
            "duration_s": _concat([r[2] for r in runs], n_run),
            "num_decode_seqs": seqs,
            "decode_context_tokens": np.where(has, ctx0 + seqs * j, 0),
            "decode_max_context_tokens": np.where(has, max0 + j, 0),
            "kv_blocks_used": kv,
            "kv_blocks_total": self.kv_blocks_total,
            "prefix_cache_hit_rate_window": np.fromiter((r[7] for r in runs), dtype=np.float64,
                                                        count=len(runs))[run_of],
        }
        by_column = dict(zip(ROW_COLUMNS, zip(*rows))) if rows else {}
        for c in ROW_COLUMNS:
            a = np.empty(total, dtype=dtypes[c])
            if rows:
                a[row_at] = np.asarray(by_column[c], dtype=dtypes[c])
            a[run_at] = run_values.get(c, 0)
            out[c] = a
        return out


def _floats(values) -> list[float]:
    """A run's starts or durations (a list of floats, or an array) as a list of floats."""
    return values if isinstance(values, list) else values.tolist()


def _concat(parts: list, n: int) -> np.ndarray:
    """The runs' starts or durations, in order, as one float64 array of n values (the
    engine's runs are lists of floats: no array per run)."""
    if all(isinstance(p, list) for p in parts):
        return np.fromiter(chain.from_iterable(parts), dtype=np.float64, count=n)
    return np.concatenate(parts)
