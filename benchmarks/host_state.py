"""Does what runs before a step change its time? (needs CUDA) Times prefill steps and a
packed decode step of Qwen3-0.6B shapes as the profiler does (each after the untimed steps
serving puts before it, points interleaved), and again with a burst of host work before
each timed step (a 64 MB memory sweep and 200k small Python objects), 30 rounds, medians.

    python benchmarks/host_state.py

H100 figures from an earlier form of this script (.gpu, the
profiler's decode_between, now serving_between, which runs the same steps before a
prefill; before the decode point it ran an 8-row decode step, not a prefill): plain 4.045 / 2.533 / 6.832 / 1.623 ms, with host work +0.32 / +0.41 / +0.41 /
+0.43 ms; and the profile of that machine read the 203-token step's bucket (256 tokens)
3.86 ms when timed in runs back to back.
"""
from __future__ import annotations

import statistics
import time

import numpy as np


def main() -> None:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("host_state.py needs a CUDA GPU")
    from nanosim.calibrate.profile import serving_between
    from nanosim.calibrate.shapes import Composition
    from nanosim.gpu.inputs import SeqWork
    from nanosim.gpu.llm import LLM

    llm = LLM("qwen3-0.6b", device="cuda", max_model_len=4096, block_size=256, max_num_seqs=256)
    r = llm.runner
    between = serving_between(r)
    big = np.ones(16 * 1024 * 1024, dtype=np.float32)  # 64 MB

    def host_work() -> None:
        float(big.sum())
        junk = [{"a": i, "b": [i]} for i in range(200_000)]
        del junk

    comps = {"prefill 203": Composition(num_prefills=1, chunk=203),
             "prefill 91": Composition(num_prefills=1, chunk=91),
             "prefill 1100": Composition(num_prefills=1, chunk=1100),
             "packed decode 8@1024": Composition(num_decodes=8, decode_context=1024)}
    res = {k: {"plain": [], "host work": []} for k in comps}
    for _ in range(30):
        for name, c in comps.items():
            for mode in ("plain", "host work"):
                between(c)
                if mode == "host work":
                    host_work()
                t0 = time.perf_counter()
                r.step(c.works(r.block_size, SeqWork))
                res[name][mode].append(time.perf_counter() - t0)
    for name, d in res.items():
        p, q = statistics.median(d["plain"]), statistics.median(d["host work"])
        print(f"{name:22s} plain {p * 1e3:.3f} ms  after host work {q * 1e3:.3f} ms  "
              f"(+{(q - p) * 1e3:.3f} ms, {q / p - 1:+.1%})")


if __name__ == "__main__":
    main()
