"""Run one sweep point (in a pool process, a Ray task, or inline) -> a PointResult.

Never raises: any exception becomes a failed result carrying its traceback, so one bad
point cannot stop a sweep. Only the driver writes the results store.
"""
from __future__ import annotations

import functools
import json
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone

from nanosim.sweep.point import Point
from nanosim.sweep.spec import Output


@dataclass(frozen=True)
class Task:
    point: Point
    trace_path: str | None  # resolved absolute path of point.trace
    profile_path: str | None  # resolved absolute path of point.profile
    output: Output = Output()

    @property
    def point_id(self) -> str:
        return self.point.point_id


@dataclass
class PointResult:
    record: dict  # one points row (see store.points_schema)
    tables: dict = field(default_factory=dict)  # "requests"/"timeline"/"steps" -> DataFrame

    @property
    def ok(self) -> bool:
        return self.record["status"] == "ok"


def run_point(task: Task, base_requests=None) -> PointResult:
    """base_requests: the already-loaded trace (Ray ships it); else loaded here (cached)."""
    t0 = time.perf_counter()
    try:
        req_df, step_df, summary = _simulate(task, base_requests)
        tables = {"requests": req_df, "timeline": bin_steps(step_df, task.output.step_bins),
                  "steps": step_df if task.output.steps == "full" else None}
        if task.output.steps == "none":
            tables["timeline"] = None
        record = point_record(task.point, "ok", "", summary_record(summary), t0)
        return PointResult(record, tables)
    except Exception as e:  # noqa: BLE001 -- isolate the point, keep the traceback
        tb = traceback.format_exc(limit=-6)
        return PointResult(point_record(task.point, "failed", f"{type(e).__name__}: {e}\n{tb}",
                                   {}, t0))


def _simulate(task: Task, base_requests):
    from nanosim.config import get_gpu, get_model
    from nanosim.sim.job import run_simulation

    p = task.point
    reqs = build_requests(p, task.trace_path, base_requests)
    req_df, step_df, summary = run_simulation(
        reqs, get_model(p.model), get_gpu(p.gpu), p.engine_config(), task.profile_path,
        replicas=p.replicas, router=p.router_config())
    if "replica" not in req_df:  # one schema for every point
        req_df, step_df = req_df.assign(replica=0), step_df.assign(replica=0)
    return req_df, step_df, summary


def build_requests(p: Point, trace_path: str | None, base=None) -> list:
    """The point's request list: trace (window) or synthetic suite, then the transforms."""
    from nanosim.workload import make_workload
    from nanosim.workload.synthetic import with_priorities, with_system_prompts
    from nanosim.workload.transforms import sample, scale_rate, time_window

    if p.trace is not None:
        reqs = base if base is not None else load_trace_cached(trace_path, p.trace_format)
        if p.trace_window() is not None:
            reqs = time_window(reqs, *p.trace_window())
    else:
        reqs = make_workload(p.workload, p.rate_rps, num_requests=p.num_requests,
                             duration_s=p.duration_s, seed=p.seed)
    if p.sample_fraction is not None:
        reqs = sample(reqs, fraction=p.sample_fraction, seed=p.seed)
    if p.max_requests is not None:
        reqs = reqs[: p.max_requests]
    if not reqs:
        raise ValueError(f"the workload is empty ({p.source_label()}, window_s={p.window_s}, "
                         f"sample_fraction={p.sample_fraction})")
    if p.rate_scale != 1.0:
        reqs = scale_rate(reqs, p.rate_scale)
    if p.system_prompt_tokens:
        reqs = with_system_prompts(reqs, num_groups=p.system_prompt_groups,
                                   system_prompt_tokens=p.system_prompt_tokens, seed=p.seed)
    if p.high_priority_fraction:
        f = p.high_priority_fraction
        reqs = with_priorities(reqs, {0: f, 1: 1.0 - f}, seed=p.seed)
    return reqs


@functools.lru_cache(maxsize=4)
def load_trace_cached(path: str, fmt: str | None) -> list:
    """A worker process loads each trace once (requests are frozen, so sharing is safe)."""
    from nanosim.workload import load_trace

    return load_trace(path, format=fmt)


def summary_record(s: dict) -> dict:
    """run_simulation's nested summary -> the flat figures of store.SUMMARY_TYPES."""
    flat = {k: s[k] for k in ("requests", "finished", "rejected", "preemptions", "steps",
                              "throughput_req_s", "output_tok_s", "output_tokens",
                              "prefix_cache_hit_rate", "mean_batch_size", "peak_kv_usage",
                              "kv_blocks", "sim_end_s", "cost_model")}
    for m in ("ttft", "tpot", "e2e"):
        for q in ("p50", "p90", "p99", "mean"):
            flat[f"{m}_{q}_s"] = s[f"{m}_s"][q]
    flat["span_s"] = s["duration_s"]  # first arrival to last finish, simulated s
    flat["sim_wall_s"] = s["wall_s"]
    flat["note"] = s.get("note", "")
    return flat


def point_record(p: Point, status: str, error: str, summary: dict, t0: float) -> dict:
    params = p.params()
    if params["window_s"] is not None:
        params["window_s"] = json.dumps(params["window_s"])
    return {"point_id": p.point_id, "status": status, "error": error, **params,
            "gpus": p.gpus, "source": p.source_label(), **summary,
            "point_wall_s": time.perf_counter() - t0,  # whole point in the worker, s
            "worker": f"{socket.gethostname()}:{os.getpid()}",
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def bin_steps(steps, bins: int):
    """Per-step table -> at most `bins` time bins per replica (duration-weighted means).

    Columns: replica, t_s (bin start, s), width_s, steps, busy_s (sum of step durations),
    batch_size (mean seqs per step, weighted by step time), batch_size_max,
    prefill_tokens and decode_tokens (sums), kv_usage and kv_usage_max (fraction of
    blocks), kv_blocks_total. Bins without a step are absent (the engine was idle)."""
    import numpy as np
    import pandas as pd

    if steps.empty:
        return None
    t0, t1 = steps["start_s"].min(), (steps["start_s"] + steps["duration_s"]).max()
    width = max((t1 - t0) / bins, 1e-9)
    df = pd.DataFrame({
        "replica": steps["replica"],
        "bin": np.minimum(((steps["start_s"] - t0) / width).astype(np.int64), bins - 1),
        "w": steps["duration_s"],
        "batch": steps["num_prefill_seqs"] + steps["num_decode_seqs"],
        "prefill_tokens": steps["prefill_tokens"], "decode_tokens": steps["num_decode_seqs"],
        "kv": steps["kv_blocks_used"] / steps["kv_blocks_total"],
        "kv_blocks_total": steps["kv_blocks_total"]})
    df["wb"], df["wkv"] = df["w"] * df["batch"], df["w"] * df["kv"]
    g = df.groupby(["replica", "bin"], sort=True)
    out = g.agg(steps=("w", "size"), busy_s=("w", "sum"), wb=("wb", "sum"), wkv=("wkv", "sum"),
                batch_size_max=("batch", "max"), prefill_tokens=("prefill_tokens", "sum"),
                decode_tokens=("decode_tokens", "sum"), kv_usage_max=("kv", "max"),
                kv_blocks_total=("kv_blocks_total", "max")).reset_index()
    busy = out["busy_s"].where(out["busy_s"] > 0)
    out["batch_size"] = (out.pop("wb") / busy).fillna(0.0)
    out["kv_usage"] = (out.pop("wkv") / busy).fillna(out["kv_usage_max"])
    out.insert(1, "t_s", t0 + out.pop("bin") * width)
    out.insert(2, "width_s", width)
    return out
