"""Running sweeps: pool = inline, failures isolated, resume without loss or duplicates."""
import pandas as pd
import pytest

from nanosim.cli import main
from nanosim.sweep import load_spec
from nanosim.sweep.worker import point_record
from nanosim.workload import make_workload, write_canonical
from tests.sweep.helpers import TINY, comparable, run_text, write_spec

GRID = TINY + "[grid]\npolicy = ['fcfs', 'sjf']\nblock_size_tokens = [16, 64]\n"


def test_pool_and_inline_give_identical_results(tmp_path):
    rep_inline, inline = run_text(tmp_path, GRID, "inline", workers=0)
    rep_pool, pool = run_text(tmp_path, GRID, "pool", workers=2)
    assert (rep_inline.ok, rep_pool.ok, rep_pool.slots) == (4, 4, 2)
    pd.testing.assert_frame_equal(comparable(inline), comparable(pool))
    by = ["point_id", "request_id"]
    pd.testing.assert_frame_equal(inline.requests().sort_values(by).reset_index(drop=True),
                                  pool.requests().sort_values(by).reset_index(drop=True))


def test_store_holds_parameters_summary_and_tables(tmp_path):
    _, store = run_text(tmp_path, GRID)
    pts = store.points()
    assert list(pts["point_id"]) == store.meta["point_ids"]  # spec order
    assert (pts["status"] == "ok").all() and (pts["error"] == "").all()
    for col in ("policy", "block_size_tokens", "model", "gpus", "ttft_p99_s", "tpot_p50_s",
                "e2e_p90_s", "output_tok_s", "prefix_cache_hit_rate", "preemptions",
                "rejected", "peak_kv_usage"):
        assert col in pts and pts[col].notna().all(), col
    req = store.requests(params=["policy"])
    assert len(req) == 4 * 30 and {"ttft_s", "tpot_s", "e2e_s", "policy", "replica"} <= set(req)
    tl = store.timeline()
    assert {"t_s", "kv_usage", "batch_size", "busy_s"} <= set(tl)
    assert tl.groupby("point_id").size().max() <= 400  # binned
    assert 0 <= tl["kv_usage"].min() and tl["kv_usage"].max() <= 1


def test_binned_steps_keep_totals_and_full_steps_on_request(tmp_path):
    _, store = run_text(tmp_path, TINY + '[output]\nsteps = "full"\nstep_bins = 50\n')
    steps, tl = store.steps(), store.timeline()
    assert len(tl) <= 50 and tl["steps"].sum() == len(steps)
    assert tl["busy_s"].sum() == pytest.approx(steps["duration_s"].sum())
    assert tl["decode_tokens"].sum() == steps["num_decode_seqs"].sum()


def test_a_failing_point_is_recorded_and_the_others_go_on(tmp_path, capsys):
    trace = tmp_path / "trace.csv"
    write_canonical(make_workload("chatbot", 20.0, num_requests=30, seed=0), trace)
    text = TINY.replace('workload = "chatbot"', f'trace = "{trace}"').replace(
        "rate_rps = 20.0\nnum_requests = 30\n", "")
    text += "[grid]\nwindow_s = [[0, 1], [1000, 2000], [0, 1000]]\n"
    path = write_spec(tmp_path, text)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--workers", "0", "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "failed: ValueError: the workload is empty" in captured.out
    assert "1 point(s) failed" in captured.err
    _, store = run_text(tmp_path, text)  # resume: nothing left to run
    pts = store.points().set_index("window_s")
    assert list(pts["status"]) == ["ok", "failed", "ok"]
    assert pts.loc["[1000.0, 2000.0]", "error"].startswith("ValueError: the workload is empty")
    assert "Traceback" in pts.loc["[1000.0, 2000.0]", "error"]
    assert store.requests()["point_id"].nunique() == 2


