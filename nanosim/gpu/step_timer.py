"""A step's device time: CUDA events around the launch on a GPU, perf_counter on a CPU (the
runner's StepOutput.duration_s, which the replays record as gpu_s and the profiler as
gpu_duration_s)."""
from __future__ import annotations

import time

import torch


class StepTimer:
    """CUDA events on GPU (start() and record_end() record; wait() syncs and returns seconds),
    else perf_counter. Reusable once wait() has returned (two of them alternate)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.begin = torch.cuda.Event(enable_timing=True)
            self.end = torch.cuda.Event(enable_timing=True)
        self.t0 = 0.0

    def start(self) -> "StepTimer":
        if self.cuda:
            self.begin.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def record_end(self) -> None:
        if self.cuda:
            self.end.record()
        else:
            self.t0 = time.perf_counter() - self.t0  # CPU: the work is done, keep its seconds

    def wait(self) -> float:
        """Seconds from start() to record_end() (on GPU: waits for the end event)."""
        if not self.cuda:
            return self.t0
        self.end.synchronize()
        return self.begin.elapsed_time(self.end) / 1e3
