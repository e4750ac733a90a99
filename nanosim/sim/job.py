"""One simulated replay: capacity -> cost model -> engine -> SimPy -> tables + summary."""
from __future__ import annotations

import time
from dataclasses import asdict

from nanosim.config import EngineConfig, GpuSpec, ModelSpec
from nanosim.core.engine import Engine
from nanosim.core.metrics import summarize
from nanosim.core.request import Request
from nanosim.sim.backend import SimBackend
from nanosim.sim.memory import kv_capacity
from nanosim.sim.profile import make_cost_model
from nanosim.sim.simulator import simulate


def build_engine(model: ModelSpec, gpu: GpuSpec, cfg: EngineConfig, profile=None) -> Engine:
    cap = kv_capacity(model, gpu, cfg)
    host_blocks = cfg.swap_space_bytes // cap.block_bytes
    cost = make_cost_model(model, gpu, cfg.tp, profile)
    return Engine(cfg, SimBackend(cost), cap.num_blocks, host_blocks)


def run_simulation(requests: list[Request], model: ModelSpec, gpu: GpuSpec, cfg: EngineConfig,
                   profile=None, progress: bool = False, fast_forward: bool = True):
    """Returns (requests DataFrame, steps DataFrame, summary dict)."""
    engine = build_engine(model, gpu, cfg, profile)
    bar = _progress_bar(len(requests)) if progress else None
    t0 = time.perf_counter()
    end_s = simulate(engine, requests, fast_forward=fast_forward,
                     progress=None if bar is None else bar.update_to)
    wall = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    req_df, step_df = engine.results()
    cost = engine.backend.cost_model
    extra = {"mode": "sim", "model": model.name, "gpu": gpu.name, "config": asdict(cfg),
             "kv_blocks": engine.bm.num_blocks, "cost_model": getattr(cost, "description", cost.name),
             "sim_end_s": end_s, "wall_s": wall,
             "sim_speed_x": end_s / wall if wall > 0 else None}
    if getattr(cost, "extrapolated_steps", 0):
        extra["note"] = (f"{cost.extrapolated_steps} of {cost.total_steps} predicted steps were "
                         "outside the profile's grid (extrapolated)")
    summary = summarize(req_df, step_df, engine.bm.stat_hit_tokens, engine.bm.stat_query_tokens, extra)
    return req_df, step_df, summary


def _progress_bar(total: int):
    from tqdm import tqdm

    class Bar(tqdm):
        def update_to(self, done: int, sim_s: float) -> None:
            self.set_postfix_str(f"sim {sim_s:.1f}s", refresh=False)
            self.update(done - self.n)

    return Bar(total=total, unit="req", desc="simulate", mininterval=0.5)
