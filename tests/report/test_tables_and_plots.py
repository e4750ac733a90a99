"""SLO tables, Pareto sets and every figure of nanosim.report.plots on a small sweep."""
import numpy as np
import pandas as pd
import pytest

from nanosim.report import plots
from nanosim.report.tables import fewest_gpus, pareto_mask, request_meets, with_slo
from nanosim.sweep import Slo
from tests.sweep.helpers import TINY, run_text


def test_pareto_mask_by_hand():
    x = np.array([1.0, 2.0, 2.0, 3.0, np.nan, 0.5])  # throughput: higher is better
    y = np.array([1.0, 1.0, 2.0, 5.0, 0.1, 0.5])  # latency: lower is better
    assert pareto_mask(x, y).tolist() == [False, True, False, True, False, True]


def test_request_meets_slo_by_hand():
    req = pd.DataFrame({"rejected": ["", "", "", "too long", ""],
                        "finish_s": [1.0, 1.0, 1.0, np.nan, 1.0],
                        "ttft_s": [0.1, 0.3, 0.1, np.nan, 0.1],
                        "tpot_s": [0.01, 0.01, 0.05, np.nan, np.nan]})  # last: one token
    met = request_meets(req, Slo(ttft_s=0.2, tpot_s=0.02))
    assert met.tolist() == [True, False, False, False, True]


def test_with_slo_and_fewest_gpus(sweep_store):
    t = with_slo(sweep_store)
    assert t["attainment"].between(0, 1).all() and (t["goodput_req_s"] >= 0).all()
    loose = with_slo(sweep_store, Slo(ttft_s=10.0, tpot_s=1.0))
    assert (loose["attainment"] == 1.0).all()
    best = fewest_gpus(loose)
    assert best["gpus"] == 1 and best["replicas"] == 1
    assert fewest_gpus(with_slo(sweep_store, Slo(ttft_s=1e-6, tpot_s=1e-6))) is None


@pytest.mark.parametrize("make, traces", [
    (lambda s: plots.latency_cdf(s, "ttft_s"), 4),
    (lambda s: plots.latency_cdf(s, "tpot_s", max_curves=2), 2),
    (lambda s: plots.latency_cdf(s, "e2e_s", where={"replicas": 1}), 2),
    (lambda s: plots.throughput_latency(s), 2),  # one curve per replicas value
    (lambda s: plots.goodput(s), 2),
    (lambda s: plots.timeline(s), 8),  # KV usage + batch size per point
    (lambda s: plots.heatmap(s, z="ttft_p99_s"), 1),
    (lambda s: plots.heatmap(s, z="attainment"), 1),
    (lambda s: plots.pareto(s), 2),
    (lambda s: plots.capacity(s), 1),
])
def test_every_figure_draws_from_the_store(sweep_store, make, traces):
    fig = make(sweep_store)
    assert len(fig.data) == traces
    assert all(len(t.x) > 0 for t in fig.data if t.type != "heatmap")
    fig.to_json()  # serialisable: nothing left as a pandas object plotly cannot encode


def test_figures_accept_a_folder_path(sweep_store):
    fig = plots.latency_cdf(str(sweep_store.root), "ttft_s")
    assert fig.layout.xaxis.title.text == "TTFT (ms)"


def test_heatmap_of_a_one_parameter_sweep_says_why(tmp_path):
    _, store = run_text(tmp_path, TINY + "[grid]\nseed = [0, 1]\n")
    with pytest.raises(ValueError, match="needs two swept parameters"):
        plots.heatmap(store)
    with pytest.raises(ValueError, match="no SLO"):
        plots.goodput(store)
