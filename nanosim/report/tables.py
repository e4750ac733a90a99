"""Tables derived from a results store: labels, SLO attainment and goodput, Pareto sets,
the fewest GPUs that meet an SLO. pandas only (no plotting)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nanosim.sweep.spec import Slo
from nanosim.sweep.store import ResultStore

# Short legend names of long parameter names.
SHORT = {"block_size_tokens": "block", "max_num_seqs": "seqs",
         "max_num_batched_tokens": "batch_tok", "chunked_prefill": "chunked",
         "preemption_mode": "preempt", "rate_scale": "rate_x", "enable_prefix_caching": "cache",
         "gpu_memory_utilization": "mem", "high_priority_fraction": "hi_prio"}
# Summary figures: column -> (axis title, scale to display units).
FIGURES = {"ttft_p50_s": ("TTFT p50 (ms)", 1e3), "ttft_p99_s": ("TTFT p99 (ms)", 1e3),
           "tpot_p50_s": ("TPOT p50 (ms)", 1e3), "tpot_p99_s": ("TPOT p99 (ms)", 1e3),
           "e2e_p50_s": ("E2E p50 (s)", 1.0), "e2e_p99_s": ("E2E p99 (s)", 1.0),
           "output_tok_s": ("output tokens/s", 1.0), "throughput_req_s": ("requests/s", 1.0),
           "prefix_cache_hit_rate": ("prefix-cache hit rate", 1.0),
           "preemptions": ("preemptions", 1.0), "rejected": ("rejected requests", 1.0),
           "peak_kv_usage": ("peak KV usage", 1.0), "mean_batch_size": ("mean batch (seqs)", 1.0),
           "goodput_req_s": ("goodput (req/s within SLO)", 1.0),
           "attainment": ("SLO attainment", 1.0), "gpus": ("GPUs", 1.0)}


def open_store(sweep) -> ResultStore:
    return sweep if isinstance(sweep, ResultStore) else ResultStore(Path(sweep))


def varying(store: ResultStore) -> list[str]:
    return list(store.meta["varying"])


def labels(points: pd.DataFrame, keys: list[str]) -> pd.Series:
    """'block=16, seqs=64' per row (the point id when nothing varies)."""
    if not keys:
        return points["point_id"]
    return points[keys].apply(
        lambda r: ", ".join(f"{SHORT.get(k, k)}={fmt(r[k])}" for k in keys), axis=1)


def fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def ok_points(store: ResultStore, where: dict | None = None) -> pd.DataFrame:
    """Successful points, filtered by where={param: value or [values]}, with a label."""
    pts = store.points()
    pts = pts[pts["status"] == "ok"]
    for k, v in (where or {}).items():
        pts = pts[pts[k].isin(v if isinstance(v, (list, tuple, set)) else [v])]
    pts = pts.copy()
    pts["label"] = labels(pts, [k for k in varying(store) if k not in (where or {})])
    return pts.reset_index(drop=True)


def slo_of(store: ResultStore, slo: Slo | dict | None) -> Slo:
    slo = slo if slo is not None else store.meta.get("slo")
    if slo is None:
        raise ValueError("no SLO: give slo=Slo(ttft_s, tpot_s) or add [slo] to the spec")
    return slo if isinstance(slo, Slo) else Slo(**slo)


def request_meets(req: pd.DataFrame, slo: Slo) -> pd.Series:
    """A request meets the SLO if served, TTFT <= ttft_s and TPOT <= tpot_s (a one-token
    answer has no TPOT and only needs the TTFT bound)."""
    served = (req["rejected"] == "") & req["finish_s"].notna()
    tpot_ok = req["tpot_s"].isna() | (req["tpot_s"] <= slo.tpot_s)
    return served & (req["ttft_s"] <= slo.ttft_s) & tpot_ok


def with_slo(store: ResultStore, slo=None, where: dict | None = None) -> pd.DataFrame:
    """ok_points plus attainment (fraction of ALL requests, rejected count as missed),
    goodput_req_s (requests meeting the SLO per simulated second) and meets (bool)."""
    slo = slo_of(store, slo)
    pts = ok_points(store, where)
    req = store.requests(list(pts["point_id"]))
    met = request_meets(req, slo).groupby(req["point_id"]).agg(["sum", "size"])
    pts = pts.join(met, on="point_id")
    pts["attainment"] = pts["sum"] / pts["size"]
    pts["goodput_req_s"] = pts["sum"] / pts["span_s"].where(pts["span_s"] > 0)
    pts["meets"] = pts["attainment"] >= slo.attainment
    return pts.drop(columns=["sum", "size"])


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True where no other point has x >= and y <= with one strict (maximize x, minimize
    y; e.g. throughput vs latency). NaNs are never on the frontier."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = ~(np.isnan(x) | np.isnan(y))
    for i in np.flatnonzero(keep):
        dominated = (x >= x[i]) & (y <= y[i]) & ((x > x[i]) | (y < y[i])) & keep
        keep[i] = not dominated.any()
    return keep


def fewest_gpus(table: pd.DataFrame) -> pd.Series | None:
    """The row of with_slo() that meets the SLO with the fewest GPUs (ties: higher
    attainment, then fewer replicas), or None when no point meets it."""
    ok = table[table["meets"]]
    if ok.empty:
        return None
    return ok.sort_values(["gpus", "attainment", "replicas"],
                          ascending=[True, False, True]).iloc[0]
