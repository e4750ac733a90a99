"""A `nanosim sweep` driver killed by SIGKILL or stopped by SIGTERM leaves no process behind
(workers, forkserver, resource tracker), and SIGTERM stops it as cleanly as Ctrl-C
(issue 21, item 4). Real subprocesses, real signals; descendants read from /proc."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nanosim.sweep import ResultStore
from tests.sweep.helpers import write_spec

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

SPEC = """name = "signal-me"
[fixed]
model = "qwen3-0.6b"
gpu = "h100"
workload = "chatbot"
rate_rps = 20.0
num_requests = 300
[grid]
seed = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
block_size_tokens = [16, 64]
"""


def _stat(pid: int):
    """(ppid, state, start time) of a live pid, else None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), fields[0], fields[19]


def descendants(root: int) -> dict[int, str]:
    """pid -> start time of every live descendant of root."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and (st := _stat(int(d))) is not None:
            children.setdefault(st[0], []).append(int(d))
    out, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if (st := _stat(pid)) is not None:
            out[pid] = st[2]
            todo += children.get(pid, [])
    return out


def alive(procs: dict[int, str]) -> list[int]:
    """Those still running (same start time: not a reused pid; zombies count as gone)."""
    return [p for p, t in procs.items() if (st := _stat(p)) and st[2] == t and st[1] != "Z"]


def start(tmp_path):
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "nanosim.cli", "sweep", str(spec), "--out", str(out),
           "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (out / "points").is_dir() and len(ResultStore(out).committed_ids()) >= 2:
            kids = descendants(proc.pid)
            if len(kids) >= 3:  # forkserver, resource tracker, >= 1 worker
                return proc, out, kids
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("the sweep did not get going")


def wait_gone(procs: dict[int, str], timeout_s: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while alive(procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive(procs)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_no_process_outlives_the_driver(tmp_path, sig):
    proc, out, kids = start(tmp_path)
    try:
        os.kill(proc.pid, sig)  # the driver alone, not its process group
        rc = proc.wait(timeout=20)
        left = wait_gone(kids)
        assert not left, f"still running after the driver died: {left}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # cleanup if the assertion failed
    err = proc.stderr.read().decode()
    if sig == signal.SIGTERM:  # as clean as Ctrl-C: a message, no traceback, resumable
        assert rc == 128 + signal.SIGTERM, err
        assert "rerun the same command" in err and "Traceback" not in err, err
        done = len(ResultStore(out).committed_ids())
        assert 2 <= done < 32
        assert not list(out.glob("*/.tmp-*"))


def test_a_sigterm_swallowed_by_a_finalizer_still_stops_the_sweep(tmp_path):
    """The handler raises where the main thread is; inside a finalizer (a ParquetWriter's
    __del__, as CI once caught) Python prints "Exception ignored" and goes on, and the sweep
    finished with exit 0. The signal is remembered: the loop's check raises it again, and
    the sweep stops before its next point with what it finished kept."""
    from nanosim.sweep.commands import Terminated, _sigterm_as_interrupt
    from tests.sweep.helpers import run_text

    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10_000):  # the Python handler runs here, inside the finalizer
                pass

    with _sigterm_as_interrupt() as check_stop:
        Finalized()  # dropped at once: its __del__ swallows the handler's Terminated
        with pytest.raises(Terminated):
            check_stop()
        with pytest.raises(Terminated):  # the sweep's loop checks before each wait
            run_text(tmp_path, SPEC.replace("seed = [0, 1, 2", "seed = [0"), check_stop=check_stop)
    assert not (tmp_path / "out" / "points").is_dir() or not ResultStore(tmp_path / "out").committed_ids()
