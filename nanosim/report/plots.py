"""Plotly figures of a sweep, read from its results store (a ResultStore or its folder).

    from nanosim.report import plots
    fig = plots.latency_cdf("out/block-size", metric="ttft_s")
    fig.show()            # notebook;  fig.write_html(...) / fig.write_image(...) elsewhere

Every function returns a ``plotly.graph_objects.Figure``. ``where={"policy": "fcfs"}``
keeps the points whose parameters match; legends name points by the swept parameters.
Latencies are shown in ms (TTFT, TPOT) or s (E2E).
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from nanosim.report.tables import (FIGURES, SHORT, fmt, fewest_gpus, ok_points, open_store,
                                   pareto_mask, slo_of, varying, with_slo)

METRICS = {"ttft_s": ("TTFT (ms)", 1e3), "tpot_s": ("TPOT (ms)", 1e3), "e2e_s": ("E2E (s)", 1.0)}
TEMPLATE = "plotly_white"


def _title(col: str) -> str:
    return FIGURES.get(col, (SHORT.get(col, col), 1.0))[0]


def _scale(col: str) -> float:
    return FIGURES.get(col, ("", 1.0))[1]


def _pick(pts, max_curves: int):
    """At most max_curves rows, evenly spread over the sweep order."""
    if len(pts) <= max_curves:
        return pts, ""
    idx = np.unique(np.linspace(0, len(pts) - 1, max_curves).round().astype(int))
    return pts.iloc[idx], f" ({len(idx)} of {len(pts)} points)"


def _fig(title: str, x: str, y: str, **layout) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, template=TEMPLATE,
                      legend_title_text="", **layout)
    return fig


def _curves(df, groups: list[str]):
    """(legend name, rows) per combination of the `groups` columns; one curve if none."""
    if not groups:
        yield "all", df
        return
    for key, g in df.groupby(groups, sort=False):
        yield ", ".join(f"{SHORT.get(k, k)}={fmt(v)}" for k, v in zip(groups, key)), g


def latency_cdf(sweep, metric: str = "ttft_s", where: dict | None = None,
                max_curves: int = 8, log_x: bool = True) -> go.Figure:
    """Empirical CDF of a per-request latency (ttft_s, tpot_s or e2e_s), one line per point."""
    store = open_store(sweep)
    name, scale = METRICS[metric]
    pts, note = _pick(ok_points(store, where), max_curves)
    req = store.requests(list(pts["point_id"]))
    fig = _fig(f"{name.split(' ')[0]} CDF{note}", name, "fraction of requests")
    for pid, label in zip(pts["point_id"], pts["label"]):
        v = np.sort(req.loc[req["point_id"] == pid, metric].dropna().to_numpy()) * scale
        fig.add_scatter(x=v, y=np.arange(1, len(v) + 1) / max(len(v), 1), mode="lines",
                        name=label, line_shape="hv")
    fig.update_xaxes(type="log" if log_x else "linear")
    return fig


def throughput_latency(sweep, latency: str = "ttft_p99_s", throughput: str = "output_tok_s",
                       along: str | None = None, where: dict | None = None) -> go.Figure:
    """Latency against throughput, one curve per combination of the other swept
    parameters, its points ordered by `along` (default: rate_scale if swept)."""
    store = open_store(sweep)
    pts = ok_points(store, where)
    keys = [k for k in varying(store) if k not in (where or {})]
    along = along or ("rate_scale" if "rate_scale" in keys else (keys[0] if keys else None))
    groups = [k for k in keys if k != along]
    fig = _fig("throughput vs latency", _title(throughput), _title(latency))
    for name, g in _curves(pts, groups):
        g = g.sort_values(along) if along else g
        fig.add_scatter(x=g[throughput] * _scale(throughput), y=g[latency] * _scale(latency),
                        mode="lines+markers", name=name,
                        text=g[along].astype(str) if along else None,
                        hovertemplate=f"{along}=%{{text}}<br>x=%{{x:.4g}}<br>y=%{{y:.4g}}")
    return fig


def goodput(sweep, slo=None, x: str | None = None, where: dict | None = None) -> go.Figure:
    """Goodput (requests per second that meet the SLO) against a swept parameter, one
    line per combination of the others; hover shows the attainment."""
    store = open_store(sweep)
    slo = slo_of(store, slo)
    t = with_slo(store, slo, where)
    keys = [k for k in varying(store) if k not in (where or {})]
    x = x or (keys[0] if keys else "point_id")
    groups = [k for k in keys if k != x]
    fig = _fig(f"goodput under SLO (TTFT <= {slo.ttft_s * 1e3:g} ms, TPOT <= "
               f"{slo.tpot_s * 1e3:g} ms)", SHORT.get(x, x), _title("goodput_req_s"))
    for name, g in _curves(t, groups):
        g = g.sort_values(x)
        fig.add_scatter(x=g[x], y=g["goodput_req_s"], mode="lines+markers", name=name,
                        customdata=g["attainment"] * 100,
                        hovertemplate="%{x}: %{y:.3g} req/s, attainment %{customdata:.1f}%")
    return fig


def timeline(sweep, where: dict | None = None, max_curves: int = 6) -> go.Figure:
    """KV-cache usage (fraction of blocks) and batch size (sequences per step) over
    simulated time, time-binned; one line per point (replica 0 of each)."""
    store = open_store(sweep)
    pts, note = _pick(ok_points(store, where), max_curves)
    tl = store.timeline(list(pts["point_id"]))
    tl = tl[tl["replica"] == 0]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("KV-cache usage", "batch size"))
    for i, (pid, label) in enumerate(zip(pts["point_id"], pts["label"])):
        d = tl[tl["point_id"] == pid]
        color = _color(i)
        fig.add_scatter(x=d["t_s"], y=d["kv_usage"] * 100, name=label, legendgroup=pid,
                        line_color=color, row=1, col=1)
        fig.add_scatter(x=d["t_s"], y=d["batch_size"], name=label, legendgroup=pid,
                        line_color=color, showlegend=False, row=2, col=1)
    fig.update_yaxes(title_text="KV blocks used (%)", row=1, col=1)
    fig.update_yaxes(title_text="sequences per step", row=2, col=1)
    fig.update_xaxes(title_text="simulated time (s)", row=2, col=1)
    fig.update_layout(title=f"KV usage and batch size over time{note}", template=TEMPLATE,
                      height=600)
    return fig


def _color(i: int) -> str:
    import plotly.colors

    palette = plotly.colors.qualitative.Plotly
    return palette[i % len(palette)]


def heatmap(sweep, x: str | None = None, y: str | None = None, z: str = "ttft_p99_s",
            where: dict | None = None, agg: str = "mean") -> go.Figure:
    """A summary figure over two swept parameters (other parameters: aggregated)."""
    store = open_store(sweep)
    keys = [k for k in varying(store) if k not in (where or {})]
    if (x is None or y is None) and len(keys) < 2:
        raise ValueError(f"a heatmap needs two swept parameters; this sweep varies {keys}")
    x = x or next(k for k in keys if k != y)
    y = y or next(k for k in keys if k != x)
    pts = with_slo(store, None, where) if z in ("attainment", "goodput_req_s") \
        else ok_points(store, where)
    grid = pts[[x, y, z]].pivot_table(index=y, columns=x, values=z, aggfunc=agg) * _scale(z)
    fig = _fig(f"{_title(z)} by {SHORT.get(x, x)} and {SHORT.get(y, y)}",
               SHORT.get(x, x), SHORT.get(y, y))
    fig.add_heatmap(x=[str(c) for c in grid.columns], y=[str(i) for i in grid.index],
                    z=grid.to_numpy(), colorbar_title=_title(z), texttemplate="%{z:.3g}",
                    colorscale="Viridis")
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return fig


def pareto(sweep, x: str = "output_tok_s", y: str = "ttft_p99_s",
           where: dict | None = None) -> go.Figure:
    """Every point as (x, y) and the Pareto frontier (max x, min y) as a line."""
    store = open_store(sweep)
    pts = ok_points(store, where)
    mask = pareto_mask(pts[x].to_numpy(float), pts[y].to_numpy(float))
    fig = _fig("Pareto frontier", _title(x), _title(y))
    fig.add_scatter(x=pts[x] * _scale(x), y=pts[y] * _scale(y), mode="markers",
                    name="points", text=pts["label"], marker_color="lightgray",
                    hovertemplate="%{text}<br>x=%{x:.4g}<br>y=%{y:.4g}")
    front = pts[mask].sort_values(x)
    fig.add_scatter(x=front[x] * _scale(x), y=front[y] * _scale(y), mode="lines+markers",
                    name="Pareto frontier", text=front["label"],
                    hovertemplate="%{text}<br>x=%{x:.4g}<br>y=%{y:.4g}")
    return fig


def capacity(sweep, slo=None, where: dict | None = None) -> go.Figure:
    """SLO attainment against GPUs used (tp x replicas); the target line; the title names
    the fewest GPUs that meet the SLO."""
    store = open_store(sweep)
    slo = slo_of(store, slo)
    t = with_slo(store, slo, where)
    best = fewest_gpus(t)
    answer = (f"fewest GPUs: {best['gpus']} (tp={best['tp']}, replicas={best['replicas']})"
              if best is not None else "no configuration meets the SLO")
    fig = _fig(f"capacity: {answer}", "GPUs (tp x replicas)", "SLO attainment (%)")
    for tp, g in t.groupby("tp"):
        g = g.sort_values("gpus")
        fig.add_scatter(x=g["gpus"], y=g["attainment"] * 100, mode="lines+markers",
                        name=f"tp={tp}", text=g["label"],
                        hovertemplate="%{text}<br>%{x} GPUs: %{y:.1f}%")
    fig.add_hline(y=slo.attainment * 100, line_dash="dash",
                  annotation_text=f"target {slo.attainment * 100:g}%")
    fig.update_xaxes(type="log", dtick=np.log10(2))
    return fig
