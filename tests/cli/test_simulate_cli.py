"""`nanosim simulate / memory / trace` end to end, on public samples and synthetic suites."""
import json
from pathlib import Path

import pandas as pd
import pytest

from nanosim.cli import main
from nanosim.core.metrics import REQUEST_COLUMNS, STEP_COLUMNS

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "traces"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} missing")


def simulate(tmp_path, *args):
    out = tmp_path / "out"
    rc = main(["simulate", *args, "--out", str(out), "--no-progress"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    return summary, pd.read_parquet(out / "requests.parquet"), pd.read_parquet(out / "steps.parquet")


@needs_shared
@pytest.mark.parametrize("name", ["azure2023_conv_first20min.csv", "azure2023_code_first20min.csv"])
def test_simulate_azure_samples(tmp_path, capsys, name):
    s, req, steps = simulate(tmp_path, "--trace", str(SHARED / name), "--model", "qwen3-8b",
                             "--gpu", "h100")
    assert list(req.columns) == list(REQUEST_COLUMNS) and list(steps.columns) == list(STEP_COLUMNS)
    assert s["requests"] == len(req) > 3000 and s["finished"] + s["rejected"] == s["requests"]
    assert s["ttft_s"]["p50"] > 0 and s["output_tok_s"] > 0
    assert "TTFT" in capsys.readouterr().out


@pytest.mark.parametrize("suite", ["chatbot", "rag", "code", "summarization"])
def test_simulate_synthetic_suites(tmp_path, suite):
    s, req, _ = simulate(tmp_path, "--workload", suite, "--rate", "4", "--num-requests", "60",
                         "--model", "qwen3-0.6b", "--gpu", "a100")
    assert s["finished"] == 60 and (req.ttft_s > 0).all()


def test_simulate_options_change_outcome(tmp_path):
    base, _, _ = simulate(tmp_path, "--workload", "rag", "--rate", "20", "--num-requests", "200",
                          "--model", "qwen3-8b", "--gpu", "l40s", "--max-num-seqs", "8")
    more, _, _ = simulate(tmp_path, "--workload", "rag", "--rate", "20", "--num-requests", "200",
                          "--model", "qwen3-8b", "--gpu", "l40s", "--max-num-seqs", "64")
    assert base["ttft_s"]["p50"] > more["ttft_s"]["p50"]  # a tighter batch limit queues more


def test_memory_command(capsys):
    assert main(["memory", "--model", "qwen3-8b", "--gpu", "h100", "--block-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "qwen3-8b" in out and "blocks" in out


def test_clear_errors(tmp_path, capsys):
    assert main(["simulate", "--workload", "chatbot", "--model", "gpt-5", "--out", str(tmp_path)]) == 2
    assert "unknown model" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("arrival_s,prompt_tokens,output_tokens\n0.0,10,5\n1.0,-3,5\n")
    assert main(["simulate", "--trace", str(bad), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3" in err
    assert main(["memory", "--model", "qwen3-32b", "--gpu", "rtx-4070-laptop"]) == 2
    assert "weights" in capsys.readouterr().err


@needs_shared
def test_trace_stats_and_convert_round_trip(tmp_path, capsys):
    src = SHARED / "mooncake_synthetic_first340s.jsonl"
    assert main(["trace", "stats", str(src), "--block-size", "512"]) == 0
    assert "requests" in capsys.readouterr().out.lower()
    out = tmp_path / "canon.jsonl"
    assert main(["trace", "convert", str(src), str(out)]) == 0
    from nanosim.workload import load_trace
    assert load_trace(out) == load_trace(src)


@needs_shared
@pytest.mark.parametrize("name", sorted(p.name for p in SHARED.glob("*.*") if p.suffix in (".csv", ".jsonl"))
                         if SHARED.is_dir() else [])
def test_simulate_and_stats_on_every_shared_trace(tmp_path, capsys, name):
    path = str(SHARED / name)
    s, req, _ = simulate(tmp_path, "--trace", path, "--rate", "4", "--max-requests", "400",
                         "--model", "qwen3-8b", "--gpu", "h100")
    assert s["requests"] == len(req) > 0 and s["finished"] + s["rejected"] == s["requests"]
    assert main(["trace", "stats", path, "--rate", "4"]) == 0
    assert "requests" in capsys.readouterr().out
