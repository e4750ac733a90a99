"""Where a validation's step errors come from (CPU; reads `nanosim validate` output).

For each load directory (with its step_errors.parquet), prints the decode steps' median
measured/predicted ratio and its standard deviation by batch size (groups of >= 100 steps),
the decode MAPE, and the MAPE an oracle would reach if it knew the median ratio of every
(batch size, 128-token mean-context bucket) cell of these very steps: a bound on what a
better decode model of the step's shape could do, the rest being step-to-step jitter; and
the steps with several prefill chunks.

With ``--profile P`` the steps are priced anew (each from its shape, as validate does) by that
profile's cost model as the code now builds it, so a changed model or another profile of
the same machine is scored against the same measurements, and the decode batches' tail is
shown per graph size: the fitted spread term a(b) against the one the measured steps imply,
(c_eq - mean) / (longest - mean), c_eq the uniform context that takes as long.

    python benchmarks/step_ratios.py OUT/light OUT/medium ...   # calibrate_loads.sh's OUT
    python benchmarks/step_ratios.py OUT/medium --profile OUT/profile.json [--model qwen3-0.6b --gpu h100]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def reprice(d: pd.DataFrame, cm) -> list:
    """Set d.predicted_s to ``cm``'s prices of the steps; -> the StepShapes, each with the
    decode path the scheduler gave it (from the steps in order, as validate does)."""
    from nanosim.calibrate.validate import SHAPE_FIELDS
    from nanosim.core.batch import StepShape, with_decode_paths

    shapes = with_decode_paths([StepShape(**{f: r[f] if f == "prefill_attn_pairs" else int(r[f])
                                             for f in SHAPE_FIELDS}) for _, r in d.iterrows()])
    d["predicted_s"] = [cm.step_time_s(s) for s in shapes]
    return shapes


def summarize(path: Path, cm=None) -> None:
    d = pd.read_parquet(path / "step_errors.parquet")
    shapes = reprice(d, cm) if cm is not None else None
    d["r"] = d.measured_s / d.predicted_s
    d["ape_now"] = np.abs(d.predicted_s - d.measured_s) / d.measured_s  # as validate's MAPE
    print(f"{path}: {len(d)} steps, MAPE {d.ape_now.mean():.2%}"
          + (f" (as validated: {d.ape.mean():.2%})" if cm is not None else ""))
    dec = d[d.kind == "decode"].copy()
    cell = dec.decode_context_tokens / dec.num_decode_seqs // 128
    oracle = dec.r / dec.groupby([dec.num_decode_seqs, cell]).r.transform("median")
    print(f"  {len(dec)} decode steps, MAPE {dec.ape_now.mean():.1%}, "
          f"oracle per (batch, context bucket) {np.mean(np.abs(oracle - 1)):.1%}")
    g = dec.groupby("num_decode_seqs").r.agg(["size", "median", "std"])
    print(g[g["size"] >= 100].round(3).T.to_string())
    multi = d[d.num_prefill_seqs > 1]
    if len(multi):
        print(f"  several prefill chunks: {len(multi)} steps, median measured/predicted "
              f"{multi.r.median():.3f}, MAPE {multi.ape_now.mean():.1%}")
    if cm is not None:
        tail(cm, dec, shapes)


def tail(cm, dec: pd.DataFrame, shapes: list) -> None:
    print("  graph  fitted a  implied a (median)  steps")
    by_b: dict[int, list[float]] = {}
    for i in dec.index:
        s = shapes[i]
        b = cm._padded(s).num_decode_seqs
        mean, m = s.decode_context_tokens / b, float(s.decode_max_context_tokens)
        if m > mean:
            c_eq = cm._equivalent_context(b, float(dec.measured_s[i]), 1.0, 2 * m)
            by_b.setdefault(b, []).append((c_eq - mean) / (m - mean))
    for b, a in sorted(by_b.items()):
        if len(a) >= 20:
            print(f"  {b:5d}  {cm._spread(b):.2f}      {np.median(a):+.2f}              {len(a)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--profile", default=None, help="price the steps anew with this profile")
    ap.add_argument("--model", default="qwen3-0.6b")
    ap.add_argument("--gpu", default="h100")
    ap.add_argument("--tp", type=int, default=1)
    a = ap.parse_args()
    for p in a.dirs:
        cm = None
        if a.profile:  # a fresh model per load: its path state starts at the first step
            from nanosim.config import get_gpu, get_model
            from nanosim.sim.profile import ProfileCostModel, load_profile

            cm = ProfileCostModel(load_profile(a.profile), get_model(a.model), get_gpu(a.gpu), a.tp)
        summarize(p, cm)


if __name__ == "__main__":
    main()
