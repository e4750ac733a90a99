"""The two clocks the engine loop runs on (times in seconds since the server started).

RealPacer  Engine.step runs in one worker thread (the event loop keeps serving HTTP while the
           GPU works), or inline in the event loop (in_thread=False: no GIL hand-offs; with
           async decoding the GPU still runs the step launched ahead while the loop streams);
           a step starts when the previous one ends, or at an arrival when idle; time is the
           wall clock.
SimPacer   Engine.step runs inline (microseconds: the cost model only predicts) and the loop
           then sleeps until the step's predicted end, mapped to wall time as
           start + end_s / speedup. Simulated time advances exactly as in `nanosim simulate`
           (a step starts at the previous one's end, or at the next arrival when idle), so
           only the emission of tokens waits on the wall clock.
"""
from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor


class RealPacer:
    sim = False

    def __init__(self, in_thread: bool = True) -> None:
        if in_thread:
            # the engine thread gets the GIL back within 0.5 ms of a CUDA wait (Python's
            # default 5 ms hand-off would let the streaming thread hold up each step)
            sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self.t0 = time.perf_counter()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="nanosim-engine") if in_thread else None
        self.lag_s = self.max_lag_s = 0.0

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def start(self, prev_end_s: float, first_arrival_s: float | None) -> float:
        return self.now()

    async def step(self, engine, t: float) -> float:
        if self._pool is None:
            return t + engine.step(t)
        dur = await asyncio.get_running_loop().run_in_executor(self._pool, engine.step, t)
        return t + dur

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


class SimPacer:
    sim = True

    def __init__(self, speedup: float = 1.0) -> None:
        if not speedup > 0:
            raise ValueError(f"--speedup must be > 0, got {speedup}")
        self.speedup = speedup
        self.t0 = time.perf_counter()
        self.lag_s = 0.0  # how late the last emission was against its predicted wall time
        self.max_lag_s = 0.0

    def now(self) -> float:
        return (time.perf_counter() - self.t0) * self.speedup

    def start(self, prev_end_s: float, first_arrival_s: float | None) -> float:
        """Next step's start: the previous end, or the first pending arrival when idle."""
        if first_arrival_s is None:
            return prev_end_s
        return max(prev_end_s, first_arrival_s)

    async def step(self, engine, t: float) -> float:
        end = t + engine.step(t)
        due = self.t0 + end / self.speedup
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        self.lag_s = max(0.0, time.perf_counter() - due)
        self.max_lag_s = max(self.max_lag_s, self.lag_s)
        return end

    def close(self) -> None:
        pass
