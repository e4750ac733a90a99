"""Per-request and per-step tables (same schema in sim and real mode) and the summary.

Steps are kept as row tuples and decode-run records while running (core/step_rows.py) and
requests as plain columns; they become numpy columns (``columns()``) or pandas DataFrames
(``frames()``) only at the end. pandas is imported lazily: the core stays importable without it.
"""
from __future__ import annotations

import math

import numpy as np

from nanosim.core.batch import StepShape
from nanosim.core.cache_stats import CachingMetrics
from nanosim.core.sequence import Sequence, Status
from nanosim.core.step_rows import StepRows

# Per step, after the shape: preemption events, the prefix-cache records of the step's
# admissions in tokens (first admissions, then re-admissions after a preemption, as vLLM's
# PrefixCacheStats splits them), and vLLM's windowed hit rate after the step.
CACHE_COLUMNS = ("prefix_cache_requests", "prefix_cache_queries", "prefix_cache_hits",
                 "prefix_cache_preempted_requests", "prefix_cache_preempted_queries",
                 "prefix_cache_preempted_hits")
STEP_COLUMNS = ("step", "start_s", "duration_s", "num_prefill_seqs", "prefill_tokens",
                "num_decode_seqs", "decode_context_tokens", "decode_max_context_tokens",
                "kv_blocks_used", "kv_blocks_total", "preemptions", *CACHE_COLUMNS,
                "prefix_cache_hit_rate_window")
FLOAT_COLUMNS = ("prefix_cache_hit_rate_window",)  # besides the times (``*_s``)
# step_rows=False: the steps table is one row per step kind (decode-only, prefill-only,
# mixed, other: swaps alone) with these aggregates; the per-step timeline is dropped
STEP_KINDS = ("decode", "prefill", "mixed", "other")
_SUMS = ("num_prefill_seqs", "prefill_tokens", "num_decode_seqs", "decode_context_tokens",
         "preemptions", *CACHE_COLUMNS)
STEP_SUMMARY_COLUMNS = ("kind", "steps", "duration_s", "max_duration_s", *_SUMS,
                        "max_kv_blocks_used", "kv_blocks_total", "first_start_s", "last_end_s")
REQUEST_COLUMNS = ("request_id", "arrival_s", "first_token_s", "finish_s", "prompt_tokens",
                   "output_tokens", "cached_prompt_tokens", "preemptions", "rejected",
                   "ttft_s", "tpot_s", "e2e_s")


