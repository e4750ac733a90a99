"""Running one engine over a trace on a virtual clock, without SimPy: the loop of the real
replay's virtual clock (gpu/replay.py) and of the simulator's one-engine replay
(sim/simulator.py, with fast-forward), so both follow the same rules by construction.

Tie rule: a step that starts at time t admits every request with arrival_s <= t, in arrival
order; an idle engine jumps to the next arrival; time advances by each step's duration
(seconds, float, added in order), or by a fast-forwarded decode run that stops before the next
arrival. The SimPy replay of one engine gives the same tables (tests/core/test_clock.py).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence as Seq

from nanosim.core.engine import Engine
from nanosim.core.request import Request


def run_virtual(engine: Engine, requests: Seq[Request],
                progress: Callable[[int, float], None] | None = None, sampling=None,
                fast_forward: bool = False, check: bool = False) -> float:
    """Step ``engine`` until every request is done; returns the end time (s).
    progress(requests_done, time_s) is called about every 0.2 s of wall time and at the end.
    sampling: each request's sampling options (opaque here; the GPU backend reads them).
    fast_forward: advance decode-only runs in one move up to the next arrival
    (Engine.fast_forward; a backend with caps.decode_runs). check: verify the block manager's
    invariants after each step (tests)."""
    reqs = sorted(requests, key=lambda r: (r.arrival_s, r.request_id))
    arrival = [r.arrival_s for r in reqs] + [math.inf]  # a sentinel: no bounds checks
    n, i, t = len(reqs), 0, 0.0
    sched, step, add = engine.scheduler, engine.step, engine.add_request
    ff = engine.fast_forward if fast_forward else None
    shown = time.perf_counter()  # wall time of the last progress call
    while True:
        while arrival[i] <= t:
            add(reqs[i], None, sampling)
            i += 1
        if not sched.has_work:
            if i >= n:
                break
            t = max(t, arrival[i])
            continue
        end = None if ff is None else ff(t, arrival[i])
        if end is None:
            end = t + step(t)
        if check:
            engine.check()
        t = end
        if progress is not None and time.perf_counter() - shown > 0.2:
            shown = time.perf_counter()
            progress(len(engine.metrics.requests["request_id"]), t)
    if progress is not None:
        progress(len(engine.metrics.requests["request_id"]), t)
    return t
