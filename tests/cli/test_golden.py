"""Golden summary of a small fixed trace (tests/data/golden_trace.csv).

Regenerate deliberately after a semantic change with NANOSIM_REGEN_GOLDEN=1 and say why in
the commit message.
"""
import json
import math
import os
from pathlib import Path

from nanosim.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
ARGS = ["simulate", "--trace", str(DATA / "golden_trace.csv"), "--model", "qwen3-0.6b",
        "--gpu", "h100", "--block-size", "16", "--num-kv-blocks", "60", "--max-num-seqs", "8",
        "--max-num-batched-tokens", "256", "--max-model-len", "900", "--no-progress",
        "--profile", "none"]  # the analytical roofline: independent of shipped measurements
KEYS = ("requests", "finished", "rejected", "preemptions", "steps", "duration_s",
        "output_tokens", "prefix_cache_hit_rate", "ttft_s", "tpot_s", "e2e_s", "peak_kv_usage")


def pick(summary: dict) -> dict:
    return {k: summary[k] for k in KEYS}


def close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def test_golden_summary(tmp_path):
    assert main(ARGS + ["--out", str(tmp_path)]) == 0
    got = pick(json.loads((tmp_path / "summary.json").read_text()))
    golden = DATA / "golden_summary.json"
    if os.environ.get("NANOSIM_REGEN_GOLDEN"):
        golden.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    want = json.loads(golden.read_text())
    assert got["preemptions"] > 0  # the case exercises preemption under KV pressure
    assert close(got, want), f"summary changed:\n{json.dumps(got, indent=1)}"
