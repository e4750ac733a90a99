"""Re-run the simulated half of a `nanosim validate` output on the CPU, against its recorded
real replay: a changed cost model, or another profile, scored on the same measured requests
without a GPU. The real side (real_requests.parquet) is not re-run; the simulation is, with
the cost model as the code now builds it.

    python benchmarks/resimulate.py OUT/medium [OUT/light ...] --profile P [--trace FILE]
        [--no-step-jitter]

Per directory: the recorded latency errors (sim - real) / real at p50 / p99, then those of
the re-run. With the cost model and profile the validation used, the two rows are equal
(the simulation is deterministic, its step jitter seeded). validation.json carries the
engine config, KV blocks and workload flags; for outputs written before it did, give
them (--rate-scale, --max-requests, --num-kv-blocks; the engine defaults otherwise, with
--max-model-len). --trace: the trace file, when the recorded path (relative to the GPU
machine's working directory) does not exist here; a --workload suite is made again from
the recorded flags.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

STATS = ("p50", "p99")


def requests_for(meta: dict, a) -> list:
    from nanosim.cli import _load_requests

    w = dict(meta.get("workload") or {})
    for k in ("rate_scale", "max_requests"):
        if getattr(a, k) is not None:
            w[k] = getattr(a, k)
    trace, workload = a.trace or meta["trace"], None
    if trace.startswith("workload:") and not a.trace:  # a synthetic suite: made again, seeded
        trace, workload = None, trace.split(":", 1)[1]
    elif not Path(trace).exists():
        raise SystemExit(f"trace {trace!r} not found here: pass --trace FILE")
    ns = argparse.Namespace(trace=trace, workload=workload, format=w.get("format"), rate=w.get("rate"),
                            seed=w.get("seed", 0), num_requests=w.get("num_requests", 200),
                            max_requests=w.get("max_requests", meta.get("requests")),
                            rate_scale=w.get("rate_scale", 1.0))
    return _load_requests(ns)


def resimulate(vdir: Path, a) -> tuple[dict, dict]:
    """(recorded, re-run) latency errors {metric_stat: fraction} of one validate output."""
    from nanosim.calibrate.profile import gpu_preset
    from nanosim.calibrate.validate import latency_errors
    from nanosim.config import EngineConfig, get_gpu, get_model
    from nanosim.core.engine import Engine
    from nanosim.sim.backend import SimBackend
    from nanosim.sim.memory import kv_capacity
    from nanosim.sim.cost_select import make_cost_model
    from nanosim.sim.simulator import simulate

    meta = json.loads((vdir / "validation.json").read_text())
    model, gpu = get_model(meta["model"]), get_gpu(gpu_preset(meta["gpu"]))
    eng = dict(meta.get("engine") or {"max_model_len": a.max_model_len})
    if a.num_kv_blocks is not None:
        eng["num_kv_blocks"] = a.num_kv_blocks
    cfg = EngineConfig(**eng)
    kv = meta.get("kv_blocks") or {}  # the real replay's blocks, else the config's or derived
    blocks = kv.get("gpu") or cfg.num_kv_blocks or kv_capacity(model, gpu, cfg).num_blocks
    host = kv.get("host", 0)
    if "engine" not in meta:  # older records: tp only
        cfg = cfg.with_(tp=meta.get("tp", 1))
    cost = make_cost_model(model, gpu, cfg, a.profile)  # the config whole: tp, block size
    jitter = meta.get("step_jitter", True) and not a.no_step_jitter
    engine = Engine(cfg, SimBackend.for_cost(cost, jitter, [cfg.seed, 0]), blocks, host)
    simulate(engine, requests_for(meta, a))
    sim, _ = engine.results()
    real = pd.read_parquet(vdir / "real_requests.parquet")
    rerun = latency_errors(real, sim)
    pick = lambda rows: {f"{r['metric']}_{r['stat']}": r["rel_error"] for r in rows if r["stat"] in STATS}
    return pick(meta["latency"]), pick(rerun.to_dict("records"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="nanosim validate --out folders")
    ap.add_argument("--profile", required=True, help="profile JSON (or folder) to simulate with")
    ap.add_argument("--trace", default=None)
    ap.add_argument("--no-step-jitter", action="store_true")
    ap.add_argument("--rate-scale", type=float, default=None)
    ap.add_argument("--max-requests", type=int, default=None)
    ap.add_argument("--num-kv-blocks", type=int, default=None)
    ap.add_argument("--max-model-len", type=int, default=4096, help="outputs without an engine record")
    a = ap.parse_args()
    for d in a.dirs:
        recorded, rerun = resimulate(d, a)
        keys = list(rerun)
        print(f"{d}  (sim - real) / real, %")
        print("  " + " ".join(f"{k[:-4] if k.endswith('_p50') or k.endswith('_p99') else k:>5}{k[-3:]:>4}"
                              for k in keys))
        for name, row in (("recorded", recorded), ("re-run", rerun)):
            print(f"  {name:9s}" + " ".join(f"{100 * row.get(k, float('nan')):+9.1f}" for k in keys))


if __name__ == "__main__":
    main()
