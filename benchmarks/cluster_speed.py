"""Cluster replay at scale: a million requests on 16 replicas, the whole `nanosim simulate`
process (a fresh interpreter, trace file to tables written), per router.

The trace: the Azure 2023 conversation sample (20 min, 5,985 requests) tiled end to end
until it has --requests requests, arrivals compressed --rate-scale times (64: 320 req/s, about
20 req/s, four times the recorded rate, for each of 16 qwen3-8b replicas on H100s: busy, not
saturated), each request given one of 16 shared 512-token system prompts (Zipf 1.1), so that
the prefix router has prefixes to follow. Written once as a canonical CSV (cached in --work).

    python benchmarks/cluster_speed.py [--requests 1000000] [--replicas 16]
        [--router prefix least_tokens] [--steps summary|rows] [--rate-scale 64]

Prints, per router: wall s, peak RSS (GB), requests/s (wall), simulated s per wall s, and
peak RSS per request. Targets (issue 25): <= 120 s and <= 4 GB for 1,000,000 requests.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT.parent / "shared" / "traces" / "azure2023_conv_first20min.csv"


def make_trace(n: int, rate_scale: float, path: Path) -> None:
    from nanosim.workload import load_trace, write_canonical
    from nanosim.workload.synthetic import with_system_prompts
    from nanosim.workload.transforms import concat, scale_rate

    base = load_trace(TRACE)
    tiles = -(-n // len(base))
    gap = base[-1].arrival_s / (len(base) - 1)  # one mean inter-arrival between tiles
    trace = scale_rate(concat([base] * tiles, gap_s=gap)[:n], rate_scale)
    trace = with_system_prompts(trace, num_groups=16, system_prompt_tokens=512, zipf_a=1.1)
    write_canonical(trace, path)


def run(trace: Path, out: Path, replicas: int, router: str, steps: str) -> dict:
    cmd = [sys.executable, "-m", "nanosim", "simulate", "--trace", str(trace), "--model", "qwen3-8b",
           "--gpu", "h100", "--replicas", str(replicas), "--router", router, "--steps", steps,
           "--no-progress", "--out", str(out)]
    # a fresh wrapper per run: its RUSAGE_CHILDREN peak is this run's alone
    wrap = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
            "r = resource.getrusage(resource.RUSAGE_CHILDREN); "
            "print(time.perf_counter() - t, r.ru_maxrss, r.ru_utime + r.ru_stime)")
    res = subprocess.run([sys.executable, "-c", wrap, *cmd], check=True, cwd=ROOT,
                         capture_output=True, text=True)
    wall, rss_kb, cpu = res.stdout.split()
    wall, rss_kb, cpu = float(wall), int(rss_kb), float(cpu)
    summary = json.loads((out / "summary.json").read_text())
    return {"router": router, "wall_s": wall, "cpu_s": cpu, "peak_rss_kb": rss_kb,
            "requests": summary["requests"], "finished": summary["finished"],
            "sim_end_s": summary["sim_end_s"], "engine_wall_s": summary["wall_s"],
            "steps": summary["steps"], "preemptions": summary["preemptions"],
            "prefix_cache_hit_rate": summary["prefix_cache_hit_rate"],
            "ttft_p50_s": summary["ttft_s"]["p50"], "cmd": " ".join(cmd[1:])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--replicas", type=int, default=16)
    ap.add_argument("--rate-scale", type=float, default=64.0)
    ap.add_argument("--router", nargs="+", default=["prefix", "least_tokens"])
    ap.add_argument("--steps", default="summary", choices=["summary", "rows"])
    ap.add_argument("--work", default="/tmp/nanosim_cluster_speed", help="trace and outputs")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    trace = work / f"azure_conv_tiled_{a.requests}_x{a.rate_scale:g}.csv"
    if not trace.exists():
        t0 = time.perf_counter()
        make_trace(a.requests, a.rate_scale, trace)
        print(f"wrote {trace} in {time.perf_counter() - t0:.1f} s")
    print(f"{'router':>12} {'requests':>9} {'wall s':>7} {'cpu s':>7} {'engine s':>8} {'peak GB':>7} {'req/s':>7} "
          f"{'sim/wall':>8} {'KB/req':>6} {'steps':>9} {'hit':>5} {'preempt':>7}")
    for router in a.router:
        r = run(trace, work / f"out_{router}", a.replicas, router, a.steps)
        rss = r["peak_rss_kb"]
        print(f"{router:>12} {r['requests']:9d} {r['wall_s']:7.1f} {r['cpu_s']:7.1f} {r['engine_wall_s']:8.1f} "
              f"{rss / 2**20:7.2f} {r['requests'] / r['wall_s']:7.0f} "
              f"{r['sim_end_s'] / r['wall_s']:7.1f}x "
              f"{rss / r['requests']:6.2f} {r['steps']:9d} "
              f"{r['prefix_cache_hit_rate']:5.2f} {r['preemptions']:7d}")
        print(f"{'':>12} {r['cmd']}")


if __name__ == "__main__":
    main()
