"""Bad tp values are refused before any process starts; a worker that dies (killed, an
exception mid-step, an exception at start-up) gives WorkerDied with its exit code or
traceback, quickly, and leaves nothing behind."""
import multiprocessing as mp
import os
import signal
import time

import pytest
import torch
import torch.distributed as dist

from nanosim.cli import main
from nanosim.config import get_model
from nanosim.gpu.dist import check_tp_config
from nanosim.gpu.llm import LLM, SamplingParams
from nanosim.gpu.tp import WorkerDied
from nanosim.gpu.worker import FAULT_ENV
from tests.tp.conftest import ENGINE, TIMEOUT_S, prompts

SP = SamplingParams(temperature=0.0, max_tokens=20)


def _no_leftovers() -> None:
    assert not mp.active_children() and not dist.is_initialized()


@pytest.mark.parametrize("tp, match", [(3, "attention heads"), (4, "KV heads"),
                                       (0, "integer >= 1"), ("2", "integer >= 1")])
def test_bad_tp_rejected_before_any_process(tiny_dir, tp, match):
    with pytest.raises(ValueError, match=match):
        LLM(str(tiny_dir), tensor_parallel_size=tp, **ENGINE)
    _no_leftovers()


def test_more_ranks_than_gpus_rejected():
    spec, cuda = get_model("qwen3-0.6b"), torch.device("cuda")  # 16 q / 8 KV heads
    with pytest.raises(ValueError, match=r"needs GPUs cuda:0..cuda:3 but 2 are visible"):
        check_tp_config(spec, 4, cuda, device_count=2)
    with pytest.raises(ValueError, match="cuda:1..cuda:2 but 2"):
        check_tp_config(spec, 2, torch.device("cuda:1"), device_count=2)
    check_tp_config(spec, 2, cuda, device_count=2)  # fits


def test_cli_rejects_bad_tp(tiny_dir, tmp_path, capsys):
    rc = main(["run", "--workload", "chatbot", "--num-requests", "2", "--model", str(tiny_dir),
               "--device", "cpu", "--dtype", "float32", "--tp", "3", "--out", str(tmp_path / "x"),
               "--no-progress"])
    assert rc == 2 and "does not divide" in capsys.readouterr().err
    _no_leftovers()


def test_killed_worker_gives_clear_error(tiny_dir):
    llm = LLM(str(tiny_dir), tensor_parallel_size=2, dist_timeout_s=TIMEOUT_S, **ENGINE)
    worker = llm.runner.procs[0]
    os.kill(worker.pid, signal.SIGKILL)
    worker.join(TIMEOUT_S)
    t0 = time.monotonic()
    with pytest.raises(WorkerDied, match=r"rank 1 \(pid \d+\) exited with signal SIGKILL"):
        llm.generate(prompts(), SP)
    assert time.monotonic() - t0 < 5
    llm.close()
    _no_leftovers()


def test_worker_exception_mid_run_reports_its_traceback(tiny_dir, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "1:3")  # rank 1 raises at its 3rd step, rank 0 is in a collective
    llm = LLM(str(tiny_dir), tensor_parallel_size=2, dist_timeout_s=TIMEOUT_S, **ENGINE)
    t0 = time.monotonic()
    with pytest.raises(WorkerDied, match=r"(?s)rank 1 .*exited with code 1.*Traceback.*injected fault"):
        llm.generate(prompts(), SP)
    assert time.monotonic() - t0 < TIMEOUT_S / 2  # the closed gloo connection, not the timeout
    with pytest.raises(RuntimeError, match="unusable"):
        llm.generate(prompts(), SP)
    llm.close()
    _no_leftovers()


def test_worker_dying_at_startup_fails_the_constructor(tiny_dir, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "1:0")
    t0 = time.monotonic()
    with pytest.raises(WorkerDied, match=r"(?s)exited with code 1.*injected fault .* at start-up"):
        LLM(str(tiny_dir), tensor_parallel_size=2, dist_timeout_s=TIMEOUT_S, **ENGINE)
    assert time.monotonic() - t0 < TIMEOUT_S - 5  # seen at once, not at the timeout
    _no_leftovers()


def test_hung_worker_times_out_instead_of_hanging(tiny_dir):
    timeout = 3.0
    llm = LLM(str(tiny_dir), tensor_parallel_size=2, dist_timeout_s=timeout, **ENGINE)
    worker = llm.runner.procs[0]
    os.kill(worker.pid, signal.SIGSTOP)  # alive but frozen: only the collective timeout can tell
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="(?i)timed out"):
        llm.generate(prompts(), SP)
    assert time.monotonic() - t0 < timeout + 10
    t0 = time.monotonic()
    llm.close()  # SIGTERM stays pending on a stopped process: close() escalates to SIGKILL
    assert time.monotonic() - t0 < 10 and worker.exitcode == -signal.SIGKILL
    _no_leftovers()
