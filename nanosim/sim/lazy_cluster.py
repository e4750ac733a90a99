"""Cluster replay with replicas advanced lazily: decode runs are not cut at every arrival.

Replicas interact only through the router, at arrivals. Stepping one by one (and the
single-engine replay), the router at arrival time a sees every replica after its steps that
start before a and before any step that starts at or after a (simulator.py's tie rule). A
replica therefore need not stop at each arrival anywhere in the cluster; it must only be
able to report, at a, what the router reads:

* its outstanding tokens: requests finish only at a decode run's last step, so during a
  run they are those before the run (or after it, once its last step starts before a);
* its KV blocks in use: before the run plus the block appends of its steps that start
  before a (the run knows at which step each append falls, DecodeGroup.needs_between);
* the prefix cache's hits for a prompt: the lookup before the run, cut at the first block
  those appends evict (BlockManager.lookup_after: appends take the free queue's head).

So a replica holds a priced decode run (``_Run``) across arrivals and applies it only when
its last step starts before the arrival being routed, or, cut at that arrival, when the
router sends the request to it. Steps other than decode runs (prefills, finishes,
preemptions) are executed when the replica is advanced past their start. The tables equal
stepping one by one (tests/cluster/test_lazy_cluster.py), with runs as long as the replica's
own arrivals allow instead of ~1/replicas of that. Without step jitter: with it, a run
draws factors for the steps it priced and did not take, so stepped and lazy replays agree in
distribution (as simulator.py's fast-forward does).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence as Seq
from itertools import islice

import numpy as np

from nanosim.core.batch import STEADY
from nanosim.core.engine import Engine
from nanosim.core.request import Request
from nanosim.sim.gc_tuning import young_collections_rarer
from nanosim.sim.replica import Replica

_FIRST_CHUNK = 64  # steps priced when a run starts; doubled while arrivals need more


class _Run:
    """A priced decode-only run of up to ``k`` steps from ``start_s``, not applied yet."""

    __slots__ = ("k", "num_seqs", "ctx0", "max0", "durs", "ends", "offsets", "used0", "horizon", "path")

    def __init__(self, k: int, num_seqs: int, ctx0: int, max0: int, start_s: float, used0: int,
                 path: str):
        self.k, self.num_seqs, self.ctx0, self.max0, self.used0 = k, num_seqs, ctx0, max0, used0
        self.path = path  # the first step's decode path (the others: steady)
        self.durs = np.empty(0)
        self.ends = np.array([start_s])  # ends[i]: end of step i - 1 = start of step i
        self.offsets: np.ndarray | None = None  # steps whose scheduling appends a block
        # start of the last priced step: an arrival at or before it finds the run pending
        self.horizon = -math.inf

    def price_until(self, run_s, a: float) -> int:
        """Price chunks until a step starting at or after ``a`` is priced, or all k are;
        returns how many of the run's steps start before ``a``. Sequential float sums, as
        stepping gives."""
        n = len(self.durs)
        while n < self.k and self.ends[-1] < a:
            m = min(max(_FIRST_CHUNK, n), self.k - n)
            d = np.asarray(run_s(self.num_seqs, self.ctx0 + self.num_seqs * n, m, self.max0 + n,
                                 STEADY if n else self.path), dtype=float)
            e = np.cumsum(np.concatenate((self.ends[-1:], d)))
            self.durs = np.concatenate((self.durs, d))
            self.ends = np.concatenate((self.ends, e[1:]))
            n += m
            self.horizon = float(self.ends[n - 1])
        return int(np.searchsorted(self.ends[:n], a, side="left"))


class _Arrival:
    """The arrival being routed, one cell for all of a cluster's replicas (set once per
    arrival, not once per replica)."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = 0.0  # s


