"""Real mode's engine in its own process (nanosim/serve/engine_core.py): a client that goes
away frees its blocks in the engine process, a bad model is one error line before anything
listens, and no engine process outlives the server, however the server ends."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.robust.test_sweep_signals import alive, descendants
from tests.serve.conftest import running_server, server_process

ROOT = Path(__file__).resolve().parents[2]
OPTS = ["--device", "cpu", "--dtype", "float32", "--block-size", "8", "--max-model-len", "256",
        "--max-num-batched-tokens", "64", "--max-num-seqs", "4"]


def _metrics(url: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    # labels other than the server's model_name / engine
    return {(s.name, frozenset((k, v) for k, v in s.labels.items() if k not in ("model_name", "engine"))): s.value
            for fam in text_string_to_metric_families(httpx.get(url + "/metrics").text)
            for s in fam.samples}


def test_disconnect_frees_the_blocks_in_the_engine_process(tiny_dir):
    with running_server(["--model", str(tiny_dir), *OPTS]) as (url, state):
        body = {"prompt": list(range(1, 120)), "max_tokens": 120, "stream": True,
                "ignore_eos": True}
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=30) as resp:
            events = 0
            for line in resp.iter_lines():
                events += line.startswith("data: ")
                if events == 3:
                    assert _metrics(url)[("vllm:kv_cache_usage_perc", frozenset())] > 0
                    break
        deadline = time.monotonic() + 10
        while state.driver.live or _metrics(url)[("vllm:kv_cache_usage_perc", frozenset())] > 0:
            assert time.monotonic() < deadline, "the engine process still holds the request's blocks"
            time.sleep(0.05)
        m = _metrics(url)
        assert m[("vllm:request_success_total", frozenset({("finished_reason", "abort")}))] == 1
        assert m[("vllm:num_requests_running", frozenset())] == 0
        # the engine serves the next request as usual
        r = httpx.post(url + "/v1/completions", json={"prompt": [1, 2, 3], "max_tokens": 5,
                                                      "ignore_eos": True}, timeout=30)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 5


def test_a_bad_model_is_one_line_before_listening(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for model, says in (("nope-model", "unknown model 'nope-model'"),
                        (str(tmp_path), "config.json: not found")):
        p = subprocess.run([sys.executable, "-m", "nanosim", "serve", "--model", model, "--port", "0",
                            "--device", "cpu"], capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode != 0 and "listening" not in p.stdout
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0] and "Traceback" not in p.stderr, p.stderr


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_no_engine_process_outlives_the_server(tiny_dir, sig):
    with server_process(["--model", str(tiny_dir), *OPTS], ROOT) as (url, proc):
        kids = descendants(proc.pid)
        assert kids, "the engine process is not a child of the server"
        assert httpx.post(url + "/v1/completions", json={"prompt": [1, 2], "max_tokens": 3},
                          timeout=30).status_code == 200
        proc.send_signal(sig)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while alive(kids):
            assert time.monotonic() < deadline, f"still running after {sig.name}: {alive(kids)}"
            time.sleep(0.05)


def test_a_dead_engine_process_turns_health_503(tiny_dir):
    with running_server(["--model", str(tiny_dir), *OPTS]) as (url, state):
        assert httpx.get(url + "/health").status_code == 200
        os.kill(state.driver.engine.proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while httpx.get(url + "/health").status_code != 503:
            assert time.monotonic() < deadline, "/health still 200 with the engine process gone"
            time.sleep(0.05)
        r = httpx.post(url + "/v1/completions", json={"prompt": [1, 2], "max_tokens": 3}, timeout=10)
        assert r.status_code == 503 and "engine process exited" in r.json()["error"]["message"]


def test_ctrl_c_to_the_process_group_shuts_down_cleanly(tiny_dir):
    """SIGINT to the whole group (a terminal's Ctrl-C) reaches the engine process too: it
    leaves the shutdown to the server, so a stream in flight still finishes within the grace
    period; then the server stops the engine process: no traceback, nothing left running."""
    import json
    import threading

    with server_process(["--model", str(tiny_dir), *OPTS, "--log-level", "info"], ROOT,
                        new_session=True) as (url, proc):
        kids = descendants(proc.pid)
        events: list[str] = []

        def read():
            body = {"prompt": [1, 2, 3], "max_tokens": 200, "stream": True, "ignore_eos": True}
            with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as r:
                events.extend(line[6:] for line in r.iter_lines() if line.startswith("data: "))

        th = threading.Thread(target=read)
        th.start()
        deadline = time.monotonic() + 30
        while len(events) < 3:
            assert time.monotonic() < deadline, "no tokens streamed"
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGINT)  # while the engine process is stepping
        th.join(timeout=60)
        assert proc.wait(timeout=30) == 130  # the shell's code for Ctrl-C
        log = proc.stdout.read()
        deadline = time.monotonic() + 15
        while alive(kids):
            assert time.monotonic() < deadline, f"still running after Ctrl-C: {alive(kids)}"
            time.sleep(0.05)
    assert events[-1] == "[DONE]" and json.loads(events[-2])["choices"][0]["finish_reason"] == "length"
    assert "Application shutdown complete" in log and "Traceback" not in log, log
