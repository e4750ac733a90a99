"""One simulated replay: capacity -> cost model -> engine -> SimPy -> tables + summary."""
from __future__ import annotations

import copy
import time
from dataclasses import asdict

import numpy as np

from nanosim.config import ConfigError, EngineConfig, GpuSpec, ModelSpec
from nanosim.core.engine import Engine
from nanosim.core.metrics import summarize
from nanosim.core.request import Request
from nanosim.sim.backend import SimBackend
from nanosim.sim.memory import kv_capacity
from nanosim.sim.cost_select import make_cost_model
from nanosim.sim.router import Router, RouterConfig
from nanosim.sim.simulator import simulate_cluster


def build_engine(model: ModelSpec, gpu: GpuSpec, cfg: EngineConfig, profile=None,
                 step_jitter: bool = True, replica: int = 0, step_rows: bool = True,
                 cost=None) -> Engine:
    """step_jitter: draw each step's jitter factor from the profile's, when it recorded one,
    from a stream seeded by (cfg.seed, replica): --seed reaches it, replicas differ.
    step_rows=False: aggregated step statistics instead of one row per step. cost: a fresh
    cost model to use (else made from ``profile``)."""
    cap = kv_capacity(model, gpu, cfg)
    host_blocks = cfg.swap_space_bytes // cap.block_bytes
    if cost is None:
        cost = make_cost_model(model, gpu, cfg, profile)  # the config whole: tp, block size
    return Engine(cfg, SimBackend.for_cost(cost, step_jitter, [cfg.seed, replica]),
                  cap.num_blocks, host_blocks, step_rows)


def run_simulation(requests: list[Request], model: ModelSpec, gpu: GpuSpec, cfg: EngineConfig,
                   profile=None, progress: bool = False, fast_forward: bool = True,
                   replicas: int = 1, router: str | RouterConfig = "round_robin",
                   step_jitter: bool = True, frames: bool = True, step_rows: bool = True,
                   profile_from: str | None = None):
    """Returns (requests DataFrame, steps DataFrame, summary dict). With several replicas
    both tables get a ``replica`` column and the summary a per-replica list. router: a
    policy name (default thresholds) or a RouterConfig. step_jitter: see build_engine (each
    replica draws its own stream, from cfg.seed and its index). frames=False: the tables as
    column dicts (MetricsRecorder.columns, nanosim/arrow_tables.py), no pandas.
    step_rows=False: the steps table aggregates per step kind (core/metrics.py).
    profile_from: a GPU preset whose profile prices the steps, scaled to ``gpu`` (cross_gpu.py)."""
    if replicas < 1:
        raise ConfigError(f"replicas must be >= 1 (got {replicas})")
    router = RouterConfig(router) if isinstance(router, str) else router
    # one cost model fitted (~70 ms for a profile), a shallow copy per replica: the fit and
    # grids are shared read-only (prices depend on the shape alone), each copy counts its steps
    cost = make_cost_model(model, gpu, cfg, profile, profile_from)  # the config whole: tp, block size
    engines = [build_engine(model, gpu, cfg, profile, step_jitter, replica=i,
                            step_rows=step_rows, cost=copy.copy(cost)) for i in range(replicas)]
    for e in engines:
        e.keep_finished = False  # the tables hold what finished sequences leave behind
    bar = _progress_bar(len(requests)) if progress else None
    t0 = time.perf_counter()
    end_s = simulate_cluster(engines, requests, Router(router) if replicas > 1 else None,
                             fast_forward=fast_forward,
                             progress=None if bar is None else bar.update_to)
    wall = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    req_df, step_df = _tables(engines, frames)
    cost = engines[0].backend.cost_model
    extra = {"mode": "sim", "model": model.name, "gpu": gpu.name, "config": asdict(cfg),
             "kv_blocks": engines[0].bm.num_blocks,
             "cost_model": getattr(cost, "description", cost.name),
             "step_jitter": _jitter_note(engines[0].backend.jitter, step_jitter),
             "sim_end_s": end_s, "wall_s": wall,
             "sim_speed_x": end_s / wall if wall > 0 else None}
    extrapolated = sum(getattr(e.backend.cost_model, "extrapolated_steps", 0) for e in engines)
    if extrapolated:
        # counts include decode steps predicted ahead by fast-forward and then not used, so
        # report the share, which those extra predictions barely move
        total = sum(e.backend.cost_model.total_steps for e in engines)
        extra["note"] = (f"{100 * extrapolated / total:.1f}% of predicted steps were outside the "
                         "profile's grid (extrapolated with the fitted roofline)")
    if replicas > 1:
        extra["router"] = router.policy
        extra["router_config"] = router.as_dict()
        extra["replicas"] = [_replica_summary(i, e, req_df) for i, e in enumerate(engines)]
    hits = sum(e.bm.stat_hit_tokens for e in engines)
    queries = sum(e.bm.stat_query_tokens for e in engines)
    return req_df, step_df, summarize(req_df, step_df, hits, queries, extra)


def _jitter_note(jitter, wanted: bool) -> str:
    if jitter is not None:
        return (f"drawn from the profile's step_jitter (mean factor {jitter.mean:.3f}, "
                f"p99 {jitter.quantile(0.99):.3f})")
    return "off (--no-step-jitter)" if not wanted else "none (the cost model records none)"


def _tables(engines, frames: bool = True):
    if not frames:
        cols = [e.metrics.columns() for e in engines]
        if all(r is not None for r, _ in cols):
            return cols[0] if len(engines) == 1 else _concat(cols)
    import pandas as pd

    if len(engines) == 1:
        return engines[0].results()
    reqs, steps = [], []
    for i, e in enumerate(engines):
        r, s = e.results()
        reqs.append(r.assign(replica=i))
        steps.append(s.assign(replica=i))
    req_df = pd.concat(reqs).sort_values("request_id", kind="stable").reset_index(drop=True)
    return req_df, pd.concat(steps, ignore_index=True)


def _concat(cols: list[tuple[dict, dict]]) -> tuple[dict, dict]:
    """The replicas' column dicts as one (a ``replica`` column; requests by id), as
    _tables' pandas concat orders them."""
    out = []
    for part in (0, 1):
        tables = [c[part] for c in cols]
        t = {k: (sum((tb[k] for tb in tables), []) if isinstance(v, list) else
                 np.concatenate([tb[k] for tb in tables])) for k, v in tables[0].items()}
        t["replica"] = np.repeat(np.arange(len(tables), dtype=np.int64),
                                 [len(next(iter(tb.values()))) for tb in tables])
        if part == 0:
            order = np.argsort(t["request_id"], kind="stable")
            t = {k: ([v[i] for i in order.tolist()] if isinstance(v, list) else v[order]) for k, v in t.items()}
        out.append(t)
    return out[0], out[1]


def _replica_summary(i: int, engine, req_df) -> dict:
    mine = np.asarray(req_df["replica"]) == i
    bm = engine.bm
    return {"replica": i, "requests": int(mine.sum()),
            "output_tokens": int(np.asarray(req_df["output_tokens"])[mine].sum()),
            "prefix_cache_hit_rate": bm.stat_hit_tokens / bm.stat_query_tokens if bm.stat_query_tokens else 0.0}


def _progress_bar(total: int):
    from tqdm import tqdm

    class Bar(tqdm):
        def update_to(self, done: int, sim_s: float) -> None:
            self.set_postfix_str(f"sim {sim_s:.1f}s", refresh=False)
            self.update(done - self.n)

    return Bar(total=total, unit="req", desc="simulate", mininterval=0.5)