class LazyReplica(Replica):
    """A replica whose engine runs only as far as the router's questions need."""

    def __init__(self, engine: Engine, index: int, check: bool = False,
                 now: _Arrival | None = None) -> None:
        super().__init__(engine, index)
        self.t = 0.0  # start of the replica's next step (or when it went idle)
        self.run: _Run | None = None
        self.now = _Arrival() if now is None else now  # shared by the cluster's replicas
        self._run_s = engine.backend.decode_run_s
        self._check = check

    @property
    def at(self) -> float:
        """The arrival being routed (s): the time the queries below answer for."""
        return self.now.at

    # ---- what routers read, at self.at --------------------------------------------------
    def kv_blocks_used(self) -> int:
        run = self.run
        if run is None:
            return self.engine.bm.num_used
        return run.used0 + self._appended_before(run, self.now.at)

    def prefix_hit_blocks(self, keys: list[int]) -> int:
        return self.engine.bm.num_hit_blocks(keys, 0 if self.run is None else self._taken)

    def _taken(self) -> int:
        """Blocks the pending run's steps that start before the arrival take."""
        return self._appended_before(self.run, self.now.at)

    def _appended_before(self, run: _Run, a: float) -> int:
        """Blocks the run's steps that start before ``a`` append."""
        j = run.price_until(self._run_s, a)
        if run.offsets is None:
            g = self.engine.scheduler.group
            needs = g.needs_between(g.clock, g.clock + run.k, self.engine.bm.num_free + 1)
            run.offsets = np.array([at - g.clock for at, _ in needs], dtype=np.int64)
        return int(np.searchsorted(run.offsets, j, side="left"))

    # ---- advancing ------------------------------------------------------------------------
    def advance(self, a: float) -> None:
        """Run every step that starts before ``a``, except a priced decode run with a step
        at or after ``a``, which stays pending (the queries above report through it)."""
        engine = self.engine
        while True:
            run = self.run
            if run is not None:
                j = run.price_until(self._run_s, a)
                if j < run.k:
                    return
                self._apply(run, run.k)
                continue
            if self.t >= a:
                return
            self.release()
            if not engine.has_work:
                return
            k = engine.scheduler.decode_run_limit()
            if k >= 2:
                g = engine.scheduler.group
                self.run = _Run(k, len(g), g.context_tokens, g.max_context_tokens, self.t,
                                engine.bm.num_used, engine.scheduler.next_decode_path())
                continue
            self.t += engine.step(self.t)
            if self._check:
                engine.check()

    def cut(self, a: float) -> None:
        """Advance to ``a`` and apply a pending run's steps that start before it (the rest
        is dropped: a request routed here at ``a`` changes the batch at the next step)."""
        self.advance(a)
        run = self.run
        if run is not None:
            self._apply(run, run.price_until(self._run_s, a))

    def _apply(self, run: _Run, j: int) -> None:
        engine = self.engine
        sched = engine.scheduler
        self.run = None
        if j:
            offsets = sched.advance_decodes(j)
            kv_used = (run.used0 + np.searchsorted(np.asarray(offsets, dtype=np.int64), np.arange(j), side="right")
                       if offsets else run.used0)
            engine.metrics.record_decode_run(run.ends[:j], run.durs[:j], run.num_seqs, run.ctx0,
                                             run.max0, kv_used)
            self.t = float(run.ends[j])
            if j == run.k:
                sched.finish_due(self.t)
            engine._collect()
            if self._check:
                engine.check()


def simulate_cluster_lazy(engines: list[Engine], requests: Seq[Request], router,
                          progress: Callable[[int, float], None] | None = None,
                          check_every_step: bool = False) -> float:
    """simulate_cluster's replay (same tables as stepping one by one, see the module doc)
    for several engines behind ``router``; returns the simulated end time (s). A plain loop
    over the arrivals: replicas advance only here, so no event queue is needed."""
    with young_collections_rarer():
        now = _Arrival()
        replicas = [LazyReplica(e, i, check_every_step, now) for i, e in enumerate(engines)]
        reqs = sorted(requests, key=lambda r: (r.arrival_s, r.request_id))
        reported = time.perf_counter()
        for r in reqs:
            a = now.at = r.arrival_s
            for rep in replicas:
                run = rep.run
                # cheap tests first: nothing changes before a on this replica when its next
                # step starts at or after a, or its pending run has a priced step starting there
                if (a > run.horizon) if run is not None else rep.t < a:
                    rep.advance(a)
            rep = router.pick(r, replicas)
            rep.cut(a)
            rep.pending.append(r)
            rep.routed_tokens += r.prompt_tokens + r.output_tokens
            rep.routed_requests += 1
            if rep.t < a:  # idle: it starts when the request arrives
                rep.t = a
            if progress is not None and time.perf_counter() - reported > 0.2:
                reported = time.perf_counter()
                progress(sum(len(r.engine.metrics.requests["request_id"]) for r in replicas), a)
        end = 0.0
        for rep in replicas:
            rep.advance(math.inf)
            end = max(end, rep.t)
        if progress is not None:
            progress(sum(len(r.engine.metrics.requests["request_id"]) for r in replicas), end)
        return end
