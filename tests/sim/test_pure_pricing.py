"""Both cost models are pure functions of the step shape: a step's decode path travels in
its StepShape (decided by the scheduler), so prices do not depend on who asks or in which
order, a priced decode run leaves nothing to undo, and decode_run_s equals stepping on runs
whose first step changes path."""
from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from nanosim.config import GPUS, MODELS, EngineConfig
from nanosim.core.batch import DECODE_PATHS, PACKED, STEADY, SUBSET, StepShape, with_decode_paths
from nanosim.core.engine import Engine
from nanosim.core.request import Request
from nanosim.sim.backend import SimBackend
from nanosim.sim.cost_select import make_cost_model
from nanosim.sim.costmodel import RooflineCostModel
from nanosim.sim.profile import ProfileCostModel
from nanosim.sim.simulator import simulate

Q06, H100 = MODELS["qwen3-0.6b"], GPUS["h100"]
CFG = EngineConfig(max_num_seqs=16, max_num_batched_tokens=512, max_model_len=4096)
MODELS_ = ["profile", "roofline", "cross-gpu"]
# counters and memos: the only attributes pricing may change
BOOKKEEPING = {"total_steps", "extrapolated_steps", "_graph_sizes", "_fixed_decode"}


def cost_models():
    """The shipped qwen3-0.6b H100 profile (it measured the packed, subset and steady paths),
    the roofline, and that profile carried to an H200 (--profile-from), each built fresh."""
    return {"profile": make_cost_model(Q06, H100, CFG, "auto"), "roofline": RooflineCostModel(Q06, H100),
            "cross-gpu": make_cost_model(Q06, GPUS["h200"], CFG, "auto", profile_from="h100")}


def requests(n: int = 40) -> list[Request]:
    rng = np.random.default_rng(3)
    return [Request(i, i * 0.004, int(rng.integers(20, 700)), int(rng.integers(5, 120))) for i in range(n)]


class Recording(SimBackend):
    """A SimBackend that keeps each executed step's shape and each priced run's first path."""

    def __init__(self, cost):
        super().__init__(cost)
        self.shapes, self.durations, self.run_paths = [], [], []

    def execute(self, batch):
        r = super().execute(batch)
        self.shapes.append(batch.shape)
        self.durations.append(r.duration_s)
        return r

    def decode_run_s(self, num_seqs, context_tokens, num_steps, max_context_tokens=0, first_path=PACKED,
                     *cut):  # cut: (start_s, until_s), passed on
        self.run_paths.append(first_path)
        return super().decode_run_s(num_seqs, context_tokens, num_steps, max_context_tokens, first_path, *cut)


def run(cost, fast_forward: bool, num_blocks: int = 120):
    """A replay with few KV blocks (preemptions drop decode rows) and rows finishing."""
    backend = Recording(cost)
    eng = Engine(CFG, backend, num_blocks)
    simulate(eng, requests(), fast_forward=fast_forward)
    return eng, backend


@pytest.fixture(scope="module")
def stepped_shapes():
    _, rec = run(cost_models()["roofline"], fast_forward=False)
    return rec.shapes


def test_recorded_steps_take_every_path(stepped_shapes):
    paths = {s.decode_path for s in stepped_shapes if s.num_decode_seqs and not s.num_prefill_seqs}
    assert paths == set(DECODE_PATHS)
    assert with_decode_paths([replace(s, decode_path=PACKED) for s in stepped_shapes]) == stepped_shapes


@pytest.mark.parametrize("name", MODELS_)
def test_shuffled_order_prices_like_step_order(stepped_shapes, name):
    """(a) The same durations, shape by shape, priced in step order, shuffled, or reversed."""
    cm = cost_models()[name]
    in_order = [cm.step_time_s(s) for s in stepped_shapes]
    order = list(range(len(stepped_shapes)))
    random.Random(7).shuffle(order)
    shuffled = {i: cm.step_time_s(stepped_shapes[i]) for i in order}
    other = cost_models()[name]
    backwards = [other.step_time_s(s) for s in reversed(stepped_shapes)][::-1]
    assert [shuffled[i] for i in range(len(order))] == in_order == backwards


@pytest.mark.parametrize("name", MODELS_)
def test_no_hidden_state(stepped_shapes, name):
    """(b) A fresh cost model and one that priced a whole replay (steps and decode runs)
    price every shape identically; pricing changes nothing but counters and memos."""
    used = cost_models()[name]
    eng, rec = run(used, fast_forward=True)
    before = {k: v for k, v in vars(used).items() if k not in BOOKKEEPING}
    assert rec.run_paths and rec.shapes
    used.decode_run_s(9, 9 * 800, 50, 900, SUBSET)  # a run priced and dropped: nothing to undo
    fresh = cost_models()[name]
    for s in stepped_shapes:
        assert used.step_time_s(s) == fresh.step_time_s(s), s
    after = {k: v for k, v in vars(used).items() if k not in BOOKKEEPING}
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)


@pytest.mark.parametrize("name", MODELS_)
@pytest.mark.parametrize("first", DECODE_PATHS)
def test_decode_run_equals_stepping_across_a_path_change(name, first):
    """(c) decode_run_s of a run whose first step takes ``first`` (then steady) equals the
    step prices of its shapes, step by step and in sum, whatever was priced before."""
    cm = cost_models()[name]
    n, ctx0, max0, k = 12, 12 * 900, 1500, 40
    got = cm.decode_run_s(n, ctx0, k, max0, first)
    shapes = [StepShape(num_decode_seqs=n, decode_context_tokens=ctx0 + n * i,
                        decode_max_context_tokens=max0 + i, decode_path=first if i == 0 else STEADY)
              for i in range(k)]
    want = np.array([cm.step_time_s(s) for s in reversed(shapes)][::-1])
    assert np.array_equal(got, want) and got.sum() == want.sum()
    if name != "roofline" and first != STEADY:  # the shipped profile prices the paths apart
        assert got[0] != cm.decode_run_s(n, ctx0, 1, max0, STEADY)[0]


def test_fast_forward_equals_stepping_with_path_changes():
    """A replay whose steps take all three paths (a row leaves: subset; a prompt finishes:
    packed): fast-forwarded, the steps table equals stepping (profile cost model, no
    jitter). A run starts where the scheduler is quiet, after a decode-only step with the
    same rows: its first path is the scheduler's (steady there)."""
    tables = []
    for ff in (False, True):
        eng, rec = run(cost_models()["profile"], fast_forward=ff)
        tables.append(eng.results()[1])
        assert {s.decode_path for s in rec.shapes} == set(DECODE_PATHS)
    assert rec.run_paths and set(rec.run_paths) == {STEADY}
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)
