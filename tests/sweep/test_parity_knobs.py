"""The vLLM-parity knobs reach a sweep point and the command line: long_prefill_token_threshold
and the prefix router's balance thresholds."""
import json

import pandas as pd

from nanosim.cli import main
from tests.sweep.helpers import run_text
from tests.sweep.test_spec import spec_error

LONG = """name = "long"
[fixed]
model = "qwen3-0.6b"
gpu = "h100"
profile = "none"
workload = "summarization"
rate_rps = 8.0
num_requests = 40
[grid]
long_prefill_token_threshold = [0, 256]
"""


def test_sweep_asks_what_the_prefill_threshold_does_to_ttft(tmp_path):
    report, store = run_text(tmp_path, LONG)
    pts = store.points().set_index("long_prefill_token_threshold")
    assert set(pts.status) == {"ok"}
    assert pts.loc[256, "ttft_p50_s"] != pts.loc[0, "ttft_p50_s"]
    assert pts.loc[256, "steps"] > pts.loc[0, "steps"]  # long prompts took more, smaller chunks


def test_sweep_router_thresholds(tmp_path):
    text = """name = "router"
[fixed]
model = "qwen3-0.6b"
gpu = "h100"
workload = "chatbot"
rate_rps = 40.0
num_requests = 60
replicas = 2
router = "prefix"
system_prompt_tokens = 512
[grid]
router_balance_abs_threshold = [0, 64]
"""
    _, store = run_text(tmp_path, text)
    pts = store.points()
    assert set(pts.status) == {"ok"} and sorted(pts.router_balance_abs_threshold) == [0, 64]


def test_bad_threshold_in_spec_names_the_key(tmp_path):
    msg = spec_error(tmp_path, LONG.replace("[0, 256]", "[-4]"))
    assert "long_prefill_token_threshold" in msg and ">= 0" in msg


def test_cli_long_prefill_threshold(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0.0,3000,4\n0.0,20,4\n")
    steps = {}
    for thr in (0, 512):
        out = tmp_path / f"r{thr}"
        assert main(["simulate", "--trace", str(trace), "--model", "qwen3-0.6b", "--no-progress",
                     "--long-prefill-token-threshold", str(thr), "--out", str(out)]) == 0
        steps[thr] = pd.read_parquet(out / "steps.parquet")
        assert json.loads((out / "summary.json").read_text())["config"][
            "long_prefill_token_threshold"] == thr
    assert steps[0].prefill_tokens.iloc[0] == 3020
    assert steps[512].prefill_tokens.iloc[0] == 512 + 20 and steps[512].prefill_tokens.max() <= 532
