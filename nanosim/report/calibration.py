"""Figures of a validation run (nanosim/calibrate/validate.py), one self-contained HTML page:
predicted-vs-measured step times, error CDFs by batch type, latency CDF overlays."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _cdf(values):
    v = np.sort(np.asarray(values, dtype=float))
    v = v[~np.isnan(v)]
    return v, (np.arange(1, len(v) + 1) / len(v)) if len(v) else v


def figures(v) -> list:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    steps = v.steps
    scatter = go.Figure()
    for kind, g in steps.groupby("kind"):
        scatter.add_trace(go.Scattergl(x=g.measured_s * 1e3, y=g.predicted_s * 1e3, mode="markers",
                                       name=kind, marker={"size": 4, "opacity": 0.6}))
    hi = float(max(steps.measured_s.max(), steps.predicted_s.max()) * 1e3) if len(steps) else 1.0
    scatter.add_trace(go.Scatter(x=[0, hi], y=[0, hi], mode="lines", name="y = x",
                                 line={"dash": "dash", "color": "gray"}))
    scatter.update_layout(title="Step time: predicted vs measured (same batch)",
                          xaxis_title="measured (ms)", yaxis_title="predicted (ms)")
    err = go.Figure()
    for kind, g in [("all", steps), *steps.groupby("kind")]:
        x, y = _cdf(g.ape * 100)
        err.add_trace(go.Scatter(x=x, y=y, mode="lines", name=kind))
    err.update_layout(title="Step-time absolute percentage error (CDF)", xaxis_title="|error| (%)",
                      yaxis_title="fraction of steps")
    lat = make_subplots(rows=1, cols=3, subplot_titles=("TTFT (s)", "TPOT (s)", "E2E (s)"))
    for col, m in enumerate(("ttft_s", "tpot_s", "e2e_s"), start=1):
        for name, df, color in (("real", v.real_requests, "#1f77b4"), ("sim", v.sim_requests, "#d62728")):
            x, y = _cdf(df[m])
            lat.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name, line={"color": color},
                                     showlegend=col == 1), row=1, col=col)
    lat.update_layout(title="Request latency CDFs: real replay vs simulation")
    return [scatter, err, lat]


def write_figures(v, path: str | Path, meta: dict) -> None:
    import plotly.io as pio

    parts = [f"<h1>nanosim validation</h1><pre>{_meta_text(meta)}</pre>",
             v.step_summary.to_html(index=False, float_format=lambda x: f"{x:.4f}"),
             v.latency.to_html(index=False, float_format=lambda x: f"{x:.4f}")]
    for i, fig in enumerate(figures(v)):
        parts.append(pio.to_html(fig, include_plotlyjs=(i == 0), full_html=False))
    Path(path).write_text("<!doctype html><html><head><meta charset='utf-8'><title>nanosim "
                          "validation</title></head><body>" + "\n".join(parts) + "</body></html>")


def _meta_text(meta: dict) -> str:
    import html

    return html.escape("\n".join(f"{k}: {v}" for k, v in meta.items()))
