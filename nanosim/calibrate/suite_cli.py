"""`nanosim validate --suite SUITE.toml --out DIR`: flags, the checks made before any run
(the suite file, traces, models, recorded folders, profile), the runtime estimate of
--dry-run, and the run itself (suite_run.py). Light at import: the parser imports it."""
from __future__ import annotations

import sys
from pathlib import Path

from nanosim.config import ConfigError

# --dry-run's estimate of what a real replay costs beyond its steps' measured times (which
# include the input packing): the engine's scheduling and the replay harness per step, taken
# generously (two engines stepping a 24,416-step conv replay took 0.7 s on a CPU, ~15 us a
# step each), and loading + warming up a model (weights, CUDA graphs) once per (model, tp,
# max_model_len): assumed figures, not measured
HOST_PER_STEP_S = 0.5e-3
LOAD_S = {"qwen3-0.6b": 45.0, "qwen3-1.7b": 60.0, "qwen3-4b": 80.0, "qwen3-8b": 110.0}
DEFAULT_LOAD_S = 90.0


def add_suite_args(g) -> None:
    g.add_argument("--quick", action="store_true", help="only the runs the suite marks quick")
    g.add_argument("--only", nargs="+", default=(), metavar="TEXT",
                   help="only the runs whose name contains one of these")
    g.add_argument("--models", nargs="+", default=None, metavar="MODEL",
                   help="run every trace of the suite on these models instead of the file's")
    g.add_argument("--recorded", default=None, metavar="DIR",
                   help="take the measured side from an earlier suite's (or validate's) output "
                        "folder instead of replaying on this GPU (runs on a CPU)")
    g.add_argument("--dry-run", action="store_true",
                   help="check the suite, list its runs and estimate their runtime; replay nothing")


def check_runs(suite, runs, a, block_size: int) -> None:
    """Everything a run needs, before the first one starts (ConfigError naming file:line)."""
    from nanosim.calibrate.suite_run import recorded_dir
    from nanosim.config import get_gpu, get_model
    from nanosim.workload import resolve_trace

    where = lambda run: f"{suite.path}:{run.line}: trace {run.trace_name!r}"  # noqa: E731
    for run in runs:
        if not run.source.startswith("workload:"):
            try:
                resolve_trace(run.source).path
            except (ValueError, OSError) as e:
                raise ConfigError(f"{where(run)}: {e}") from None
        if not Path(run.model).is_dir():
            try:
                get_model(run.model)
            except ConfigError as e:
                raise ConfigError(f"{where(run)}: {e}") from None
        if a.recorded:
            try:
                recorded_dir(Path(a.recorded), run)
            except FileNotFoundError as e:
                raise ConfigError(f"{where(run)}: {e}") from None
        bs = block_size
        if run.num_kv_blocks and run.num_kv_blocks * bs < run.max_model_len:
            raise ConfigError(f"{where(run)}: {run.num_kv_blocks} KV blocks of {bs} tokens (load "
                              f"{run.load}) hold less than one max_model_len={run.max_model_len} "
                              "sequence: set num_kv_blocks for this trace")
    for name in (a.gpu, a.profile_from):
        if name:
            get_gpu(name)
    if a.profile and a.profile.lower() not in ("auto", "none") and not Path(a.profile).exists():
        raise ConfigError(f"--profile {a.profile}: no such file or folder")


def _profile(a):
    p = a.profile or "auto"
    return None if p.lower() == "none" else p


def estimate(runs, a, base_cfg) -> list[dict]:
    """Per run: the simulator's steps and their summed time on the target GPU (the suite's
    --gpu, else h100), the replay's GPU-busy time; the real replay adds HOST_PER_STEP_S a step."""
    from nanosim.calibrate.suite_run import load_requests
    from nanosim.config import get_gpu, get_model
    from nanosim.sim.job import run_simulation

    out = []
    for run in runs:
        cfg = base_cfg.with_(max_model_len=run.max_model_len, num_kv_blocks=run.num_kv_blocks, tp=run.tp)
        reqs = load_requests(run)
        _, steps, summ = run_simulation(reqs, get_model(run.model), get_gpu(a.gpu or "h100"), cfg,
                                        _profile(a), step_jitter=False, profile_from=a.profile_from)
        busy = float(steps["duration_s"].sum())
        out.append({"run": run.name, "role": run.role, "requests": len(reqs), "steps": len(steps),
                    "gpu_s": busy, "replay_s": busy + HOST_PER_STEP_S * len(steps),
                    "cost_model": summ["cost_model"]})
    return out


def _print_estimate(runs, rows) -> None:
    import pandas as pd

    df = pd.DataFrame(rows)
    print(df[["run", "role", "requests", "steps", "gpu_s", "replay_s"]].to_markdown(
        index=False, floatfmt=".1f"))
    groups = {(r.model, r.tp, r.max_model_len) for r in runs}
    load = sum(LOAD_S.get(m, DEFAULT_LOAD_S) for m, _, _ in groups)
    total = df["replay_s"].sum()
    print(f"estimate: {total:.0f} s of replays ({df['steps'].sum()} steps) + {load:.0f} s loading "
          f"{len(groups)} model(s) = {total + load:.0f} s, plus the simulated halves (CPU). "
          f"Step times from {rows[0]['cost_model'] if rows else '-'}")


def run_suite_command(a, base_cfg, make_llm) -> int:
    from nanosim.calibrate.suite_run import LiveMeasure, RecordedMeasure, run_suite
    from nanosim.calibrate.suite_spec import load_suite

    suite = load_suite(a.suite, a.models)
    runs = suite.select(a.quick, tuple(a.only), a.max_requests)
    if not runs:
        raise ConfigError(f"{a.suite}: no run selected (--quick: the suite marks none quick; "
                          f"--only {' '.join(a.only)}: no run name contains it)")
    check_runs(suite, runs, a, base_cfg.block_size_tokens)
    try:
        import tabulate  # noqa: F401  (pandas' to_markdown: the scorecard and estimate tables)
    except ImportError:
        raise ConfigError("the scorecard's table needs the tabulate package: pip install "
                          "tabulate (a dependency of nanosim since the suite runner)") from None
    if a.dry_run:
        _print_estimate(runs, estimate(runs, a, base_cfg))
        return 0
    jitter = not a.no_step_jitter
    if a.recorded:
        measure = RecordedMeasure(Path(a.recorded), a.gpu, _profile(a), a.profile_from, jitter)
    else:
        measure = LiveMeasure(lambda m, tp, cfg: make_llm(a, m, tp, cfg), base_cfg, a.gpu,
                              _profile(a), a.profile_from, jitter, a.temperature)
    header = {"cost_model": f"--profile {a.profile or 'auto'}"
              + (f" --profile-from {a.profile_from}" if a.profile_from else ""),
              "suite_file": str(suite.path), "quick": a.quick}
    out = Path(a.out)
    rows = run_suite(suite, runs, out, measure, header, progress=not a.no_progress)
    print((out / "scorecard.md").read_text())
    print(f"wrote {out}/scorecard.md, scorecard.json, runs/")
    failed = [r for r in rows if r["status"] != "ok"]
    missed = [r for r in rows if r["status"] == "ok" and r["role"] == "held_out" and r["over_target"]]
    if failed:
        print(f"nanosim validate: {len(failed)} of {len(rows)} runs failed", file=sys.stderr)
    return 1 if failed or missed else 0
