"""Tables and summary of a `nanosim bench serve` run, in `nanosim simulate`'s schema
(requests.parquet with REQUEST_COLUMNS, steps.parquet with STEP_COLUMNS but no rows, since a
client sees no engine steps, and summary.json from core.metrics.summarize) plus client-only
columns and figures: send time, lateness, per-chunk times; the ITL distribution and goodput.

ITL here is vLLM bench serve's: every gap between consecutive token-carrying chunks of a
request, pooled over requests. Goodput (DistServe's definition, as vLLM's --goodput): finished
requests with TTFT <= slo_ttft_s and TPOT <= slo_tpot_s, per second of the run.
"""
from __future__ import annotations

import math

import numpy as np

from nanosim.core.metrics import REQUEST_COLUMNS, STEP_COLUMNS, _pct, summarize


def tables(records):
    import pandas as pd

    rows = []
    for r in records:
        ok = not r.error and r.chunk_times_s
        first = r.chunk_times_s[0] if ok else math.nan
        last = r.chunk_times_s[-1] if ok else math.nan
        out = r.output_tokens if ok else 0
        rows.append({
            "request_id": r.request_id, "arrival_s": r.arrival_s, "first_token_s": first,
            "finish_s": last, "prompt_tokens": r.prompt_tokens, "output_tokens": out,
            "cached_prompt_tokens": r.cached_tokens, "preemptions": 0,
            "rejected": r.error if r.error else ("" if ok else "no tokens received"),
            "ttft_s": first - r.send_s, "tpot_s": (last - first) / (out - 1) if out > 1 else math.nan,
            "e2e_s": last - r.send_s,
            "send_s": r.send_s, "lateness_s": r.send_s - r.arrival_s, "max_tokens": r.max_tokens,
            "chunk_times_s": list(r.chunk_times_s), "chunk_tokens": list(r.chunk_tokens)})
    cols = list(REQUEST_COLUMNS) + ["send_s", "lateness_s", "max_tokens", "chunk_times_s", "chunk_tokens"]
    req = pd.DataFrame(rows, columns=cols).sort_values("request_id", kind="stable").reset_index(drop=True)
    steps = pd.DataFrame({c: [] for c in STEP_COLUMNS})
    return req, steps


def bench_summary(req, steps, info: dict, slo_ttft_s: float, slo_tpot_s: float) -> dict:
    gaps = [np.diff(np.asarray(t)) for t in req["chunk_times_s"] if len(t) > 1]
    itl = np.concatenate(gaps) if gaps else np.array([])
    done = req[req["rejected"] == ""]
    tpot = done["tpot_s"].fillna(0.0)  # one-token requests meet any TPOT SLO
    good = int(((done["ttft_s"] <= slo_ttft_s) & (tpot <= slo_tpot_s)).sum())
    span = float(done["finish_s"].max() - req["arrival_s"].min()) if len(done) else 0.0
    late = req["lateness_s"].to_numpy(float)
    errors = req.loc[req["rejected"] != "", "rejected"]
    extra = {
        "mode": "bench", **info,
        "itl_s": _pct(itl), "itl_count": int(len(itl)),
        "tpot_definition": "(last token chunk - first token chunk) / (output tokens - 1) per "
                           "request, as vLLM bench serve's TPOT (GuideLLM calls it ITL)",
        "goodput": {"slo_ttft_s": slo_ttft_s, "slo_tpot_s": slo_tpot_s, "requests": good,
                    "fraction": good / len(req) if len(req) else 0.0,
                    "req_s": good / span if span > 0 else 0.0},
        "lateness_s": {"p50": float(np.median(late)) if len(late) else None,
                       "p99": float(np.percentile(late, 99)) if len(late) else None,
                       "max": float(late.max()) if len(late) else None},
        "errors": int(len(errors)), "first_errors": errors.head(3).tolist(),
    }
    hits = int(done["cached_prompt_tokens"].sum())
    queries = int(done["prompt_tokens"].sum())
    return summarize(req, steps, hits, queries, extra)
