"""Tiny specs and comparisons shared by tests/sweep and tests/report."""
from __future__ import annotations

from pathlib import Path

from nanosim.sweep import ResultStore, load_spec, run_sweep

REPO = Path(__file__).resolve().parents[2]
SHARED_TRACES = REPO.parent / "shared" / "traces"

# 30 chat requests at 20 req/s on Qwen3-0.6B: ~10 ms of simulation per point.
TINY = """name = "tiny"
[fixed]
model = "qwen3-0.6b"
gpu = "h100"
workload = "chatbot"
rate_rps = 20.0
num_requests = 30
"""
# Two swept parameters (block size, replicas) and an SLO: enough for every figure.
REPORT_SPEC = TINY + """
[grid]
block_size_tokens = [16, 64]
replicas = [1, 2]

[slo]
ttft_s = 0.05
tpot_s = 0.01
attainment = 0.9
"""
RUN_COLUMNS = ["point_wall_s", "sim_wall_s", "worker", "finished_at"]  # differ run to run


def write_spec(folder: Path, text: str, name: str = "spec.toml") -> Path:
    path = Path(folder) / name
    path.write_text(text)
    return path


def run_text(folder: Path, text: str, out: str = "out", **kw):
    """Write, load and run a spec (inline by default); returns (report, store)."""
    kw.setdefault("workers", 0)
    kw.setdefault("progress", False)
    spec = load_spec(write_spec(folder, text))
    return run_sweep(spec, Path(folder) / out, **kw), ResultStore(Path(folder) / out)


def comparable(store: ResultStore):
    """Points table without the columns that change from run to run, by point id."""
    pts = store.points().drop(columns=RUN_COLUMNS)
    return pts.sort_values("point_id").reset_index(drop=True)
