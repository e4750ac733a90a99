"""`nanosim validate`: replay one trace for real (virtual clock) and simulated, then compare.

* per step: the cost model's prediction for the identical batch (the StepShape the real
  engine executed) against the measured duration: MAPE and P50/P90/P99 absolute percentage
  error, by batch type (decode-only, prefill-only, mixed);
* per request: TTFT, TPOT and E2E distributions of the real replay against the simulated
  replay of the same trace and config: relative error of P50, P90, P99 and mean.
Both replays use the same engine code, config and KV block count; only the backend differs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from nanosim.core.batch import ScheduledBatch, StepResult, StepShape, with_decode_paths

LATENCY_METRICS = ("ttft_s", "tpot_s", "e2e_s")
STATS = ("p50", "p90", "p99", "mean")
# the counts of a StepShape; its decode_path follows from the steps in order (step_errors)
SHAPE_FIELDS = ("num_prefill_seqs", "prefill_tokens", "prefill_attn_pairs", "prefill_kv_tokens",
                "num_decode_seqs", "decode_context_tokens", "swap_blocks", "decode_max_context_tokens")


class RecordingBackend:
    """Wraps a backend and keeps each executed step's shape and measured duration."""

    def __init__(self, inner) -> None:
        self.inner = inner
        # measured step by step: no decode runs priced at once, whatever the inner one offers
        self.caps = replace(inner.caps, decode_runs=False)
        self.shapes: list[StepShape] = []
        self.durations: list[float] = []
        self.gpu_s: list[float | None] = []  # device time, where the backend measures it

    def execute(self, batch: ScheduledBatch) -> StepResult:
        result = self.inner.execute(batch)
        self.shapes.append(batch.shape)
        self.durations.append(result.duration_s)
        self.gpu_s.append(result.gpu_s)
        return result


def batch_kind(s: StepShape) -> str:
    if s.num_prefill_seqs and s.num_decode_seqs:
        return "mixed"
    return "prefill" if s.num_prefill_seqs else "decode"


def step_errors(shapes: list[StepShape], measured_s: list[float], cost_model,
                gpu_s: list | None = None) -> pd.DataFrame:
    """One row per real step: kind, measured, predicted, absolute percentage error; with
    ``gpu_s`` (device time per step, None where unmeasured) a gpu_s column too.
    ``shapes``: one engine's steps in order; each is priced on the decode path the scheduler
    gives it after the previous step (with_decode_paths: the path a recorded shape carries,
    and the one of a shape read back from SHAPE_FIELDS), written as column decode_path."""
    shapes = with_decode_paths(shapes)
    pred = np.array([cost_model.step_time_s(s) for s in shapes])
    meas = np.asarray(measured_s, dtype=float)
    df = pd.DataFrame({"kind": [batch_kind(s) for s in shapes], "measured_s": meas,
                       "predicted_s": pred, "ape": np.abs(pred - meas) / meas,
                       "num_tokens": [s.num_tokens for s in shapes]})
    for f in SHAPE_FIELDS:  # the whole step shape, so other cost models can be scored offline
        df[f] = [getattr(s, f) for s in shapes]
    df["decode_path"] = [s.decode_path for s in shapes]
    if gpu_s is not None and any(g is not None for g in gpu_s):
        df["gpu_s"] = np.array([np.nan if g is None else g for g in gpu_s], dtype=float)
    return df


def host_time(steps: pd.DataFrame) -> dict:
    """Per step kind, the medians of a step's measured time, its device time and the rest
    (host time: input packing, launches, the sampled tokens' read-back), in seconds; {} when
    the replay did not record device times."""
    if "gpu_s" not in steps or steps["gpu_s"].isna().all():
        return {}
    out = {}
    for kind, g in [("all", steps), *steps.groupby("kind")]:
        g = g.dropna(subset=["gpu_s"])
        if len(g):
            out[kind] = {"measured_s": float(g.measured_s.median()), "gpu_s": float(g.gpu_s.median()),
                         "host_s": float((g.measured_s - g.gpu_s).median())}
    return out


