"""Discrete-event replay of a trace against an Engine, in a SimPy environment.

Two processes: ``arrivals`` sleeps until each request's arrival and wakes the engine when
it is idle; ``engine_loop`` runs steps and sleeps for their predicted duration. The engine
itself admits every request with arrival_s <= the step's start time, so ties between an
arrival and a step boundary resolve the same way whatever SimPy's event order. The loop
keeps its own float clock (``t``) so that fast-forwarded and stepped runs give bit-identical
times.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence as Seq

import simpy

from nanosim.core.engine import Engine
from nanosim.core.request import Request


class _Source:
    """Requests sorted by arrival, released into the engine as simulated time passes."""

    def __init__(self, requests: Seq[Request]) -> None:
        self.requests = sorted(requests, key=lambda r: (r.arrival_s, r.request_id))
        self.i = 0

    @property
    def next_s(self) -> float:
        return self.requests[self.i].arrival_s if self.i < len(self.requests) else math.inf

    def release(self, engine: Engine, now: float) -> int:
        n = 0
        while self.i < len(self.requests) and self.requests[self.i].arrival_s <= now:
            engine.add_request(self.requests[self.i])
            self.i += 1
            n += 1
        return n


def simulate(engine: Engine, requests: Seq[Request], fast_forward: bool = True,
             progress: Callable[[int, float], None] | None = None,
             check_every_step: bool = False) -> float:
    """Replay ``requests`` through ``engine``; returns the simulated end time (s).

    progress(requests_done, sim_time_s) is called about every 0.2 s of wall time.
    check_every_step runs the block manager's invariant check after each step (tests).
    """
    env = simpy.Environment()
    src = _Source(requests)
    state = {"wake": None, "t": 0.0}
    last_report = [time.perf_counter()]

    def arrivals():
        for r in src.requests:
            if r.arrival_s > env.now:
                yield env.timeout(r.arrival_s - env.now)
            wake = state["wake"]
            if wake is not None and not wake.triggered:
                wake.succeed()

    def engine_loop():
        t = 0.0
        while True:
            src.release(engine, t)
            if not engine.has_work:
                if src.i >= len(src.requests):
                    break
                state["wake"] = env.event()
                yield state["wake"]
                state["wake"] = None
                t = max(t, src.next_s)
                continue
            end = engine.fast_forward(t, src.next_s) if fast_forward else None
            if end is None:
                end = t + engine.step(t)
            if check_every_step:
                engine.check()
            if end > env.now:
                yield env.timeout(end - env.now)
            t = end
            if progress is not None and time.perf_counter() - last_report[0] > 0.2:
                last_report[0] = time.perf_counter()
                progress(len(engine.metrics.requests["request_id"]), t)
        state["t"] = t

    env.process(arrivals())
    done = env.process(engine_loop())
    env.run(until=done)
    if progress is not None:
        progress(len(engine.metrics.requests["request_id"]), state["t"])
    return state["t"]
