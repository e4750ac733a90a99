"""Backends declare their capabilities (core/batch.BackendCaps); the engine reads the
declaration, not the presence of methods."""
from dataclasses import FrozenInstanceError, replace

import pytest

from nanosim.calibrate.validate import RecordingBackend
from nanosim.config import EngineConfig
from nanosim.core.batch import BackendCaps
from nanosim.core.engine import Engine
from nanosim.sim.backend import SimBackend
from tests.core.toy import ToyCost, req


def make_engine(backend=None):
    cfg = EngineConfig(block_size_tokens=16, max_model_len=4096, max_num_seqs=16)
    return Engine(cfg, backend or SimBackend(ToyCost()), 64)


def _decode_heavy(eng):
    for i in range(4):
        eng.add_request(req(i, 20, out=40))
    t = 0.0
    while eng.has_work:
        end = eng.fast_forward(t, float("inf"))
        t = end if end is not None else t + eng.step(t)
    return t


def test_caps_are_declared_and_frozen():
    from nanosim.gpu.backend import GpuBackend

    assert SimBackend.caps == BackendCaps(needs_tokens=False, decode_runs=True)
    assert GpuBackend.caps == BackendCaps(needs_tokens=True, decode_runs=False)
    with pytest.raises(FrozenInstanceError):
        SimBackend.caps.needs_tokens = True


def test_fast_forward_follows_the_declared_caps_not_the_methods():
    off = SimBackend(ToyCost())
    off.caps = replace(SimBackend.caps, decode_runs=False)  # it still has decode_run_s
    off.decode_run_s = lambda *a: pytest.fail("priced a run it did not declare")
    stepped, ran = make_engine(off), make_engine()
    assert _decode_heavy(stepped) == pytest.approx(_decode_heavy(ran))
    # the same steps either way; only the declared one took runs (fewer execute() calls)
    assert len(stepped.metrics.steps["step"]) == len(ran.metrics.steps["step"])


def test_recording_backend_keeps_tokens_need_and_prices_step_by_step():
    rec = RecordingBackend(SimBackend(ToyCost()))
    assert rec.caps == BackendCaps(needs_tokens=False, decode_runs=False)
    eng = make_engine(rec)
    _decode_heavy(eng)
    assert len(rec.shapes) == len(eng.metrics.steps["step"])  # every step went through execute