def speed_drift(steps: pd.DataFrame, window: int = 301, tolerance: float = 0.05) -> dict:
    """How steady the machine's speed was over the real replay, from measured / predicted
    per step: its rolling median over ``window`` consecutive steps against the median of
    the whole replay. A shared GPU host has slow spells (our H100 once ran a replay's first
    10 s of one-row decode steps 16% over the same shapes later in it); steps inside one
    make every error of the run larger and say nothing about the cost model. A stretch of
    batches the model misprices (a batch mix only part of the run has) shows up the same
    way, so this flags where to look; it does not say which it was. Returns the
    fraction of steps where the rolling median is more than ``tolerance`` off, and the
    rolling median's range relative to the whole run's."""
    r = (steps["measured_s"] / steps["predicted_s"]).to_numpy(float)
    if len(r) < window:
        return {"window_steps": window, "off_fraction": 0.0, "low": 1.0, "high": 1.0}
    roll = pd.Series(r).rolling(window, center=True, min_periods=window // 2).median().to_numpy()
    rel = roll / np.median(r)
    return {"window_steps": window, "off_fraction": float(np.mean(np.abs(rel - 1) > tolerance)),
            "low": float(np.nanmin(rel)), "high": float(np.nanmax(rel))}


def step_table(steps: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for kind, g in [("all", steps), *steps.groupby("kind")]:
        ape = g["ape"].to_numpy()
        rows.append({"kind": kind, "steps": len(g), "mape": ape.mean(),
                     **{f"ape_p{q}": np.percentile(ape, q) for q in (50, 90, 99)}})
    return pd.DataFrame(rows)


def _stats(x: pd.Series) -> dict:
    v = x.dropna().to_numpy(float)
    if not len(v):
        return {s: np.nan for s in STATS}
    p = np.percentile(v, [50, 90, 99])
    return {"p50": p[0], "p90": p[1], "p99": p[2], "mean": v.mean()}


def latency_errors(real: pd.DataFrame, sim: pd.DataFrame) -> pd.DataFrame:
    """One row per (metric, statistic): real, simulated, relative error (sim - real) / real."""
    rows = []
    for m in LATENCY_METRICS:
        r, s = _stats(real[m]), _stats(sim[m])
        for st in STATS:
            rows.append({"metric": m, "stat": st, "real": r[st], "sim": s[st],
                         "rel_error": (s[st] - r[st]) / r[st] if r[st] else np.nan})
    return pd.DataFrame(rows)


@dataclass
class Validation:
    steps: pd.DataFrame  # per real step
    step_summary: pd.DataFrame  # by kind
    latency: pd.DataFrame  # per metric and statistic
    real_requests: pd.DataFrame
    sim_requests: pd.DataFrame
    failures: list[str] = field(default_factory=list)

    def check(self, max_step_mape: float, max_latency_error: float) -> list[str]:
        """Names of the figures over their thresholds (fractions, e.g. 0.03)."""
        out = []
        mape = float(self.step_summary.loc[self.step_summary.kind == "all", "mape"].iloc[0])
        if mape > max_step_mape:
            out.append(f"step-time MAPE {100 * mape:.1f}% > {100 * max_step_mape:.1f}%")
        for _, r in self.latency[self.latency.stat.isin(["p50", "p99"])].iterrows():
            if abs(r.rel_error) > max_latency_error:
                out.append(f"{r.metric} {r.stat} error {100 * r.rel_error:+.1f}% > "
                           f"±{100 * max_latency_error:.1f}%")
        self.failures = out
        return out


def compare(real_engine, recorder: RecordingBackend, sim_engine) -> Validation:
    """Both engines have already replayed the same trace (see run_replays)."""
    real_req, _ = real_engine.results()
    sim_req, _ = sim_engine.results()
    steps = step_errors(recorder.shapes, recorder.durations, sim_engine.backend.cost_model,
                        recorder.gpu_s)
    return Validation(steps, step_table(steps), latency_errors(real_req, sim_req), real_req, sim_req)


def write(v: Validation, out_dir: str | Path, meta: dict) -> Path:
    from nanosim.output import staged_dir

    with staged_dir(out_dir) as tmp:  # all files or none replace the folder's
        _write_files(v, tmp, meta)
    return Path(out_dir)


def _write_files(v: Validation, out: Path, meta: dict) -> None:
    v.steps.to_parquet(out / "step_errors.parquet", index=False)
    v.step_summary.to_csv(out / "step_summary.csv", index=False)
    v.latency.to_csv(out / "latency_errors.csv", index=False)
    v.real_requests.to_parquet(out / "real_requests.parquet", index=False)
    v.sim_requests.to_parquet(out / "sim_requests.parquet", index=False)
    summary = {**meta, "step_summary": v.step_summary.to_dict("records"),
               "latency": v.latency.to_dict("records"), "speed_drift": speed_drift(v.steps),
               "host_time": host_time(v.steps),
               "failures": v.failures}
    (out / "validation.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    from nanosim.report.calibration import write_figures

    try:  # the figures last, and never at the cost of the data above (a real replay is minutes)
        write_figures(v, out / "validation.html", meta)
    except ImportError as e:  # plotly missing from a hand-made environment (a GPU box)
        import sys

        print(f"nanosim validate: validation.html not written ({e}); the tables are",
              file=sys.stderr)


def format_validation(v: Validation) -> str:
    lines = ["step time (predicted vs measured, same batch)",
             "  kind       steps    MAPE    P50     P90     P99  (abs % error)"]
    for _, r in v.step_summary.iterrows():
        lines.append(f"  {r.kind:<8} {r.steps:7d} {100 * r.mape:6.2f}% {100 * r.ape_p50:6.2f}% "
                     f"{100 * r.ape_p90:6.2f}% {100 * r.ape_p99:6.2f}%")
    lines.append("request latency (simulated vs real replay)")
    for m in LATENCY_METRICS:
        sub = v.latency[v.latency.metric == m].set_index("stat")
        cells = "  ".join(f"{st} {100 * sub.loc[st, 'rel_error']:+6.1f}%" for st in STATS)
        lines.append(f"  {m[:-2].upper():<5} {cells}")
    d = speed_drift(v.steps)
    lines.append(f"machine speed over the real replay: rolling median of measured/predicted "
                 f"({d['window_steps']} steps) {d['low']:.3f}..{d['high']:.3f} x the run's; "
                 f"{100 * d['off_fraction']:.0f}% of steps more than 5% off")
    for kind, h in host_time(v.steps).items():
        lines.append(f"  {kind:<8} median step {1e3 * h['measured_s']:.3f} ms = device {1e3 * h['gpu_s']:.3f} "
                     f"ms (CUDA events) + host {1e3 * h['host_s']:.3f} ms")
    if d["off_fraction"] > 0.1:
        lines.append("WARNING: measured/predicted drifted during the real replay: a slow spell of a "
                     "shared machine, or a stretch of batches the model misprices; rerun to tell them apart")
    for f in v.failures:
        lines.append(f"OVER THRESHOLD: {f}")
    return "\n".join(lines)


def validate_replay(requests, real_engine, sim_engine, progress=None, sampling=None) -> Validation:
    """Replay ``requests`` on both engines (the real one on the virtual clock, each request
    with ``sampling``: a step's measured duration advances time, as in the simulator) and
    compare them. The real engine's backend must be a RecordingBackend; the sim engine's a
    SimBackend."""
    from nanosim.core.clock import run_virtual
    from nanosim.sim.simulator import simulate

    if not isinstance(real_engine.backend, RecordingBackend):
        raise TypeError("the real engine's backend must be wrapped in RecordingBackend")
    run_virtual(real_engine, requests, progress, sampling)
    simulate(sim_engine, requests)
    return compare(real_engine, real_engine.backend, sim_engine)
