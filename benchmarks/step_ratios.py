"""Where a validation's step errors come from (CPU; reads `nanosim validate` output).

For each load directory (with its step_errors.parquet), prints the decode steps' median
measured/predicted ratio and its standard deviation by batch size (groups of >= 100 steps),
the decode MAPE, and the MAPE an oracle would reach if it knew the median ratio of every
(batch size, 128-token mean-context bucket) cell of these very steps: a bound on what a
better decode model of the step's shape could do, the rest being step-to-step jitter.

    python benchmarks/step_ratios.py OUT/light OUT/medium ...   # calibrate_loads.sh's OUT
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def summarize(path: Path) -> None:
    d = pd.read_parquet(path / "step_errors.parquet")
    dec = d[d.kind == "decode"].copy()
    dec["r"] = dec.measured_s / dec.predicted_s
    cell = dec.decode_context_tokens / dec.num_decode_seqs // 128
    oracle = dec.r / dec.groupby([dec.num_decode_seqs, cell]).r.transform("median")
    print(f"{path}: {len(dec)} decode steps, MAPE {np.mean(np.abs(dec.r - 1)):.1%}, "
          f"oracle per (batch, context bucket) {np.mean(np.abs(oracle - 1)):.1%}")
    g = dec.groupby("num_decode_seqs").r.agg(["size", "median", "std"])
    print(g[g["size"] >= 100].round(3).T.to_string())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+", type=Path)
    for p in ap.parse_args().dirs:
        summarize(p)


if __name__ == "__main__":
    main()
