"""Simulator speed on azure2023_conv (first 20 min, 5,985 requests), qwen3-8b on h100: the
WHOLE `nanosim simulate` process as a user runs it (a fresh interpreter, command line to the
three files written; median of --runs) and the engine alone (the replay inside one process,
no imports, loading or writing; median of --engine-runs), as recorded and with arrivals
compressed x8 (saturated), with the shipped profile (the default, 'auto') and the roofline
('none').

    python benchmarks/sim_speed.py [--runs 5] [--engine-runs 3] [--scales 1 8]
        [--cost auto none] [--trace FILE] [--cprofile]

Targets (issue 25): whole process <= 0.9 s (median of 5) as recorded with the shipped profile
on the 2-core dev VM; the engine >= 1000x real time. Single-threaded.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT.parent / "shared" / "traces" / "azure2023_conv_first20min.csv"


def command(trace: str, scale: float, cost: str, out: str) -> list[str]:
    cmd = ["-m", "nanosim", "simulate", "--trace", trace, "--model", "qwen3-8b", "--gpu", "h100",
           "--out", out, "--no-progress"]
    if scale != 1:
        cmd += ["--rate-scale", f"{scale:g}"]
    if cost != "auto":
        cmd += ["--profile", cost]
    return cmd


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def whole_process(trace: str, scale: float, cost: str, runs: int) -> tuple[list[float], list[float]]:
    """(wall s, CPU s) of `python -m nanosim simulate ...`, each in a fresh interpreter. CPU
    seconds (user + system) are the steadier figure on a shared machine."""
    walls, cpus = [], []
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, *command(trace, scale, cost, out)]
        for _ in range(runs):
            c0, t0 = _children_cpu_s(), time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
            walls.append(time.perf_counter() - t0)
            cpus.append(_children_cpu_s() - c0)
    return walls, cpus


def engine_alone(reqs, cost: str) -> dict:
    from nanosim.config import EngineConfig, get_gpu, get_model
    from nanosim.sim.job import build_engine
    from nanosim.sim.simulator import simulate

    engine = build_engine(get_model("qwen3-8b"), get_gpu("h100"), EngineConfig(),
                          None if cost == "none" else cost)
    c0, t0 = time.process_time(), time.perf_counter()
    end = simulate(engine, reqs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"sim_s": end, "wall_s": wall, "cpu_s": cpu, "steps": engine.metrics.num_steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", default=str(TRACE))
    ap.add_argument("--runs", type=int, default=5, help="whole-process runs per case (median)")
    ap.add_argument("--engine-runs", type=int, default=3, help="engine-only runs per case (median)")
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 8.0])
    ap.add_argument("--cost", nargs="+", default=["auto", "none"],
                    help="cost models: auto (shipped profile, the default) and/or none (roofline)")
    ap.add_argument("--cprofile", action="store_true", help="cProfile one engine replay per case")
    a = ap.parse_args()

    from nanosim.workload import load_trace
    from nanosim.workload.transforms import scale_rate

    base = load_trace(a.trace)
    print(f"{'cost':>5} {'load':>9} {'req':>5} {'steps':>7} {'sim s':>7} | {'engine s':>8} "
          f"{'cpu s':>6} {'sim/wall':>8} | {'process s':>9} {'cpu s':>6}  (medians)  wall of each run")
    for cost in a.cost:
        for scale in a.scales:
            reqs = base if scale == 1 else scale_rate(base, scale)
            eng = [engine_alone(reqs, cost) for _ in range(a.engine_runs)]
            e = sorted(eng, key=lambda r: r["wall_s"])[len(eng) // 2]
            walls, cpus = whole_process(a.trace, scale, cost, a.runs)
            label = "recorded" if scale == 1 else f"x{scale:g}"
            cpu = statistics.median(r["cpu_s"] for r in eng)
            print(f"{cost:>5} {label:>9} {len(reqs):5d} {e['steps']:7d} {e['sim_s']:7.1f} | "
                  f"{e['wall_s']:8.3f} {cpu:6.3f} {e['sim_s'] / e['wall_s']:7.0f}x | "
                  f"{statistics.median(walls):9.3f} {statistics.median(cpus):6.3f}  "
                  f"{' '.join(f'{t:.2f}' for t in walls)}")
            print(f"{'':>5} python {' '.join(command(a.trace, scale, cost, 'OUT'))}")
            if a.cprofile:
                prof = cProfile.Profile()
                prof.enable()
                engine_alone(reqs, cost)
                prof.disable()
                pstats.Stats(prof).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
