"""`nanosim validate --suite`: the suite file is checked before any run; the measured side
comes from recorded replays of a synthetic GPU whose step times the test sets, so the
scorecard's figures can be computed here independently; a run that fails leaves the others."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nanosim.calibrate.suite_spec import SuiteError, load_suite
from nanosim.calibrate.validate import (SHAPE_FIELDS, RecordingBackend, batch_kind, validate_replay,
                                        write)
from nanosim.cli import main
from nanosim.config import EngineConfig, get_gpu, get_model
from nanosim.core.batch import StepShape
from nanosim.core.engine import Engine
from nanosim.sim.backend import SimBackend
from nanosim.sim.costmodel import RooflineCostModel
from nanosim.sim.simulator import simulate
from nanosim.workload import make_workload
from nanosim.workload.canonical_csv import write as write_trace

MODEL, GPU = get_model("qwen3-0.6b"), get_gpu("h100")
BLOCKS = 600

SUITE = """\
[suite]
name = "tiny"

[defaults]
model = "qwen3-0.6b"

[loads.light]
max_requests = 40
[loads.medium]
rate_scale = 4.0
max_requests = 60

[[trace]]
name = "late"
role = "held_out"
trace = "{trace}"
window = [20, 100000]
loads = ["light", "medium"]
quick = ["light"]

[[trace]]
name = "early"
role = "tuned"
trace = "{trace}"
loads = ["light"]
"""


class SlowerRoofline:
    """The synthetic GPU: every step takes ``factor`` x the default roofline's time."""

    def __init__(self, factor: float):
        self.rf, self.factor = RooflineCostModel(MODEL, GPU), factor

    def step_time_s(self, shape):
        return self.factor * self.rf.step_time_s(shape)

    def decode_run_s(self, *a):
        return self.factor * self.rf.decode_run_s(*a)


@pytest.fixture
def suite_dir(tmp_path):
    trace = tmp_path / "trace.csv"
    write_trace(make_workload("chatbot", 1.5, num_requests=150, seed=3), trace)
    (tmp_path / "suite.toml").write_text(SUITE.format(trace=trace))
    return tmp_path


def record(suite_path: Path, out: Path, factor: float) -> Path:
    """What a GPU suite run would have written: each run replayed on the synthetic GPU."""
    from nanosim.calibrate.suite_run import load_requests

    cfg = EngineConfig(max_model_len=4096)
    for run in load_suite(suite_path).runs:
        reqs = load_requests(run)
        real = Engine(cfg, RecordingBackend(SimBackend(SlowerRoofline(factor))), BLOCKS)
        sim = Engine(cfg, SimBackend(RooflineCostModel(MODEL, GPU)), BLOCKS)
        v = validate_replay(reqs, real, sim)
        write(v, out / "runs" / run.name, {
            "trace": run.source, "requests": len(reqs), "model": MODEL.name, "tp": 1,
            "gpu": "NVIDIA H100 80GB HBM3", "engine": dataclasses.asdict(cfg),
            "kv_blocks": {"gpu": BLOCKS, "host": 0}, "step_jitter": False})
    return out


def test_scorecard_from_recorded_replays_matches_figures_computed_here(suite_dir, capsys):
    rec = record(suite_dir / "suite.toml", suite_dir / "rec", factor=1.1)
    out = suite_dir / "score"
    rc = main(["validate", "--suite", str(suite_dir / "suite.toml"), "--recorded", str(rec),
               "--profile", "none", "--out", str(out), "--no-progress"])
    card = json.loads((out / "scorecard.json").read_text())
    rows = {r["run"]: r for r in card["runs"]}
    assert set(rows) == {"late-light-qwen3-0.6b-tp1", "late-medium-qwen3-0.6b-tp1",
                         "early-light-qwen3-0.6b-tp1"}
    assert rows["early-light-qwen3-0.6b-tp1"]["role"] == "tuned"
    from nanosim.calibrate.suite_run import load_requests

    for run in load_suite(suite_dir / "suite.toml").runs:
        row = rows[run.name]
        assert row["status"] == "ok" and row["requests"] == len(load_requests(run))
        # every step is 1.1x the roofline the suite predicts with: |pred - meas| / meas = 1/11
        for kind in ("all", "decode", "mixed", "prefill"):
            if row["steps"][kind]:
                assert row["step_mape"][kind] == pytest.approx(1 - 1 / 1.1, rel=1e-9)
        # latency errors: the recorded real requests against a simulation made here
        real = pd.read_parquet(rec / "runs" / run.name / "real_requests.parquet")
        eng = Engine(EngineConfig(max_model_len=4096), SimBackend(RooflineCostModel(MODEL, GPU)), BLOCKS)
        simulate(eng, load_requests(run))
        sim, _ = eng.results()
        for m in ("ttft", "tpot", "e2e"):
            for q in (50, 90, 99):
                r, s = (np.percentile(d[f"{m}_s"].dropna(), q) for d in (real, sim))
                assert row["latency_error"][m][f"p{q}"] == pytest.approx((s - r) / r, rel=1e-9, abs=1e-12)
        assert row["latency_error"]["tpot"]["p50"] < -0.05  # a 10% slower GPU: the sim is fast
        assert any(o.startswith("tpot p50") for o in row["over_target"])
    md = (out / "scorecard.md").read_text()
    assert md.index("held-out") < md.index("tuned") and "late-medium-qwen3-0.6b-tp1" in md
    assert rc == 1  # held-out runs over target
    assert "scorecard" in capsys.readouterr().out


