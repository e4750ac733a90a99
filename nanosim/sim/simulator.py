"""Discrete-event replay of a trace against one engine or a cluster of replicas.

One engine: a plain loop (core/clock.run_virtual), no SimPy: nothing else can observe the
engine, so it admits the arrivals due at each step's start, steps (or fast-forwards to the
next arrival), and jumps to the next arrival when idle. Several engines without fast-forward: a
SimPy environment whose ``arrivals`` process sleeps until each request's arrival, routes it
(a router picks the replica) and wakes an idle replica; each replica's ``engine_loop`` runs
steps and sleeps for their predicted duration. Several with fast-forward: sim/lazy_cluster.py.

Exact tie rule: a step that starts at time t admits every request with arrival_s <= t. The
engine loop pulls routing up to its own start time itself (``route_until``), so the rule
holds whatever order SimPy gives events at the same time. Each loop keeps its own float
clock, so fast-forwarded and stepped runs give bit-identical times. Fast-forward never runs
past the next arrival anywhere in the cluster (a router may send it to any replica).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence as Seq

from nanosim.core.clock import run_virtual
from nanosim.core.engine import Engine
from nanosim.core.request import Request
from nanosim.sim.gc_tuning import young_collections_rarer
from nanosim.sim.replica import Replica


class _Arrivals:
    """All requests in arrival order; routes them into replicas as time passes."""

    def __init__(self, requests: Seq[Request], replicas: list[Replica], router) -> None:
        self.requests = sorted(requests, key=lambda r: (r.arrival_s, r.request_id))
        self.replicas = replicas
        self.router = router
        self.i = 0

    @property
    def next_s(self) -> float:
        return self.requests[self.i].arrival_s if self.i < len(self.requests) else math.inf

    @property
    def exhausted(self) -> bool:
        return self.i >= len(self.requests)

    def route_until(self, now: float) -> None:
        while self.i < len(self.requests) and self.requests[self.i].arrival_s <= now:
            r = self.requests[self.i]
            rep = self.replicas[0] if self.router is None else self.router.pick(r, self.replicas)
            rep.pending.append(r)
            rep.routed_tokens += r.prompt_tokens + r.output_tokens
            rep.routed_requests += 1
            if rep.wake is not None and not rep.wake.triggered:
                rep.wake.succeed()
            self.i += 1


def simulate_cluster(engines: list[Engine], requests: Seq[Request], router=None,
                     fast_forward: bool = True,
                     progress: Callable[[int, float], None] | None = None,
                     check_every_step: bool = False) -> float:
    """Replay ``requests`` through the engines; returns the simulated end time (s).

    router.pick(request, replicas) -> Replica is required when there are several engines.
    progress(requests_done, sim_time_s) is called about every 0.2 s of wall time.
    check_every_step runs the block manager's invariant check after each step (tests).
    """
    if len(engines) > 1 and router is None:
        raise ValueError("several engines need a router")
    if len(engines) > 1 and fast_forward:  # replicas advanced lazily (same tables as stepping)
        from nanosim.sim.lazy_cluster import simulate_cluster_lazy

        return simulate_cluster_lazy(engines, requests, router, progress, check_every_step)
    if len(engines) == 1:
        with young_collections_rarer():
            return run_virtual(engines[0], requests, progress, None, fast_forward, check_every_step)
    return _SimpyCluster(engines, requests, router, fast_forward, progress, check_every_step).run()


class _SimpyCluster:
    """One SimPy environment: an arrivals process that routes requests as they come, and one
    loop per replica that steps its engine (fast-forwarding decode runs up to the next
    arrival) and sleeps while it has nothing to do."""

    def __init__(self, engines, requests, router, fast_forward: bool, progress, check_every_step: bool):
        import simpy  # ~15 ms of imports a one-engine replay does without

        self.simpy = simpy
        self.env = simpy.Environment()
        self.replicas = [Replica(e, i) for i, e in enumerate(engines)]
        self.src = _Arrivals(requests, self.replicas, router)
        self.fast_forward, self.progress, self.check_every_step = fast_forward, progress, check_every_step
        self.end_s = 0.0
        self.reported = time.perf_counter()  # wall time of the last progress call

    def run(self) -> float:
        env = self.env
        env.process(self.arrivals())
        loops = [env.process(self.engine_loop(r)) for r in self.replicas]
        env.run(until=self.simpy.AllOf(env, loops))
        if self.progress is not None:
            self.progress(self.requests_done(), self.end_s)
        return self.end_s

    def requests_done(self) -> int:
        return sum(len(r.engine.metrics.requests["request_id"]) for r in self.replicas)

    def report(self, t: float) -> None:
        if time.perf_counter() - self.reported > 0.2:
            self.reported = time.perf_counter()
            self.progress(self.requests_done(), t)

    def arrivals(self):
        env, src = self.env, self.src
        while not src.exhausted:
            nxt = src.next_s
            if nxt > env.now:
                yield env.timeout(nxt - env.now)
            src.route_until(nxt)
        for rep in self.replicas:  # let idle replicas see that nothing more will come
            if rep.wake is not None and not rep.wake.triggered:
                rep.wake.succeed()

    def engine_loop(self, rep: Replica):
        env, src, engine, t = self.env, self.src, rep.engine, 0.0
        sched, step = engine.scheduler, engine.step
        fast_forward, progress, check = self.fast_forward, self.progress, self.check_every_step
        while True:
            if src.next_s <= t:
                src.route_until(t)
            if rep.pending:
                rep.release()
            if not sched.has_work:
                if src.exhausted:
                    break
                rep.wake = env.event()
                yield rep.wake
                rep.wake = None
                if rep.pending:
                    t = max(t, min(r.arrival_s for r in rep.pending))
                continue
            nxt = src.next_s
            end = engine.fast_forward(t, nxt) if fast_forward else None
            if end is None:
                end = t + step(t)
            if check:
                engine.check()
            t = end
            if t >= nxt and t > env.now:
                # an arrival is due by the next step's start: wait for the clock there, so
                # that the router sees every replica after its steps that start before the
                # arrival and none of those after. Until then no one can observe this
                # replica, so its steps run without a SimPy event each.
                yield env.timeout(t - env.now)
            if progress is not None:
                self.report(t)
        self.end_s = max(self.end_s, t)


def simulate(engine: Engine, requests: Seq[Request], **kwargs) -> float:
    """Replay ``requests`` through one engine (see simulate_cluster for the options)."""
    return simulate_cluster([engine], requests, None, **kwargs)
