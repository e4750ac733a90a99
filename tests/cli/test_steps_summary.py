"""--steps summary: one steps row per step kind, aggregated exactly from the per-step rows;
requests and the summary unchanged."""
import numpy as np
import pandas as pd
import pytest

from nanosim.cli import build_parser
from nanosim.config import EngineConfig, get_gpu, get_model
from nanosim.core.request import Request
from nanosim.sim.job import run_simulation

CFG = EngineConfig(block_size_tokens=16, max_num_seqs=8, max_num_batched_tokens=256,
                   max_model_len=400, num_kv_blocks=40, preemption_mode="swap")


def _kind(p, d):
    return "mixed" if p and d else "prefill" if p else "decode" if d else "other"


@pytest.mark.parametrize("replicas", [1, 3])
@pytest.mark.parametrize("frames", [True, False])
def test_summary_steps_aggregate_the_rows(replicas, frames):
    reqs = [Request(i, 0.002 * i, 60 + 13 * (i % 9), 90 + 23 * (i % 5)) for i in range(120)]
    args = (reqs, get_model("qwen3-0.6b"), get_gpu("h100"), CFG, None)
    kw = dict(replicas=replicas, router="least_kv", frames=frames)
    r_req, rows, r_sum = run_simulation(*args, **kw)
    s_req, agg, s_sum = run_simulation(*args, step_rows=False, **kw)
    r_req, rows, s_req, agg = (pd.DataFrame(t) for t in (r_req, rows, s_req, agg))
    pd.testing.assert_frame_equal(r_req, s_req, check_exact=True)
    drop = ("wall_s", "sim_speed_x")
    assert {k: v for k, v in r_sum.items() if k not in drop} == {k: v for k, v in s_sum.items() if k not in drop}
    assert r_sum["preemptions"] > 0 and len(rows) > 300
    rows = rows.assign(kind=[_kind(p, d) for p, d in zip(rows.num_prefill_seqs, rows.num_decode_seqs)],
                       end_s=rows.start_s + rows.duration_s)
    keys = ["replica", "kind"] if replicas > 1 else ["kind"]
    want = rows.groupby(keys).agg(
        steps=("step", "size"), duration_s=("duration_s", "sum"), max_duration_s=("duration_s", "max"),
        num_prefill_seqs=("num_prefill_seqs", "sum"), prefill_tokens=("prefill_tokens", "sum"),
        num_decode_seqs=("num_decode_seqs", "sum"), decode_context_tokens=("decode_context_tokens", "sum"),
        max_kv_blocks_used=("kv_blocks_used", "max"), first_start_s=("start_s", "min"),
        last_end_s=("end_s", "max"))
    got = agg.set_index(keys).sort_index()
    want = want.sort_index()
    assert len(got) == len(want) >= 2 * replicas
    for c in want.columns:
        if c in ("duration_s",):  # summed in another order: equal up to rounding
            np.testing.assert_allclose(got[c], want[c], rtol=1e-12)
        else:
            assert got[c].tolist() == want[c].tolist(), c


def test_help_says_what_summary_drops(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--steps {rows,summary}" in text and "drops the per-step timeline" in text
