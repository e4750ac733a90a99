"""Kill a real `nanosim sweep` process mid-way (SIGKILL, no cleanup), then resume it:
every point ends up in the store exactly once, with the same figures as a run that was
never interrupted."""
import os
import signal
import subprocess
import sys
import time

import pandas as pd

from nanosim.sweep import ResultStore
from tests.sweep.helpers import comparable, run_text, write_spec

# 24 points of 300 chat requests (~0.1 s each with one worker).
SPEC = """name = "kill-me"
[fixed]
model = "qwen3-0.6b"
gpu = "h100"
workload = "chatbot"
rate_rps = 20.0
num_requests = 300
[grid]
seed = [0, 1, 2, 3, 4, 5, 6, 7]
block_size_tokens = [16, 64, 256]
"""
TOTAL = 24


def start_sweep(spec, out):
    cmd = [sys.executable, "-m", "nanosim.cli", "sweep", str(spec), "--out", str(out),
           "--workers", "1", "--no-progress"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # its own group: kill it and its workers


def wait_for_points(out, n: int, proc, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (out / "points").is_dir() and len(ResultStore(out).committed_ids()) >= n:
            return
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.02)
    raise AssertionError(f"fewer than {n} points after {timeout_s} s")


def test_killed_sweep_resumes_without_loss_or_duplicates(tmp_path):
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out"
    proc = start_sweep(spec, out)
    try:
        wait_for_points(out, 4, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, the forkserver and the worker
        proc.wait(timeout=10)
    done_at_kill = len(ResultStore(out).committed_ids())
    assert 4 <= done_at_kill < TOTAL, "the sweep finished before the kill: make points slower"

    rep, store = run_text(tmp_path, SPEC)  # the same spec and folder: resume
    assert rep.skipped == done_at_kill and rep.ok == TOTAL - done_at_kill and rep.failed == 0
    pts = store.points()
    assert len(pts) == TOTAL and pts["point_id"].is_unique
    req = store.requests()
    assert req.groupby("point_id").size().eq(300).all() and req["point_id"].nunique() == TOTAL
    assert not req.duplicated(["point_id", "request_id"]).any()
    assert not list(out.glob("*/.tmp-*"))

    _, fresh = run_text(tmp_path, SPEC, "fresh")  # never interrupted
    pd.testing.assert_frame_equal(comparable(store), comparable(fresh))