class MetricsRecorder:
    def __init__(self, kv_blocks_total: int, step_rows: bool = True) -> None:
        self.kv_blocks_total = kv_blocks_total
        self.step_rows = step_rows
        self._steps = StepRows(kv_blocks_total)
        self.requests: dict[str, list] = {c: [] for c in REQUEST_COLUMNS}
        self._request_lists = [self.requests[c] for c in REQUEST_COLUMNS]
        self.num_steps = 0
        self.window = CachingMetrics()
        # step_rows=False, per kind: [steps, duration sum, longest, *_SUMS, most KV used,
        # first start, last end]
        self._agg = {k: [0, 0.0, 0.0] + [0] * len(_SUMS) + [0, math.inf, -math.inf] for k in STEP_KINDS}

    @property
    def steps(self) -> dict[str, list]:
        """The per-step table so far as {column: list} (step_rows=True)."""
        return self._steps.lists()

    def record_step(self, start_s: float, duration_s: float, shape: StepShape, kv_used: int,
                    preemptions: int = 0, cache: tuple[int, ...] = (0,) * 6,
                    cache_reset: bool = False) -> None:
        """cache: the step's PrefixCacheStats deltas in CACHE_COLUMNS order; cache_reset: the
        prefix cache was reset since the previous step (the window restarts)."""
        if not self.step_rows:
            p, d = shape.num_prefill_seqs, shape.num_decode_seqs
            a = self._agg["mixed" if p and d else "prefill" if p else "decode" if d else "other"]
            a[0] += 1
            a[1] += duration_s
            a[2] = max(a[2], duration_s)
            for i, v in enumerate((p, shape.prefill_tokens, d, shape.decode_context_tokens,
                                   preemptions, *cache), 3):
                a[i] += v
            a[-3] = max(a[-3], kv_used)
            a[-2] = min(a[-2], start_s)
            a[-1] = max(a[-1], start_s + duration_s)
            self.num_steps += 1
            return
        w = self.window
        if cache[0] or cache_reset:  # else the window does not change
            w.observe(cache[0], cache[1], cache[2], reset=cache_reset)
        self._steps.rows.append((
            start_s, duration_s, shape.num_prefill_seqs, shape.prefill_tokens,
            shape.num_decode_seqs, shape.decode_context_tokens, shape.decode_max_context_tokens,
            kv_used, self.kv_blocks_total, preemptions, *cache,
            w.hits / w.queries if w.queries else 0.0))  # w.hit_rate, inline (every step)
        self.num_steps += 1

    def record_decode_run(self, starts, durations, num_seqs: int, context0: int,
                          max_context0: int, kv_used: list[int] | np.ndarray | int) -> None:
        """k decode-only steps at once; starts, durations: lists of floats or float arrays;
        context grows by num_seqs per step, the longest sequence's by 1; kv_used: blocks in
        use at each step, or an int for all of them."""
        k = len(durations)
        if not self.step_rows:
            a = self._agg["decode"]
            a[0] += k
            a[1] += float(np.sum(durations))
            a[2] = max(a[2], float(np.max(durations)))
            a[5] += num_seqs * k  # num_decode_seqs, decode_context_tokens (an arithmetic series)
            a[6] += context0 * k + num_seqs * (k * (k - 1) // 2)
            a[-3] = max(a[-3], kv_used if isinstance(kv_used, int) else int(max(kv_used)))
            a[-2] = min(a[-2], float(starts[0]))
            a[-1] = max(a[-1], float(starts[-1] + durations[-1]))
            self.num_steps += k
            return
        self._steps.add_run(starts, durations, num_seqs, context0, max_context0, kv_used,
                            self.window.hit_rate)
        self.num_steps += k

    def record_request(self, seq: Sequence) -> None:
        r = seq.req
        done = seq.status is Status.FINISHED
        out = seq.num_output_tokens if done else 0
        ttft = seq.first_token_s - r.arrival_s if seq.first_token_s is not None else math.nan
        e2e = seq.finish_s - r.arrival_s if done else math.nan
        tpot = (seq.finish_s - seq.first_token_s) / (out - 1) if done and out > 1 else math.nan
        for col, v in zip(self._request_lists, (  # REQUEST_COLUMNS order
                r.request_id, r.arrival_s,
                seq.first_token_s if seq.first_token_s is not None else math.nan,
                seq.finish_s if done else math.nan, r.prompt_tokens, out, seq.num_cached_tokens,
                seq.num_preemptions, seq.reject_reason, ttft, tpot, e2e)):
            col.append(v)

    def frames(self):
        import pandas as pd

        req = pd.DataFrame(self.requests, columns=list(REQUEST_COLUMNS))
        req = req.sort_values("request_id", kind="stable").reset_index(drop=True)
        if not self.step_rows:
            return req, pd.DataFrame(self.step_summary())
        steps = pd.DataFrame(self.steps, columns=list(STEP_COLUMNS))
        return req, steps

    def step_summary(self) -> dict:
        """The aggregated steps table (step_rows=False): the kinds that occurred, in
        STEP_KINDS order, as {column: array} (``kind``: a list of str)."""
        rows = [(k, a) for k, a in self._agg.items() if a[0]]
        vals = [[k] + a[:-3] + [a[-3], self.kv_blocks_total] + a[-2:] for k, a in rows]
        return {c: [v[i] for v in vals] if c == "kind" else
                np.asarray([v[i] for v in vals], dtype=np.float64 if c.endswith("_s") else np.int64)
                for i, c in enumerate(STEP_SUMMARY_COLUMNS)}

    def columns(self) -> tuple[dict, dict]:
        """(requests, steps) as {column: numpy array} (``rejected``: a list of str), the
        same values and dtypes as frames() gives, without pandas. Requests are sorted by id
        (stable). Empty tables: None (frames() types their columns as object)."""
        if not self.step_rows:
            if not self.requests["request_id"] or not self.num_steps:
                return None, None
            req = _arrays(self.requests, REQUEST_COLUMNS)
            order = np.argsort(req["request_id"], kind="stable")
            return ({c: ([v[i] for i in order.tolist()] if c == "rejected" else v[order])
                     for c, v in req.items()}, self.step_summary())
        steps = self._steps
        if not self.requests["request_id"] or not self.num_steps or not all(
                isinstance(self.requests[c][0], float) for c in REQUEST_COLUMNS if c.endswith("_s")
        ) or not all(isinstance(steps.first(c), float) for c in STEP_COLUMNS if c.endswith("_s")):
            return None, None  # edge cases (empty, int times): frames() types them
        req = _arrays(self.requests, REQUEST_COLUMNS)
        order = np.argsort(req["request_id"], kind="stable")
        req = {c: ([v[i] for i in order.tolist()] if c == "rejected" else v[order]) for c, v in req.items()}
        return req, steps.columns({c: _dtype(c) for c in STEP_COLUMNS})


def _arrays(cols: dict[str, list], names) -> dict:
    """Lists -> arrays: times (``*_s``, floats or NaN) and FLOAT_COLUMNS float64, counts
    int64, as pandas infers them; the str column ``rejected`` stays a list."""
    return {c: cols[c] if c == "rejected" else np.asarray(cols[c], dtype=_dtype(c)) for c in names}


def _dtype(column: str) -> type:
    return np.float64 if column.endswith("_s") or column in FLOAT_COLUMNS else np.int64


def _pct(values: np.ndarray) -> dict:
    v = values[~np.isnan(values)]
    if len(v) == 0:
        return {"p50": None, "p90": None, "p99": None, "mean": None}
    p50, p90, p99 = percentiles(v, (50, 90, 99))
    return {"p50": p50, "p90": p90, "p99": p99, "mean": float(v.mean())}


def percentiles(v: np.ndarray, qs) -> list[float]:
    """np.percentile(v, qs) for a float array without NaN, by the same float operations
    (numpy's default "linear" method: index (n - 1) q / 100 in the sorted values, then
    _lerp's two-sided interpolation), without np.percentile's call of np.unique, which
    imports numpy.ma (~7 ms at start-up)."""
    s = np.sort(v).tolist()
    n, out = len(s), []
    for q in qs:
        at = (n - 1) * (q / 100)
        i = int(math.floor(at)) if at < n - 1 else -1  # past the last index: the last value
        g = at - i  # numpy's gamma, against the index it takes (-1 included)
        a, b = s[i], s[i + 1 if i >= 0 else -1]
        d = b - a
        out.append(b - d * (1 - g) if g >= 0.5 else a + d * g)
    return out


def summarize(requests, steps, hit_tokens: int, query_tokens: int, extra: dict | None = None) -> dict:
    """Headline figures of one run: requests/steps are the DataFrames from frames() or the
    column dicts from columns() (the same floats either way: numpy does the sums)."""
    rej = np.asarray(requests["rejected"], dtype=object) == ""
    fin = np.asarray(requests["finish_s"], dtype=np.float64)
    done = rej & ~np.isnan(fin)
    n_done = int(done.sum())
    col = lambda c: np.asarray(steps[c])  # noqa: E731
    if "kind" in steps:  # aggregated (step_rows=False): the same figures from exact int sums
        n_steps = int(col("steps").sum())
        batch = ((int(col("num_prefill_seqs").sum()) + int(col("num_decode_seqs").sum())) / n_steps
                 if n_steps else 0.0)
        peak = float((col("max_kv_blocks_used") / col("kv_blocks_total")).max()) if n_steps else 0.0
    else:
        n_steps = len(steps["step"])
        # pandas' mean of an int column: a float64 sum over the count
        batch = float((col("num_prefill_seqs") + col("num_decode_seqs")).sum(dtype=np.float64)
                      / n_steps) if n_steps else 0.0
        peak = float((col("kv_blocks_used") / col("kv_blocks_total")).max()) if n_steps else 0.0
    span = float(fin[done].max() - np.asarray(requests["arrival_s"]).min()) if n_done else 0.0
    out_tokens = int(np.asarray(requests["output_tokens"])[done].sum())
    summary = {
        "requests": int(len(fin)),
        "finished": n_done,
        "rejected": int((~rej).sum()),
        "preemptions": int(np.asarray(requests["preemptions"]).sum()),
        "preempted_requests": int((np.asarray(requests["preemptions"]) > 0).sum()),
        "steps": n_steps,
        "duration_s": span,
        "throughput_req_s": n_done / span if span > 0 else 0.0,
        "output_tok_s": out_tokens / span if span > 0 else 0.0,
        "output_tokens": out_tokens,
        "prefix_cache_hit_rate": hit_tokens / query_tokens if query_tokens else 0.0,
        **{c: int(col(c).sum()) for c in CACHE_COLUMNS},
        "ttft_s": _pct(np.asarray(requests["ttft_s"], dtype=np.float64)[done]),
        "tpot_s": _pct(np.asarray(requests["tpot_s"], dtype=np.float64)[done]),
        "e2e_s": _pct(np.asarray(requests["e2e_s"], dtype=np.float64)[done]),
        "mean_batch_size": batch,
        "peak_kv_usage": peak,
    }
    if extra:
        summary.update(extra)
    return summary
