"""Running one engine over a trace on a virtual clock, without SimPy: the loop the real
replay's virtual clock runs (gpu/replay.py), with the simulator's rules for one engine and no
fast-forward (sim/simulator.py runs the same semantics for clusters and fast-forward).

Tie rule: a step that starts at time t admits every request with arrival_s <= t; an idle
engine jumps to the next arrival; time advances by each step's duration (seconds, float, added
in the same order as the simulator adds them, so both give bit-identical clocks).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence as Seq

from nanosim.core.engine import Engine
from nanosim.core.request import Request


def run_virtual(engine: Engine, requests: Seq[Request],
                progress: Callable[[int, float], None] | None = None, sampling=None) -> float:
    """Step ``engine`` until every request is done; returns the end time (s).
    progress(requests_done, time_s) is called about every 0.2 s of wall time and at the end.
    sampling: each request's sampling options (opaque here; the GPU backend reads them)."""
    reqs = sorted(requests, key=lambda r: (r.arrival_s, r.request_id))
    i, t, shown = 0, 0.0, time.perf_counter()
    while True:
        while i < len(reqs) and reqs[i].arrival_s <= t:
            engine.add_request(reqs[i], sampling=sampling)
            i += 1
        if not engine.has_work:
            if i >= len(reqs):
                break
            t = max(t, reqs[i].arrival_s)
            continue
        t = t + engine.step(t)
        if progress is not None and time.perf_counter() - shown > 0.2:
            shown = time.perf_counter()
            progress(len(engine.metrics.requests["request_id"]), t)
    if progress is not None:
        progress(len(engine.metrics.requests["request_id"]), t)
    return t