def test_resume_runs_only_what_is_missing(tmp_path):
    rep, store = run_text(tmp_path, GRID, limit=1)
    assert (rep.ok, rep.skipped, len(store.points())) == (1, 0, 1)
    rep, store = run_text(tmp_path, GRID)
    assert (rep.ok, rep.skipped) == (3, 1)
    rep, _ = run_text(tmp_path, GRID)
    assert (rep.ok, rep.skipped) == (0, 4)
    assert store.requests().groupby("point_id").size().tolist() == [30] * 4


def test_retry_failed_reruns_only_failed_points(tmp_path):
    _, store = run_text(tmp_path, GRID)
    point = load_spec(tmp_path / "spec.toml").points[1]
    store.write_point(point_record(point, "failed", "boom", {}, 0.0), {})  # as if it failed
    rep, _ = run_text(tmp_path, GRID)
    assert (rep.ok, rep.failed) == (0, 0)
    rep, _ = run_text(tmp_path, GRID, retry_failed=True)
    assert (rep.ok, rep.skipped) == (1, 3)
    assert (store.points()["status"] == "ok").all()


def test_results_are_reproducible_and_seeds_matter(tmp_path):
    text = TINY + "[grid]\nseed = [0, 1]\n"
    _, a = run_text(tmp_path, text, "a")
    _, b = run_text(tmp_path, text, "b")
    pd.testing.assert_frame_equal(comparable(a), comparable(b))
    pts = a.points()
    assert pts.loc[0, "ttft_p50_s"] != pts.loc[1, "ttft_p50_s"]


def test_same_seed_same_workload_across_engine_knobs(tmp_path):
    _, store = run_text(tmp_path, GRID)
    req = store.requests().sort_values(["point_id", "request_id"])
    arrivals = req.groupby("point_id")["arrival_s"].apply(tuple)
    assert arrivals.nunique() == 1  # common random numbers


def test_another_spec_is_refused_unless_forced(tmp_path):
    run_text(tmp_path, GRID)
    other = GRID.replace("[16, 64]", "[16, 32]")
    with pytest.raises(ValueError, match="other points than this spec"):
        run_text(tmp_path, other)
    rep, store = run_text(tmp_path, other, force=True)
    assert (rep.ok, rep.skipped) == (2, 2)  # block 16 points reused
    assert len(store.points()) == 4 and len(store.points(include_stale=True)) == 6


def test_cli_progress_bar_and_summary(tmp_path, capsys):
    path = write_spec(tmp_path, GRID)
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--workers", "0"]) == 0
    cap = capsys.readouterr()
    assert "4/4 points done" in cap.err and "running" in cap.err and "failed 0" in cap.err
    assert "ETA" in cap.err
    assert "4 ok, 0 failed, 0 already done (of 4 points)" in cap.out
    assert "nanosim report" in cap.out


class DyingWorkers:
    """An executor whose worker dies under some points: `deaths` per point id."""

    slots = 1

    def __init__(self, deaths: dict):
        self.deaths = dict(deaths)

    def submit(self, task):
        return task

    def wait(self, handles, timeout_s):
        from nanosim.sweep.worker import run_point

        out = []
        for task in handles:
            if self.deaths.get(task.point_id, 0) > 0:
                self.deaths[task.point_id] -= 1
                out.append((task, RuntimeError("worker killed")))
            else:
                out.append((task, run_point(task)))
        return out

    def close(self, cancel=False):
        pass


def test_points_caught_in_a_worker_death_are_rerun(tmp_path, monkeypatch):
    from nanosim.sweep import runner

    spec = load_spec(write_spec(tmp_path, GRID))
    once, always = spec.point_ids[0], spec.point_ids[1]
    fake = DyingWorkers({once: 1, always: 99})
    monkeypatch.setattr(runner, "make_executor", lambda *a: fake)
    rep = runner.run_sweep(spec, tmp_path / "out", progress=False)
    assert (rep.ok, rep.failed) == (3, 1)
    pts = runner.ResultStore(tmp_path / "out").points().set_index("point_id")
    assert pts.loc[once, "status"] == "ok"
    assert pts.loc[always, "error"].startswith("worker died 3 times while this point")
