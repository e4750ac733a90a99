"""Sweep scaling benchmark: a few hundred points over a 10-minute trace window.

    python benchmarks/sweep_scale.py                    # 288 points, all cores
    python benchmarks/sweep_scale.py --workers 4 --keep out/bench-sweep

Reports points per minute and parallel efficiency two ways:
  * as the runner measures it: (sum of point times in the workers / cores) / wall time;
  * against a serial baseline: a sample of points rerun alone in this process gives the
    uncontended time per point, so speedup = (points x that time) / wall time, and
    efficiency = speedup / cores (contention between workers lowers this one).
The machine should be otherwise idle; the load average before the run is printed.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from nanosim.sweep import load_spec, run_sweep
from nanosim.sweep.executors import usable_cores
from nanosim.sweep.worker import Task, run_point

REPO = Path(__file__).resolve().parents[1]
TRACE = REPO.parent / "shared" / "traces" / "azure2023_conv_first20min.csv"

# Qwen3-8B on H100, Azure conv trace minutes 0-10 at 4x/6x its rate (~19/29 req/s, ~2,900
# requests per point), 6 block sizes x 4 batch limits x 2 policies x 2 chunking x 2 rates.
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
rate_scale = [4.0, 6.0]
"""


def serial_point_time(spec, k: int, seed: int = 0) -> float:
    """Median time of k random points run one at a time in this process, s."""
    sample = random.Random(seed).sample(list(spec.points), k)
    times = []
    for p in sample:
        t0 = time.perf_counter()
        run_point(Task(p, spec.paths.get(p.trace), None, spec.output))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=None, help="default: all usable cores")
    ap.add_argument("--limit", type=int, default=None, help="first N points only")
    ap.add_argument("--baseline", type=int, default=12, help="points in the serial sample")
    ap.add_argument("--keep", default=None, help="results folder to keep (default: temp)")
    a = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    spec_path = Path(tmp.name) / "sweep_scale.toml"
    spec_path.write_text(SPEC.format(trace=TRACE.as_posix()))
    spec = load_spec(spec_path)
    out = Path(a.keep or Path(tmp.name) / "out")
    cores = a.workers or usable_cores()
    print(f"{len(spec.points)} points, {cores} workers, load average before "
          f"{os.getloadavg()[0]:.2f}")

    rep = run_sweep(spec, out, workers=cores, limit=a.limit)
    n = rep.ok + rep.failed
    print(rep.format())
    print(f"points per minute          {60 * n / rep.wall_s:.1f}")
    print(f"mean point time (workers)  {rep.point_s / n:.3f} s")
    print(f"efficiency (runner)        {100 * rep.efficiency:.1f}%  "
          f"= ({rep.point_s:.1f} s / {rep.slots}) / {rep.wall_s:.1f} s")

    base = serial_point_time(spec, a.baseline)
    speedup = n * base / rep.wall_s
    print(f"serial point time (median of {a.baseline}) {base:.3f} s")
    print(f"speedup vs serial          {speedup:.2f}x on {cores} cores "
          f"= efficiency {100 * speedup / cores:.1f}%")


if __name__ == "__main__":
    main()
