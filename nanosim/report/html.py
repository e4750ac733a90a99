"""`nanosim report DIR`: one self-contained HTML page of a sweep (figures + tables).

plotly.js is inlined once (about 4.8 MB), so the page opens offline, from a file or an
e-mail attachment, with no network access. A small script at the top collects script
errors into <pre id="js-errors"> (empty when everything rendered), which the browser
test reads.
"""
from __future__ import annotations

import html
import sys
from pathlib import Path

from nanosim.output import atomic_file
from nanosim.report import plots
from nanosim.report.tables import FIGURES, SHORT, fewest_gpus, open_store, varying, with_slo

COLUMNS = ("ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "e2e_p99_s", "output_tok_s",
           "throughput_req_s", "prefix_cache_hit_rate", "preemptions", "rejected",
           "peak_kv_usage", "mean_batch_size")
ERROR_SINK = """<script>
window.__jsErrors = [];
function __showErrors() {
  var el = document.getElementById('js-errors');
  if (el) { el.textContent = window.__jsErrors.join('\\n'); }
}
window.addEventListener('error', function (e) {
  window.__jsErrors.push('error: ' + e.message); __showErrors(); });
window.addEventListener('unhandledrejection', function (e) {
  window.__jsErrors.push('unhandled rejection: ' + e.reason); __showErrors(); });
window.addEventListener('load', __showErrors);
</script>"""
STYLE = """<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
.fig { margin: 1.5em 0; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.85em; }
#js-errors:empty { display: none; } #js-errors { color: #b00; }
</style>"""


def write_report(sweep_dir, out: str | Path | None = None, max_curves: int = 8) -> Path:
    store = open_store(sweep_dir)
    meta = store.meta
    path = Path(out) if out else store.root / "report.html"
    any_ok = (store.points()["status"] == "ok").any()  # else: only the failures to show
    figures = build_figures(store, max_curves) if any_ok else []
    body = [f"<h1>sweep {html.escape(meta['name'])}</h1>",
            f"<p>{html.escape(meta.get('description', ''))}</p>",
            '<pre id="js-errors"></pre>', _overview(store), _points_table(store),
            _failed_table(store), _slo_section(store) if any_ok else ""]
    body += [f'<div class="fig" id="fig-{name}">{fig}</div>' for name, fig in figures]
    body.append(f"<h2>spec</h2><pre>{html.escape(meta.get('spec_text', ''))}</pre>")
    with atomic_file(path) as tmp:
        tmp.write_text(_page(meta["name"], "\n".join(b for b in body if b)))
    return path


def _page(title: str, body: str) -> str:
    from plotly.offline import get_plotlyjs

    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>nanosim sweep {html.escape(title)}</title>{STYLE}{ERROR_SINK}"
            f"<script>{get_plotlyjs()}</script></head>\n<body>\n{body}\n</body></html>\n")


def build_figures(store, max_curves: int) -> list[tuple[str, str]]:
    """(name, HTML div) of every figure that applies to this sweep; a figure that cannot
    be drawn (e.g. a heatmap of a one-parameter sweep) is left out with a note on stderr."""
    keys, slo = varying(store), store.meta.get("slo")
    wanted = [("ttft-cdf", lambda: plots.latency_cdf(store, "ttft_s", max_curves=max_curves)),
              ("tpot-cdf", lambda: plots.latency_cdf(store, "tpot_s", max_curves=max_curves)),
              ("e2e-cdf", lambda: plots.latency_cdf(store, "e2e_s", max_curves=max_curves)),
              ("throughput-latency", lambda: plots.throughput_latency(store)),
              ("pareto", lambda: plots.pareto(store)),
              ("timeline", lambda: plots.timeline(store, max_curves=max_curves))]
    if len(keys) >= 2:
        wanted.append(("heatmap", lambda: plots.heatmap(store)))
    if slo:
        wanted.append(("goodput", lambda: plots.goodput(store)))
    if slo and ("tp" in keys or "replicas" in keys):
        wanted.append(("capacity", lambda: plots.capacity(store)))
    out = []
    for name, make in wanted:
        try:
            fig = make()
        except (ValueError, KeyError) as e:
            print(f"report: figure {name} left out: {e}", file=sys.stderr)
            continue
        height = "620px" if name == "timeline" else "460px"
        out.append((name, fig.to_html(full_html=False, include_plotlyjs=False,
                                      default_height=height, config={"responsive": True})))
    return out


def _overview(store) -> str:
    pts = store.points()
    n, ok = len(store.meta["point_ids"]), int((pts["status"] == "ok").sum())
    keys = ", ".join(varying(store)) or "nothing"
    return (f"<p>{n} points in the spec: <b>{ok}</b> ok, <b>{len(pts) - ok}</b> failed, "
            f"<b>{n - len(pts)}</b> not run yet. Swept: {html.escape(keys)}.</p>")


def _points_table(store) -> str:
    pts = store.points()
    pts = pts[pts["status"] == "ok"]
    if pts.empty:
        return ""
    keys = varying(store)
    head = "".join(f'<th class="l">{html.escape(SHORT.get(k, k))}</th>' for k in keys)
    head += "".join(f"<th>{html.escape(FIGURES[c][0])}</th>" for c in COLUMNS)
    rows = []
    for _, r in pts.iterrows():
        cells = "".join(f'<td class="l">{html.escape(str(r[k]))}</td>' for k in keys)
        cells += "".join(f"<td>{_num(r[c] * FIGURES[c][1])}</td>" for c in COLUMNS)
        rows.append(f"<tr>{cells}</tr>")
    return (f"<h2>points</h2><table><tr>{head}</tr>{''.join(rows)}</table>")


def _num(v) -> str:
    return "-" if v != v else f"{v:.4g}"  # NaN -> "-"


def _failed_table(store) -> str:
    pts = store.points()
    bad = pts[pts["status"] == "failed"]
    if bad.empty:
        return ""
    rows = "".join(
        f'<tr><td class="l">{r.point_id}</td><td class="l"><details><summary>'
        f'{html.escape(r.error.splitlines()[0])}</summary><pre>{html.escape(r.error)}</pre>'
        f"</details></td></tr>" for r in bad.itertuples())
    return (f"<h2>failed points ({len(bad)})</h2><table><tr><th class=\"l\">point</th>"
            f"<th class=\"l\">error</th></tr>{rows}</table>")


def _slo_section(store) -> str:
    slo = store.meta.get("slo")
    if not slo:
        return ""
    t = with_slo(store)
    best = fewest_gpus(t)
    answer = ""
    if t["gpus"].nunique() > 1:
        answer = ("; no configuration meets it" if best is None else
                  f"; fewest GPUs that meet it: <b>{best['gpus']}</b> "
                  f"({html.escape(best['label'])})")
    return (f"<h2>SLO</h2><p>TTFT &le; {slo['ttft_s'] * 1e3:g} ms and TPOT &le; "
            f"{slo['tpot_s'] * 1e3:g} ms for {slo['attainment'] * 100:g}% of requests: "
            f"{int(t['meets'].sum())} of {len(t)} points meet it{answer}.</p>")
