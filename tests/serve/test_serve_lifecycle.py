"""Real mode on CPU (a tiny Qwen3 checkpoint streams the same tokens as LLM.generate) and a
graceful SIGTERM of a `nanosim serve` child process (short streams finish, long ones are
aborted after --shutdown-timeout
(finish_reason "abort"), the lifespan shutdown completes)."""
import json
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import running_server, server_process

openai = pytest.importorskip("openai")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("where", ["--engine-process", "--no-engine-process"])
def test_real_mode_cpu_streams_the_tokens_of_llm_generate(tiny_dir, where):
    from nanosim.gpu.llm import LLM, SamplingParams

    prompts = [[5, 6, 7, 8, 9], list(range(20, 61)), [3] * 17]
    opts = dict(block_size=8, max_model_len=128, max_num_batched_tokens=32, max_num_seqs=4)
    llm = LLM(str(tiny_dir), device="cpu", dtype="float32", **opts)
    greedy = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True))
    seeded = llm.generate([prompts[0]], SamplingParams(temperature=0.8, top_k=50, max_tokens=8,
                                                       ignore_eos=True, seed=7))[0]["token_ids"]
    argv = ["--model", str(tiny_dir), "--device", "cpu", "--dtype", "float32", "--block-size", "8",
            "--max-model-len", "128", "--max-num-batched-tokens", "32", "--max-num-seqs", "4", where]
    results = [None] * len(prompts)
    with running_server(argv) as (url, _):
        c = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)

        def stream(i):  # all three at once: they share engine steps (chunked prefill, batching)
            chunks = c.completions.create(model=str(tiny_dir), prompt=prompts[i], max_tokens=12,
                                          temperature=0, stream=True,
                                          extra_body={"ignore_eos": True, "return_token_ids": True})
            results[i] = [t for ch in chunks for t in ch.choices[0].model_extra["token_ids"]]

        threads = [threading.Thread(target=stream, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        one = c.completions.create(model=str(tiny_dir), prompt=prompts[0], max_tokens=8,
                                   temperature=0.8, seed=7, extra_body={"top_k": 50, "ignore_eos": True,
                                                                        "return_token_ids": True})
    assert results == [g["token_ids"] for g in greedy]
    assert one.choices[0].model_extra["token_ids"] == seeded
    assert one.choices[0].text == "".join(f" {t}" for t in seeded)  # no tokenizer: ids as text


def _read(url, body, out):
    try:
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    out.append(line[6:])
    except httpx.HTTPError as e:
        out.append(f"error: {type(e).__name__}")


def test_sigterm_finishes_short_streams_and_aborts_long_ones():
    with server_process(["--sim", "--model", "qwen3-8b", "--gpu", "h100", "--shutdown-timeout", "1.5",
                         "--log-level", "info"], ROOT) as (url, proc):
        short, long = [], []
        threads = [threading.Thread(target=_read, args=(url, {"prompt": [1, 2], "max_tokens": 60, "stream": True}, short)),
                   threading.Thread(target=_read, args=(url, {"prompt": [3, 4], "max_tokens": 5000, "stream": True}, long))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(short) < 2 or len(long) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal after its graceful shutdown: the exit status says SIGTERM
        assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
        took = time.monotonic() - t0
        log = proc.stdout.read()
        for t in threads:
            t.join(timeout=10)
    assert short[-1] == "[DONE]" and json.loads(short[-2])["choices"][0]["finish_reason"] == "length"
    assert sum(1 for x in short[:-1]) == 60  # one chunk per step, all of them
    assert long[-1] == "[DONE]" and len(long) < 5000  # cut off, not finished: ended cleanly
    assert json.loads(long[-2])["choices"][0]["finish_reason"] == "abort"
    assert 1.0 < took < 10.0  # waited for the grace period, then stopped
    assert "Application shutdown complete" in log and "Traceback" not in log
