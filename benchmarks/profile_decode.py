"""Where a decode step's device time goes (needs CUDA): torch.profiler over eager decode
steps of Qwen3-0.6B shapes at a given batch, top kernels by CUDA time, kernels per step.

    python benchmarks/profile_decode.py [--batch 1] [--context 1024] [--attention triton]
"""
from __future__ import annotations

import argparse

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--attention", default="triton")
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("profile_decode.py needs a CUDA GPU")
    from torch.profiler import ProfilerActivity, profile

    from nanosim.config import get_model
    from nanosim.gpu.inputs import SeqWork
    from nanosim.gpu.runner import ModelRunner

    r = ModelRunner(get_model("qwen3-0.6b"), "cuda", block_size=256, max_num_seqs=max(16, a.batch),
                    max_num_batched_tokens=8192, max_model_len=4096, attention=a.attention,
                    enforce_eager=True, gpu_memory_utilization=0.5)
    per = -(-(a.context + 1) // 256)
    works = [SeqWork([5], a.context, list(range(i * per, (i + 1) * per)), True) for i in range(a.batch)]
    for _ in range(5):
        r.step(works)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(a.steps):
            r.step(works)
    events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
    total = sum(e.self_device_time_total for e in events) / a.steps
    count = sum(e.count for e in events) / a.steps
    print(f"batch {a.batch}, context {a.context}, {a.attention}: {count:.0f} kernels/step, "
          f"{total / 1e3:.3f} ms of kernel time/step")
    for e in sorted(events, key=lambda e: -e.self_device_time_total)[:15]:
        print(f"{e.self_device_time_total / a.steps:9.1f} us {e.count / a.steps:6.1f}x  {e.key[:90]}")


if __name__ == "__main__":
    main()
