"""Scheduler._schedule_decode_only (a decode-only step planned without a StepPlan when nothing
waits, is swapped or mid-prefill) plans the step the general path plans: a replay with the
shortcut gives the tables, shapes and preemptions of the same replay with it turned off, in
both prefill modes and both preemption modes, under KV pressure (needs the free pool cannot
cover go to the general path, which preempts)."""
from __future__ import annotations

import random

import pytest

from nanosim.core.scheduler import Scheduler
from nanosim.sim.backend import SimBackend
from nanosim.sim.simulator import simulate
from tests.core.toy import make_engine, req


def _replay(monkeypatch, shortcut: bool, **cfg):
    """(requests, steps, stepped shapes, preemptions, shortcut answers: [planned, declined])."""
    answers = [0, 0]
    plan = Scheduler._schedule_decode_only

    def counted(self):
        batch = plan(self) if shortcut else None
        answers[batch is None] += 1
        return batch

    monkeypatch.setattr(Scheduler, "_schedule_decode_only", counted)
    shapes = []
    execute = SimBackend.execute

    def record(self, batch):  # each stepped step's shape, in order
        shapes.append(batch.shape)
        return execute(self, batch)

    monkeypatch.setattr(SimBackend, "execute", record)
    eng = make_engine(num_blocks=32, **cfg)
    rng = random.Random(7)
    t, reqs = 0.0, []
    for i in range(120):
        t += rng.expovariate(20.0)
        reqs.append(req(i, rng.randint(8, 200), out=rng.randint(1, 120), t=t))
    simulate(eng, reqs)  # fast-forward on, as the simulator runs
    monkeypatch.undo()
    req_cols, step_cols = eng.metrics.columns()
    return req_cols, step_cols, shapes, eng.scheduler.num_preemptions, answers


@pytest.mark.parametrize("chunked", [True, False])
@pytest.mark.parametrize("preemption", ["recompute", "swap"])
def test_the_shortcut_plans_the_general_paths_steps(monkeypatch, chunked, preemption):
    fast = _replay(monkeypatch, True, chunked_prefill=chunked, preemption_mode=preemption)
    slow = _replay(monkeypatch, False, chunked_prefill=chunked, preemption_mode=preemption)
    assert fast[2] == slow[2] and len(fast[2]) > 100  # every stepped step's shape, in order
    assert fast[3] == slow[3] > 0  # preemptions happened, the same
    planned, declined = fast[4]
    assert planned > 50 and declined > 0  # the shortcut planned steps and left some (needs) to the general path
    for a, b in zip(fast[:2], slow[:2]):
        assert a.keys() == b.keys()
        for k in a:
            assert list(a[k]) == list(b[k]), k
