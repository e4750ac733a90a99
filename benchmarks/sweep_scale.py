"""Sweep scaling benchmark: a few hundred points over a 10-minute trace window.

    python benchmarks/sweep_scale.py                 # 288 points on all cores, then on 1
    python benchmarks/sweep_scale.py --no-baseline   # all cores only

Reports points per minute and parallel efficiency two ways:
  * as the runner measures it: (sum of point times in the workers / cores) / wall time;
  * against a baseline: the same sweep with one worker process (the driver then has a
    core of its own), speedup = wall(1 worker) / wall(all cores), efficiency = speedup /
    cores. This one also counts contention (the driver shares the cores with the workers).
The machine should be otherwise idle; the load average before the run is printed.
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
from pathlib import Path

from nanosim.sweep import load_spec, run_sweep
from nanosim.sweep.executors import usable_cores

REPO = Path(__file__).resolve().parents[1]
TRACE = "azure2023-conv-20min"  # registered name: nanosim trace download azure2023-conv-20min

# Qwen3-8B on H100, Azure conv trace minutes 0-10 (2,867 requests per point) at 3x-6x its
# rate (~14-29 req/s): 6 block sizes x 4 batch limits x 2 policies x 2 chunking x 3 rates
# = 288 points of ~0.3-1 s each.
SPEC = """name = "sweep-scale"
[fixed]
model = "qwen3-8b"
gpu = "h100"
trace = "{trace}"
window_s = [0, 600]
[grid]
block_size_tokens = [16, 32, 64, 128, 256, 512]
max_num_seqs = [64, 128, 256, 512]
policy = ["fcfs", "sjf"]
chunked_prefill = [true, false]
rate_scale = [3.0, 4.5, 6.0]
"""


def timed_sweep(spec, out: Path, workers: int, limit: int | None):
    """run_sweep plus the driver's own CPU seconds (collecting and writing results)."""
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    rep = run_sweep(spec, out, workers=workers, limit=limit)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    return rep, (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)


def print_run(rep, driver_cpu: float) -> None:
    n = rep.ok + rep.failed
    print(rep.format())
    print(f"  points per minute          {60 * n / rep.wall_s:.1f}")
    print(f"  mean point time (workers)  {rep.point_s / n:.3f} s")
    print(f"  driver CPU (collect+write) {driver_cpu:.1f} s = "
          f"{100 * driver_cpu / rep.wall_s:.1f}% of one core")
    print(f"  efficiency (runner)        {100 * rep.efficiency:.1f}%  "
          f"= ({rep.point_s:.1f} s / {rep.slots}) / {rep.wall_s:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=None, help="default: all usable cores")
    ap.add_argument("--limit", type=int, default=None, help="first N points only")
    ap.add_argument("--no-baseline", action="store_true", help="skip the 1-worker run")
    ap.add_argument("--keep", default=None, help="results folder to keep (default: temp)")
    a = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    spec_path = Path(tmp.name) / "sweep_scale.toml"
    spec_path.write_text(SPEC.format(trace=TRACE))
    spec = load_spec(spec_path)
    out = Path(a.keep or Path(tmp.name) / "out")
    cores = a.workers or usable_cores()
    print(f"{len(spec.points)} points, {cores} workers, load average before "
          f"{os.getloadavg()[0]:.2f}")
    rep, cpu = timed_sweep(spec, out, cores, a.limit)
    print_run(rep, cpu)
    if a.no_baseline:
        return
    print("baseline: the same points with 1 worker")
    base, cpu = timed_sweep(spec, Path(tmp.name) / "serial", 1, a.limit)
    print_run(base, cpu)
    speedup = base.wall_s / rep.wall_s
    print(f"speedup {speedup:.2f}x on {cores} cores = efficiency {100 * speedup / cores:.1f}%")


if __name__ == "__main__":
    main()