def test_a_missing_plotting_library_costs_the_figure_not_the_run(suite_dir, monkeypatch, capsys):
    """A GPU box set up by hand may lack plotly: the run's tables and its scorecard row are
    kept (a real replay took minutes), only validation.html is left out, with a warning."""
    import sys

    rec = record(suite_dir / "suite.toml", suite_dir / "rec", factor=1.1)
    monkeypatch.setitem(sys.modules, "plotly", None)  # import plotly raises ImportError
    out = suite_dir / "score"
    main(["validate", "--suite", str(suite_dir / "suite.toml"), "--recorded", str(rec),
          "--profile", "none", "--out", str(out), "--no-progress"])
    rows = json.loads((out / "scorecard.json").read_text())["runs"]
    assert [r["status"] for r in rows] == ["ok"] * 3
    for r in rows:
        d = out / "runs" / r["run"]
        assert (d / "validation.json").is_file() and not (d / "validation.html").exists()
    assert "validation.html not written" in capsys.readouterr().err


def test_exact_gpu_scores_zero_and_quick_picks_the_marked_runs(suite_dir):
    rec = record(suite_dir / "suite.toml", suite_dir / "rec", factor=1.0)
    out = suite_dir / "score"
    rc = main(["validate", "--suite", str(suite_dir / "suite.toml"), "--recorded", str(rec),
               "--profile", "none", "--out", str(out), "--no-progress", "--quick"])
    runs = json.loads((out / "scorecard.json").read_text())["runs"]
    assert [r["run"] for r in runs] == ["late-light-qwen3-0.6b-tp1"]
    r = runs[0]
    assert r["step_mape"]["all"] == 0.0 and r["over_target"] == []
    assert all(v == 0.0 for qs in r["latency_error"].values() for v in qs.values())
    assert rc == 0


def test_a_failed_run_keeps_the_others(suite_dir):
    rec = record(suite_dir / "suite.toml", suite_dir / "rec", factor=1.0)
    bad = rec / "runs" / "late-medium-qwen3-0.6b-tp1" / "validation.json"
    meta = json.loads(bad.read_text())
    bad.write_text(json.dumps({**meta, "requests": meta["requests"] + 1}))
    out = suite_dir / "score"
    rc = main(["validate", "--suite", str(suite_dir / "suite.toml"), "--recorded", str(rec),
               "--profile", "none", "--out", str(out), "--no-progress"])
    runs = {r["run"]: r for r in json.loads((out / "scorecard.json").read_text())["runs"]}
    assert runs["late-medium-qwen3-0.6b-tp1"]["status"] == "failed"
    assert "replayed" in runs["late-medium-qwen3-0.6b-tp1"]["error"]
    assert runs["late-light-qwen3-0.6b-tp1"]["status"] == runs["early-light-qwen3-0.6b-tp1"]["status"] == "ok"
    assert (out / "runs" / "early-light-qwen3-0.6b-tp1" / "validation.json").is_file()
    assert "FAILED" in (out / "scorecard.md").read_text()
    assert rc == 1


