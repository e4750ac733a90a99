"""The LM head at decode batch sizes (needs CUDA): cuBLAS F.linear against our skinny GEMM,
Qwen3-0.6B vocabulary and hidden size, bf16, weights streamed from HBM (3 copies cycled, so
none sits in L2). Median of 5 replays of a CUDA graph of 60 calls; also the max |difference|.

    python benchmarks/lm_head.py [--vocab 151936] [--hidden 1024]
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F


def per_call_us(fn, reps: int = 60) -> float:
    for _ in range(5):
        fn(0)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(reps):
            fn(i % 3)
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(5):
        e0.record()
        g.replay()
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1) / reps * 1e3)
    return sorted(times)[2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--hidden", type=int, default=1024)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("lm_head.py needs a CUDA GPU")
    from nanosim.gpu.kernels.skinny_gemm import skinny_linear

    ws = [torch.randn(a.vocab, a.hidden, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(3)]
    print(f"{torch.cuda.get_device_name()}: LM head {a.vocab} x {a.hidden} bf16, "
          f"bytes floor at 3.35 TB/s {a.vocab * a.hidden * 2 / 3.35e12 * 1e6:.1f} us")
    for m in (1, 2, 4, 8, 16):
        x = torch.randn(m, a.hidden, device="cuda", dtype=torch.bfloat16)
        err = (skinny_linear(x, ws[0]).float() - F.linear(x, ws[0]).float()).abs().max().item()
        cublas = per_call_us(lambda i: F.linear(x, ws[i]))
        skinny = per_call_us(lambda i: skinny_linear(x, ws[i]))
        print(f"M={m:2d}  cuBLAS {cublas:6.1f} us  skinny {skinny:6.1f} us  max |diff| {err:.3g}", flush=True)


if __name__ == "__main__":
    main()
