"""Regenerate traces/demo_chatbot.csv: 300 requests of the chatbot suite (128 -> 256 tokens,
log-normal, CV 0.5) with Poisson arrivals at 2 requests/s, seed 0, in canonical CSV.

    python traces/make_demo.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from nanosim.workload import make_workload, write_canonical  # noqa: E402

OUT = Path(__file__).resolve().parent / "demo_chatbot.csv"
NUM_REQUESTS, RATE_RPS, SEED = 300, 2.0, 0


def make():
    return make_workload("chatbot", RATE_RPS, num_requests=NUM_REQUESTS, seed=SEED)


if __name__ == "__main__":
    write_canonical(make(), OUT)
    print(f"wrote {OUT}")
