"""The suite's scorecard: one row per run (step MAPE by step kind, TTFT/TPOT/E2E p50/p90/p99
errors (predicted - measured) / measured, speed drift), held-out rows apart from tuned ones,
as one JSON (scorecard.json) and one markdown table (scorecard.md, printed too).

Both are rewritten after every run, so a run that fails, or a suite that is stopped, keeps
the rows already made."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from nanosim.calibrate.validate import LATENCY_METRICS, Validation, host_time, speed_drift

KINDS = ("all", "decode", "mixed", "prefill")
QUANTILES = ("p50", "p90", "p99")
# the targets of the held-out protocol (docs/calibration.md)
TARGET_STEP_MAPE = 0.03
TARGET_LATENCY = 0.05


def run_row(run, v: Validation, meta: dict, out_dir: Path) -> dict:
    """The scorecard row of a finished run (``run``: a SuiteRun)."""
    summ = v.step_summary.set_index("kind")
    mape = {k: float(summ.loc[k, "mape"]) if k in summ.index else None for k in KINDS}
    steps = {k: int(summ.loc[k, "steps"]) if k in summ.index else 0 for k in KINDS}
    lat = v.latency.set_index(["metric", "stat"])["rel_error"]
    latency = {m[:-2]: {q: _num(lat.get((m, q))) for q in QUANTILES} for m in LATENCY_METRICS}
    row = {"run": run.name, "trace": run.trace_name, "role": run.role, "load": run.load,
           "source": run.source, "model": run.model, "tp": run.tp, "status": "ok",
           "requests": int(len(v.real_requests)), "steps": steps, "step_mape": mape,
           "latency_error": latency, "speed_drift": speed_drift(v.steps),
           "host_time": host_time(v.steps),
           "preemptions_real": int(v.real_requests.preemptions.sum()),
           "cost_model": meta.get("cost_model"), "measured": meta.get("measured", "replay"),
           "dir": str(out_dir)}
    row["over_target"] = over_target(row)
    return row


def failed_row(run, error: str) -> dict:
    return {"run": run.name, "trace": run.trace_name, "role": run.role, "load": run.load,
            "source": run.source, "model": run.model, "tp": run.tp, "status": "failed",
            "error": error}


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def over_target(row: dict) -> list[str]:
    """The figures of a row outside the protocol's targets: step MAPE <= 3%, TTFT/TPOT/E2E
    p50 and p99 within +-5%."""
    out = []
    m = row["step_mape"]["all"]
    if m is not None and m > TARGET_STEP_MAPE:
        out.append(f"step {100 * m:.1f}%")
    for metric, qs in row["latency_error"].items():
        for q in ("p50", "p99"):
            e = qs[q]
            if e is not None and abs(e) > TARGET_LATENCY:
                out.append(f"{metric} {q} {100 * e:+.1f}%")
    return out


def _pct(x, signed: bool = True) -> str:
    if x is None:
        return "-"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.2f}%"


def table(rows: list[dict]) -> pd.DataFrame:
    """The scorecard as a DataFrame of display strings, held-out rows first."""
    order = {"held_out": 0, "tuned": 1}
    out = []
    for r in sorted(rows, key=lambda r: (r["status"] != "ok", order.get(r["role"], 2))):
        base = {"role": r["role"].replace("_", "-"), "run": r["run"]}
        if r["status"] != "ok":
            out.append({**base, "step MAPE": "FAILED", "over target": r["error"][:120]})
            continue
        m, lat, d = r["step_mape"], r["latency_error"], r["speed_drift"]
        cells = {**base, "steps": r["steps"]["all"], "step MAPE": _pct(m["all"], False),
                 "decode / mixed / prefill": " / ".join(_pct(m[k], False) for k in KINDS[1:])}
        for metric in ("ttft", "tpot", "e2e"):
            cells[f"{metric.upper()} p50 / p90 / p99 %"] = " / ".join(_pct(lat[metric][q]) for q in QUANTILES)
        h = r.get("host_time", {}).get("decode")
        cells["decode host / device ms"] = (f"{1e3 * h['host_s']:.2f} / {1e3 * h['gpu_s']:.2f}"
                                            if h else "-")
        cells["drift (steps off)"] = f"{d['low']:.2f}..{d['high']:.2f} ({100 * d['off_fraction']:.0f}%)"
        cells["over target"] = ", ".join(r["over_target"]) or "none"
        out.append(cells)
    return pd.DataFrame(out).fillna("")


def markdown(suite_name: str, rows: list[dict], header: dict) -> str:
    """The scorecard page: what ran, then the table (tabulate, through pandas)."""
    ok = [r for r in rows if r["status"] == "ok"]
    lines = [f"# Scorecard: {suite_name}", "",
             f"{header.get('measured', '')}; cost model: {header.get('cost_model', '')}", "",
             "Errors are (predicted - measured) / measured. Targets: step MAPE <= 3%, "
             "TTFT/TPOT/E2E p50 and p99 within +-5%.", ""]
    for role in ("held_out", "tuned"):
        rs = [r for r in ok if r["role"] == role]
        if rs:
            met = sum(not r["over_target"] for r in rs)
            lines.append(f"- {role.replace('_', '-')}: {met} of {len(rs)} runs within every target")
    models = sorted({r["cost_model"] for r in ok if r.get("cost_model")})
    lines += [f"- cost model: {m}" for m in models]
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        lines.append(f"- failed: {len(failed)} run(s): {', '.join(r['run'] for r in failed)}")
    lines += ["", table(rows).to_markdown(index=False) if rows else "(no runs finished)", ""]
    return "\n".join(lines)


def write_scorecard(out_dir: Path, suite_name: str, rows: list[dict], header: dict) -> str:
    """Write scorecard.json (first: the data) and scorecard.md; return the markdown."""
    doc = {"suite": suite_name, **header, "runs": rows}
    tmp = out_dir / "scorecard.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(out_dir / "scorecard.json")
    md = markdown(suite_name, rows, header)
    (out_dir / "scorecard.md").write_text(md)
    return md
