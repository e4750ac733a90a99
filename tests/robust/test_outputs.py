"""Output locations are checked before any work, traces that are folders are refused, and a
run's files are replaced all together or not at all (issue 21, items 1-3)."""
import json
import os

import pandas as pd
import pytest

from nanosim.cli import main
from tests.robust.helpers import TINY_RUN, forbid, one_line_error

SPEC = """name = "tiny"
[fixed]
model = "qwen3-0.6b"
workload = "chatbot"
rate_rps = 20.0
num_requests = 8
"""


def bad_outputs(tmp_path):
    """(label, path, what the error says) for each kind of unusable output location."""
    f = tmp_path / "a_file"
    f.write_text("x")
    cases = [("existing file", f, "existing file"), ("under a file", f / "sub" / "x", "is a file")]
    if os.geteuid() == 0:  # root may write anywhere a permission bit forbids; /proc it may not
        cases.append(("not writable", "/proc/nanosim-out/x", "cannot write"))
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        cases.append(("not writable", ro / "x", "cannot write"))
    return cases


@pytest.mark.parametrize("kind", ["existing file", "under a file", "not writable"])
def test_simulate_out_checked_before_work(tmp_path, capsys, monkeypatch, kind):
    _, path, says = next(c for c in bad_outputs(tmp_path) if c[0] == kind)
    forbid(monkeypatch, "nanosim.sim.job.run_simulation")
    one_line_error(capsys, ["simulate", *TINY_RUN, "--out", str(path)], "--out", says)


@pytest.mark.parametrize("command", ["run", "validate", "profile", "bench serve"])
def test_gpu_commands_out_checked_before_work(tmp_path, capsys, monkeypatch, command):
    forbid(monkeypatch, "nanosim.gpu.llm.LLM")
    forbid(monkeypatch, "nanosim.workload.make_workload")
    f = tmp_path / "a_file"
    f.write_text("x")
    out = f / "x.json" if command == "profile" else f
    work = {"profile": ["--device", "cpu"], "bench serve": ["--workload", "chatbot", "--endpoint",
                                                            "http://127.0.0.1:9"]}.get(
        command, ["--workload", "chatbot", "--device", "cpu"])
    one_line_error(capsys, [*command.split(), *work, "--out", str(out)], "--out")


def test_profile_out_is_a_folder(tmp_path, capsys, monkeypatch):
    forbid(monkeypatch, "nanosim.gpu.llm.LLM")
    one_line_error(capsys, ["profile", "--device", "cpu", "--out", str(tmp_path)],
                   "--out", "existing folder")


def test_trace_convert_out_checked_before_loading(tmp_path, capsys, monkeypatch):
    forbid(monkeypatch, "nanosim.workload.load_trace")
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,10,5\n")
    f = tmp_path / "a_file"
    f.write_text("x")
    one_line_error(capsys, ["trace", "convert", str(trace), str(f / "x.csv")], "is a file")
    one_line_error(capsys, ["trace", "convert", str(trace), str(tmp_path / "x.txt")], ".csv")
    one_line_error(capsys, ["trace", "convert", str(trace), str(tmp_path)], "folder")


def test_sweep_and_report_out_checked(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    f = tmp_path / "a_file"
    f.write_text("x")
    forbid(monkeypatch, "nanosim.sweep.run_sweep")
    one_line_error(capsys, ["sweep", str(spec), "--out", str(f), "--workers", "0"], "--out")
    one_line_error(capsys, ["sweep", str(spec), "--out", str(f / "x"), "--workers", "0"], "--out")
    monkeypatch.undo()
    assert main(["sweep", str(spec), "--out", str(tmp_path / "s"), "--workers", "0",
                 "--no-progress"]) == 0
    forbid(monkeypatch, "nanosim.report.html.build_figures")
    one_line_error(capsys, ["report", str(tmp_path / "s"), "--out", str(f / "r.html")], "--out")
    one_line_error(capsys, ["report", str(tmp_path / "s"), "--out", str(tmp_path)], "folder")


@pytest.mark.parametrize("argv", [["simulate", *TINY_RUN[2:], "--out", "OUT"],
                                  ["trace", "stats"], ["trace", "convert"]])
def test_trace_that_is_a_folder(tmp_path, capsys, argv):
    argv = [a.replace("OUT", str(tmp_path / "o")) for a in argv]
    if argv[0] == "simulate":
        argv = ["simulate", "--trace", str(tmp_path), *argv[1:]]
    else:
        argv = [*argv, str(tmp_path)] + ([str(tmp_path / "x.csv")] if argv[1] == "convert" else [])
    one_line_error(capsys, argv, str(tmp_path), "folder")


def test_load_trace_of_a_folder_raises_trace_error(tmp_path):
    from nanosim.workload import TraceError, load_trace

    with pytest.raises(TraceError, match="folder"):
        load_trace(tmp_path)


def test_failed_rerun_keeps_the_previous_run_whole(tmp_path, capsys, monkeypatch):
    import nanosim.arrow_tables as arrow_tables

    out = tmp_path / "out"
    assert main(["simulate", *TINY_RUN, "--out", str(out)]) == 0
    (out / "notes.txt").write_text("mine")  # a file the run did not write stays
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []

    def fail_second(real):
        def write(*a, **k):  # the rerun dies after writing its first table
            calls.append(1)
            if len(calls) == 2:
                raise OSError(28, "No space left on device")
            return real(*a, **k)
        return write

    monkeypatch.setattr(arrow_tables, "write_parquet", fail_second(arrow_tables.write_parquet))
    monkeypatch.setattr(pd.DataFrame, "to_parquet", fail_second(pd.DataFrame.to_parquet))
    one_line_error(capsys, ["simulate", *TINY_RUN, "--num-requests", "12", "--out", str(out)],
                   "No space left")
    assert len(calls) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left behind
    monkeypatch.undo()
    assert main(["simulate", *TINY_RUN, "--num-requests", "12", "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["requests"] == 12
    assert len(pd.read_parquet(out / "requests.parquet")) == 12
    assert (out / "notes.txt").read_text() == "mine"


def test_rerun_is_byte_identical(tmp_path):
    for name in ("a", "b"):
        assert main(["simulate", *TINY_RUN, "--out", str(tmp_path / name)]) == 0
    for f in ("requests.parquet", "steps.parquet", "summary.json"):
        a, b = (tmp_path / "a" / f).read_bytes(), (tmp_path / "b" / f).read_bytes()
        if f == "summary.json":  # wall-clock figures differ run to run
            a, b = (json.loads(x) for x in (a, b))
            for d in (a, b):
                for k in ("wall_s", "sim_speed_x"):
                    d.pop(k, None)
        assert a == b, f
