"""Replaying a trace on the real GPU, with one of two clocks.

virtual  time advances by each step's measured duration and arrivals are admitted by that
         clock: the simulator's exact semantics for one engine (core/clock.run_virtual), so a
         replay can be compared with a simulation step by step;
wall     arrivals are released in real time (time.perf_counter since the start); a step
         starts when the previous one ends, or at the next arrival when idle.
Every request generates exactly its trace's output tokens (ignore_eos).
"""
from __future__ import annotations

import time
from dataclasses import asdict

from nanosim.core.clock import run_virtual
from nanosim.core.metrics import summarize
from nanosim.gpu.backend import SamplingParams


def replay(llm, requests, clock: str = "virtual", temperature: float = 0.0, progress=None):
    """Returns (requests DataFrame, steps DataFrame, summary dict). Every request samples
    with ``temperature`` and ignores EOS. The virtual clock needs an LLM built with
    async_decode=False (a step run ahead has no duration of its own: its time overlaps the
    host's planning); the wall clock takes the LLM as built."""
    if clock not in ("virtual", "wall"):
        raise ValueError(f"clock must be 'virtual' or 'wall', not {clock!r}")
    if clock == "virtual" and llm.backend.async_decode:
        raise ValueError("the virtual clock needs an LLM built with async_decode=False "
                         "(each step's measured duration advances the clock)")
    engine = llm.engine
    sampling = SamplingParams(temperature=temperature, ignore_eos=True)
    t0 = time.perf_counter()
    if clock == "virtual":
        end = run_virtual(engine, requests, progress, sampling)
    else:
        end = _wall_clock(engine, requests, progress, sampling)
    wall = time.perf_counter() - t0
    req_df, step_df = engine.results()
    extra = {"mode": "real", "clock": clock, "model": llm.spec.name, "device": str(llm.device),
             "gpu": _device_name(llm.device), "attention_backend": llm.runner.backend.name,
             "cuda_graphs": llm.runner.graphs is not None, "async_decode": llm.backend.async_decode,
             "config": asdict(llm.cfg),
             "kv_blocks": engine.bm.num_blocks, "sim_end_s": end, "wall_s": wall}
    return req_df, step_df, summarize(req_df, step_df, engine.bm.stat_hit_tokens,
                                      engine.bm.stat_query_tokens, extra)


def _wall_clock(engine, requests, progress, sampling) -> float:
    reqs = sorted(requests, key=lambda r: (r.arrival_s, r.request_id))
    i, t0 = 0, time.perf_counter()
    now = 0.0
    while i < len(reqs) or engine.has_work:
        now = time.perf_counter() - t0
        while i < len(reqs) and reqs[i].arrival_s <= now:
            engine.add_request(reqs[i], sampling=sampling)
            i += 1
        if not engine.has_work:
            time.sleep(max(0.0, reqs[i].arrival_s - now))
            continue
        engine.step(now)
        if progress is not None:
            progress(len(engine.metrics.requests["request_id"]), now)
    return time.perf_counter() - t0


def _device_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
