"""`nanosim bench serve` against `nanosim serve --sim`: at real time it reproduces `nanosim
simulate`'s TTFT/TPOT p50 on the same trace within 5% plus the measured localhost HTTP
overhead; --speedup runs check counts, order and the output schema."""
import json
import random
from pathlib import Path
import time

import httpx
import pandas as pd
import pytest

from nanosim.cli import main
from nanosim.core.metrics import REQUEST_COLUMNS, STEP_COLUMNS
from prometheus_client.parser import text_string_to_metric_families

from tests.serve.conftest import running_server, server_process

ROOT = Path(__file__).resolve().parents[2]

MODEL = "qwen3-8b"
GPU = "l40s"  # roofline steps of ~20-25 ms: far above the asyncio timer's ~1 ms granularity


def write_trace(path, n, rate_rps, seed, prompt=(100, 800), out=(15, 40)):
    rng = random.Random(seed)
    rows, t = ["arrival_s,prompt_tokens,output_tokens"], 0.0
    for p in rng.sample(range(prompt[0], prompt[1] + 1), n):  # distinct: lengths name requests
        rows.append(f"{t:.4f},{p},{rng.randint(*out)}")
        t += rng.expovariate(rate_rps)
    path.write_text("\n".join(rows) + "\n")
    return path


def server_ttft(url) -> tuple[float, float]:
    """(sum, count) of the server's own TTFTs (vllm:time_to_first_token_seconds)."""
    fams = text_string_to_metric_families(httpx.get(url + "/metrics").text)
    got = {s.name: s.value for f in fams for s in f.samples}
    return (got["vllm:time_to_first_token_seconds_sum"],
            got["vllm:time_to_first_token_seconds_count"])


def test_bench_serve_at_real_time_reproduces_simulate(tmp_path):
    """The localhost HTTP overhead is measured on the run itself: the client's mean TTFT minus
    the server's mean TTFT (its /metrics histogram) over the same requests: request in, the
    emission's lateness against the predicted time, the chunk out, on this machine now."""
    trace = write_trace(tmp_path / "t.csv", 30, 8.0, seed=1, out=(10, 30))
    assert main(["simulate", "--trace", str(trace), "--model", MODEL, "--gpu", GPU,
                 "--out", str(tmp_path / "sim"), "--no-progress"]) == 0
    with server_process(["--sim", "--model", MODEL, "--gpu", GPU], ROOT) as (url, _):
        assert main(["bench", "serve", "--endpoint", url, "--trace", str(trace),
                     "--out", str(tmp_path / "bench"), "--no-progress"]) == 0
        total_s, count = server_ttft(url)
    sim = json.loads((tmp_path / "sim" / "summary.json").read_text())
    got = json.loads((tmp_path / "bench" / "summary.json").read_text())
    assert got["finished"] == 30 and got["errors"] == 0 and count == 30
    assert got["output_tokens"] == sim["output_tokens"]
    overhead = got["ttft_s"]["mean"] - total_s / count
    report = (f"localhost HTTP overhead {overhead * 1e3:.2f} ms; TTFT p50 "
              f"{got['ttft_s']['p50'] * 1e3:.1f} (bench) vs {sim['ttft_s']['p50'] * 1e3:.1f} ms "
              f"(simulate), TPOT p50 {got['tpot_s']['p50'] * 1e3:.2f} vs "
              f"{sim['tpot_s']['p50'] * 1e3:.2f} ms")
    print(report)
    assert 0 < overhead < 0.05, report
    for key in ("ttft_s", "tpot_s"):
        want, have = sim[key]["p50"], got[key]["p50"]
        assert abs(have - want) <= 0.05 * want + overhead, (key, report)


def test_bench_serve_speedup_counts_order_and_schema(tmp_path):
    trace = write_trace(tmp_path / "t.csv", 40, 40.0, seed=2, out=(2, 30))
    with running_server(["--sim", "--model", MODEL, "--gpu", "h100", "--speedup", "20"]) as (url, state):
        assert main(["bench", "serve", "--endpoint", url, "--trace", str(trace), "--rate-scale", "0.5",
                     "--max-requests", "30", "--out", str(tmp_path / "b"), "--no-progress",
                     "--max-concurrency", "8", "--client-processes", "2"]) == 0
        served = state.driver.engine.engine.metrics.frames()[0]  # LocalEngine wraps the Engine
        # a server without a tokenizer answers chat with a clear 400
        r = httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 400 and "chat template" in r.json()["error"]["message"]
    req = pd.read_parquet(tmp_path / "b" / "requests.parquet")
    steps = pd.read_parquet(tmp_path / "b" / "steps.parquet")
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    trace_out = pd.read_csv(trace).output_tokens.to_numpy()[:30]
    assert list(req.columns[:len(REQUEST_COLUMNS)]) == list(REQUEST_COLUMNS)
    assert list(steps.columns) == list(STEP_COLUMNS) and len(steps) == 0
    assert (req.output_tokens.to_numpy() == trace_out).all() and (req.rejected == "").all()
    assert [sum(c) for c in req.chunk_tokens] == list(trace_out)
    assert (req.first_token_s >= req.send_s).all() and (req.finish_s >= req.first_token_s).all()
    assert (req.lateness_s > -1e-3).all()
    # the server saw them in send order (its ids are arrival order) wherever two sends were
    # more than 25 ms apart (two client processes on a loaded 2-core machine may swap sends a
    # few ms apart: one process's send waits for a core)
    served = served.sort_values("request_id")
    assert len(set(req.prompt_tokens)) == 30  # lengths identify requests
    seen_at = dict(zip(served.prompt_tokens, served.arrival_s))
    sends = req.sort_values("send_s")
    for (s1, p1), (s2, p2) in zip(zip(sends.send_s, sends.prompt_tokens),
                                  zip(sends.send_s[1:], sends.prompt_tokens[1:])):
        assert s2 - s1 <= 0.025 or seen_at[p1] < seen_at[p2]
    # the server's tokens came at exactly the times a simulation of the arrivals it saw predicts
    from dataclasses import replace

    from nanosim.config import EngineConfig, get_gpu, get_model
    from nanosim.sim.job import run_simulation
    from nanosim.workload import load_trace

    by_len = {r.prompt_tokens: r for r in load_trace(trace)[:30]}
    reqs = [replace(by_len[p], request_id=i, arrival_s=a)
            for i, (p, a) in enumerate(zip(served.prompt_tokens, served.arrival_s))]
    want, _, _ = run_simulation(reqs, get_model(MODEL), get_gpu("h100"), EngineConfig(), "auto",
                                fast_forward=False)
    for col in ("first_token_s", "finish_s"):
        assert abs(want[col].to_numpy() - served[col].to_numpy()).max() < 1e-9
    sim_keys = {"requests", "finished", "ttft_s", "tpot_s", "e2e_s", "output_tok_s", "duration_s"}
    assert sim_keys <= set(summary) and summary["goodput"]["requests"] <= 30
    assert summary["itl_count"] == int((req.output_tokens - 1).clip(lower=0).sum())
