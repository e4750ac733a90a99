"""Simulator speed: replay azure2023_conv (20 min) for qwen3-8b on h100, as recorded and with
its arrival rate scaled up until the GPU saturates. Prints simulated seconds per wall second,
engine steps per second and requests per second (wall), with request and step counts.

    python benchmarks/sim_speed.py [--trace FILE] [--profile] [--cost-profile auto]
    (--profile: cProfile top 15; --cost-profile: the profile cost model instead of the roofline)

Target (issue 3): >= 1000x real time on one core at both loads. The run is single-threaded.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from nanosim.config import EngineConfig, get_gpu, get_model
from nanosim.sim.job import build_engine
from nanosim.sim.simulator import simulate
from nanosim.workload import load_trace
from nanosim.workload.transforms import scale_rate

TRACE = "azure2023-conv-20min"  # registered name: nanosim trace download azure2023-conv-20min


def replay(reqs, fast_forward=True, profile=None):
    engine = build_engine(get_model("qwen3-8b"), get_gpu("h100"), EngineConfig(), profile)
    t0 = time.perf_counter()
    end = simulate(engine, reqs, fast_forward=fast_forward)
    wall = time.perf_counter() - t0
    req_df, steps = engine.results()
    done = req_df[req_df.rejected == ""]
    achieved = len(done) / (done.finish_s.max() - req_df.arrival_s.min())
    return dict(sim_s=end, wall_s=wall, steps=len(steps), requests=len(req_df),
                achieved_rps=achieved, offered_rps=len(reqs) / max(r.arrival_s for r in reqs),
                preemptions=int(req_df.preemptions.sum()), ttft_p50=float(done.ttft_s.median()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", default=TRACE)
    ap.add_argument("--profile", action="store_true", help="cProfile the saturated replay")
    ap.add_argument("--cost-profile", default=None,
                    help="measured profile for the cost model ('auto': shipped; default: roofline)")
    a = ap.parse_args()
    base = load_trace(a.trace)
    rows = []
    scale = 1.0
    while True:  # as recorded, then double the rate until achieved < 90% of offered
        r = replay(scale_rate(base, scale) if scale != 1 else base, profile=a.cost_profile)
        r["scale"] = scale
        rows.append(r)
        if r["achieved_rps"] < 0.9 * r["offered_rps"] or scale >= 64:
            break
        scale *= 2
    print(f"{'load':>12} {'req':>6} {'steps':>8} {'sim s':>8} {'wall s':>7} {'sim/wall':>9} "
          f"{'steps/s':>9} {'req/s':>8} {'offered':>8} {'achieved':>8} {'preempt':>7}")
    for r in rows:
        label = "as recorded" if r["scale"] == 1 else f"rate x{r['scale']:g}"
        print(f"{label:>12} {r['requests']:6d} {r['steps']:8d} {r['sim_s']:8.1f} {r['wall_s']:7.3f} "
              f"{r['sim_s'] / r['wall_s']:8.0f}x {r['steps'] / r['wall_s']:9.0f} "
              f"{r['requests'] / r['wall_s']:8.0f} {r['offered_rps']:8.2f} {r['achieved_rps']:8.2f} "
              f"{r['preemptions']:7d}")
    sat = rows[-1]
    print(f"saturated at rate x{sat['scale']:g}: {sat['sim_s'] / sat['wall_s']:.0f}x real time; "
          f"as recorded: {rows[0]['sim_s'] / rows[0]['wall_s']:.0f}x")
    if a.profile:
        reqs = scale_rate(base, sat["scale"])
        prof = cProfile.Profile()
        prof.enable()
        replay(reqs)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