@pytest.mark.parametrize("edit,where,says", [
    (("role = \"tuned\"", "role = \"maybe\""), 23, "role must be one of"),
    (("loads = [\"light\"]\n", "loads = [\"light\"]\nwindows = 3\n"), 26, "unknown key 'windows'"),
    (("quick = [\"light\"]", "quick = [\"saturated\"]"), 19, "quick names"),
    (("window = [20, 100000]", "window = [200, 100]"), 17, "window must be"),
    (("max_requests = 60", "max_requests = 0"), 11, "max_requests must be an integer >= 1"),
    (("name = \"early\"", "name = \"late\""), 21, "already in the suite"),
    (("[loads.medium]", "[loads.medium"), 9, "not valid TOML"),
])
def test_bad_suite_is_one_line_naming_file_and_line(suite_dir, capsys, edit, where, says):
    path = suite_dir / "suite.toml"
    path.write_text(path.read_text().replace(*edit))
    rc = main(["validate", "--suite", str(path), "--out", str(suite_dir / "o"), "--profile", "none"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert f"{path}:{where}:" in err and says in err, err
    assert not (suite_dir / "o").exists()  # nothing started


def test_missing_trace_or_recording_stops_before_any_run(suite_dir, capsys):
    path = suite_dir / "suite.toml"
    rc = main(["validate", "--suite", str(path), "--recorded", str(suite_dir / "nothing"),
               "--out", str(suite_dir / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{path}:13: trace 'late'" in err and "validation.json" in err
    path.write_text(path.read_text().replace(str(suite_dir / "trace.csv"), "no-such-trace-name"))
    rc = main(["validate", "--suite", str(path), "--out", str(suite_dir / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{path}:13: trace 'late'" in err and "no-such-trace-name" in err
    assert not (suite_dir / "o").exists()


def test_shipped_suite_names_held_out_and_tuned_windows(trace_cache):
    from nanosim.calibrate.suite_spec import DEFAULT_LOADS

    suite = load_suite(Path(__file__).resolve().parents[2] / "benchmarks" / "suites" / "heldout.toml")
    by_trace = {r.trace_name: r for r in suite.runs}
    assert {"conv-late", "code-late", "burstgpt", "mooncake", "long-prompt"} <= set(by_trace)
    held = [r for r in suite.runs if r.role == "held_out"]
    tuned = [r for r in suite.runs if r.role == "tuned"]
    # the tuned windows (the first 20 minutes) are never reported as held out
    assert all("-20min" in r.source for r in tuned)
    assert not any(r.source.startswith(("azure2023-conv-20min", "azure2023-code-20min")) for r in held)
    assert by_trace["conv-late"].source == "azure2023-conv[2400:3600]"
    assert {r.load for r in suite.runs} == set(DEFAULT_LOADS)
    quick = suite.select(quick=True, max_requests=100)
    assert 0 < len(quick) < len(suite.runs) and all(r.max_requests <= 100 for r in quick)
    with pytest.raises(SuiteError):
        load_suite(Path(__file__))  # not TOML


def test_live_suite_on_a_tiny_cpu_model_reuses_one_runner(tmp_path):
    """The live path (what a GPU machine runs): a tiny Qwen3 on the CPU replays two runs on
    one loaded runner; the scorecard's step MAPE is the one its step_errors.parquet gives."""
    pytest.importorskip("transformers")
    from nanosim.gpu.llm import resolve_model
    from tests.tiny_qwen3 import save_tiny_qwen3

    model_dir = tmp_path / "tiny-qwen3"
    save_tiny_qwen3(model_dir)
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n"
                     + "".join(f"{0.01 * i:.2f},{10 + 3 * i},{4 + i % 5}\n" for i in range(8)))
    (tmp_path / "s.toml").write_text(f"""
[defaults]
model = "{model_dir}"
max_model_len = 128
[loads.light]
max_requests = 8
[loads.saturated]
rate_scale = 16.0
max_requests = 8
num_kv_blocks = 10
[[trace]]
name = "t"
role = "held_out"
trace = "{trace}"
loads = ["light", "saturated"]
""")
    out = tmp_path / "o"
    main(["validate", "--suite", str(tmp_path / "s.toml"), "--out", str(out), "--device", "cpu",
          "--dtype", "float32", "--gpu", "h100", "--profile", "none", "--block-size", "16",
          "--no-progress"])
    rows = json.loads((out / "scorecard.json").read_text())["runs"]
    assert [r["status"] for r in rows] == ["ok", "ok"], rows
    spec = resolve_model(str(model_dir))[0]
    for r in rows:
        d = out / "runs" / r["run"]
        steps = pd.read_parquet(d / "step_errors.parquet")
        assert r["requests"] == 8 and (steps.measured_s > 0).all()
        # the prices are the roofline's for the tiny model's shapes on the h100 preset
        rf = RooflineCostModel(spec, GPU, block_size_tokens=16)
        shapes = [StepShape(**{f: row[f] for f in SHAPE_FIELDS}) for row in steps.to_dict("records")]
        pred = np.array([rf.step_time_s(s) for s in shapes])
        assert np.allclose(pred, steps.predicted_s, rtol=1e-12)
        want = np.mean(np.abs(pred - steps.measured_s) / steps.measured_s)
        assert r["step_mape"]["all"] == pytest.approx(want, rel=1e-9)
        assert {batch_kind(s) for s in shapes} <= {"prefill", "decode", "mixed"}
        # the runner's own timing of each step's forward (CUDA events on a GPU, the clock
        # here) is recorded beside the step's wall time, and is part of it
        assert (steps.gpu_s > 0).all() and (steps.gpu_s < steps.measured_s).all()
        assert r["host_time"]["all"]["host_s"] == pytest.approx(
            float((steps.measured_s - steps.gpu_s).median()))
    meta = json.loads((out / "runs" / rows[1]["run"] / "validation.json").read_text())
    assert meta["kv_blocks"]["gpu"] == 10 and meta["gpu"] == "cpu"
    # the single-trace command runs the same replay on the CPU
    rc = main(["validate", "--trace", str(trace), "--model", str(model_dir), "--out", str(tmp_path / "one"),
               "--device", "cpu", "--dtype", "float32", "--gpu", "h100", "--profile", "none",
               "--block-size", "16", "--max-model-len", "128", "--no-progress"])
    one = json.loads((tmp_path / "one" / "validation.json").read_text())
    assert rc in (0, 1) and one["requests"] == 8 and one["cost_model"].startswith("roofline")
