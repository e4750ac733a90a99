"""Profiling -> fitting -> validation against a synthetic "GPU" whose true step times the
test controls: the fitted cost model must recover them, per step and per request."""
import math

import numpy as np

import pytest

from nanosim.calibrate.shapes import Composition, default_grid
from nanosim.calibrate.validate import RecordingBackend, format_validation, validate_replay, write
from nanosim.config import EngineConfig, get_gpu, get_model
from nanosim.core.batch import BackendCaps, StepResult
from nanosim.core.engine import Engine
from nanosim.sim.backend import SimBackend
from nanosim.sim.costmodel import RooflineCostModel
from nanosim.sim.profile import ProfileCostModel, build_profile, decode_shape, load_profile, save_profile
from nanosim.workload import make_workload

MODEL, GPU = get_model("qwen3-1.7b"), get_gpu("h100")


class TrueGpu:
    """The synthetic GPU: a roofline with other efficiencies and overhead than our defaults,
    times a smooth wiggle in the step's token count (so no model family fits it exactly)."""

    caps = BackendCaps()  # no tokens, no decode runs: each step measured

    def __init__(self, wiggle=0.02):
        self.base = RooflineCostModel(MODEL, GPU, hbm_efficiency=0.78, gemm_efficiency=0.62,
                                      attn_efficiency=0.35, step_overhead_s=1.7e-3)
        self.wiggle = wiggle

    def time(self, shape) -> float:
        return self.base.step_time_s(shape) * (1 + self.wiggle * math.sin(math.log1p(shape.num_tokens)))

    def execute(self, batch) -> StepResult:
        return StepResult(self.time(batch.shape))


@pytest.fixture(scope="module")
def fitted():
    gpu = TrueGpu()
    dec, pre, mixed = default_grid(max_blocks=4000, block_size=256, max_tokens=8192, max_seqs=256,
                                   max_model_len=8192)
    prof = build_profile(MODEL, "h100", 1, gpu.time, dec, pre, [m.shape for m in mixed],
                         attention_backend="synthetic")
    return gpu, prof


def engines(gpu, prof, num_blocks, **cfg):
    c = EngineConfig(max_model_len=8192, **cfg)
    real = Engine(c, RecordingBackend(gpu), num_blocks)
    sim = Engine(c, SimBackend(ProfileCostModel(prof, MODEL, GPU)), num_blocks)
    return real, sim


@pytest.mark.parametrize("suite,rate,num_blocks,name", [
    ("chatbot", 2.0, 3000, "light"), ("chatbot", 12.0, 3000, "medium"),
    ("code", 60.0, 64, "saturated")])
def test_fitted_model_recovers_the_true_gpu(fitted, tmp_path, suite, rate, num_blocks, name):
    gpu, prof = fitted
    reqs = make_workload(suite, rate, num_requests=400, seed=11)
    real, sim = engines(gpu, prof, num_blocks)
    v = validate_replay(reqs, real, sim)
    if name == "saturated":
        assert v.real_requests.preemptions.sum() > 0
    assert v.check(max_step_mape=0.03, max_latency_error=0.05) == [], format_validation(v)
    assert len(v.steps) == len(real.results()[1])
    out = write(v, tmp_path, {"case": name})
    assert (out / "validation.html").stat().st_size > 10_000


def test_roofline_without_profile_is_flagged_by_thresholds(fitted):
    gpu, _ = fitted
    reqs = make_workload("rag", 6.0, num_requests=150, seed=2)
    c = EngineConfig(max_model_len=8192)
    real = Engine(c, RecordingBackend(gpu), 3000)
    sim = Engine(c, SimBackend(RooflineCostModel(MODEL, GPU)), 3000)  # default efficiencies
    v = validate_replay(reqs, real, sim)
    assert v.check(max_step_mape=0.03, max_latency_error=0.05)  # uncalibrated: over threshold


def test_profile_round_trip_and_grid_fits_limits(fitted, tmp_path):
    _, prof = fitted
    save_profile(prof, tmp_path / "p.json")
    again = load_profile(tmp_path / "p.json")
    assert again.decode == prof.decode and again.prefill == prof.prefill
    dec, pre, mixed = default_grid(max_blocks=100, block_size=256, max_tokens=2048, max_seqs=64,
                                   max_model_len=4096)
    for b, c, *m in dec:
        comp = Composition(num_decodes=b, decode_context=c, long_context=m[0] if m else 0,
                           long_rows=m[1] if len(m) > 1 else 1)
        assert comp.blocks_needed(256) <= 100 and b <= 64
        assert comp.shape == decode_shape(b, c, *m)
    assert any(len(d) == 3 for d in dec) and any(len(d) == 4 for d in dec)  # skewed, half-long
    assert all(q <= 2048 for q, _ in pre) and all(m.tokens() <= 2048 for m in mixed)
    dec, pre, _ = default_grid(max_blocks=4000, block_size=16, max_tokens=512, max_seqs=48,
                               max_model_len=4096, chunks=(16, 24, 96, 512, 768), batches=(1, 3, 48))
    assert {d[0] for d in dec} == {1, 3, 48} and {q for q, _ in pre} == {16, 24, 96, 512}


def test_skewed_composition_has_one_long_row():
    from nanosim.gpu.inputs import SeqWork

    comp = Composition(num_decodes=3, decode_context=128, long_context=1000)
    works = comp.works(16, SeqWork)
    assert [w.start_pos + 1 for w in works] == [1000, 128, 128]
    assert [len(w.block_table) for w in works] == [63, 8, 8]
    assert len({b for w in works for b in w.block_table}) == 79  # distinct blocks
    assert comp.shape.decode_max_context_tokens == 1000 and comp.shape.decode_context_tokens == 1256


def test_profile_passes_alternate_direction_and_take_the_median():
    """A clock that drifts linearly over the sweep biases a single pass by grid position;
    a pass and its reverse cancel it for every point; later pairs run shuffled."""
    from nanosim.calibrate.profile import median_of_passes

    keys = list("abcde")
    for passes in (1, 2, 4):
        clock, seen, calls = [0], [], []

        def measure(k):  # true time 1.0 for every point, plus 0.01 of drift per measurement
            seen.append(k)
            clock[0] += 1
            return 1.0 + 0.01 * clock[0]

        got = median_of_passes(keys, measure, passes, progress=lambda d, t: calls.append((d, t)))
        assert seen[:10] == (keys + keys[::-1])[:5 * passes]
        if passes == 4:  # the second pair: a shuffled order, then its reverse
            assert sorted(seen[10:15]) == keys and seen[10:15] != keys and seen[15:] == seen[10:15][::-1]
        assert calls[-1] == (5 * passes, 5 * passes) and len(calls) == 5 * passes
        spread = max(got.values()) - min(got.values())
        assert spread == pytest.approx(0.04 if passes == 1 else 0.0, abs=1e-12) or (
            passes == 4 and spread < 0.02)  # a shuffled pair cancels drift in its sums
    with pytest.raises(ValueError, match="passes"):
        median_of_passes(keys, measure, 0)


class JitteryGpu(TrueGpu):
    """TrueGpu whose steps vary like a shared host's: most within a few percent of the
    median, one in ten 10-100% slower (seeded)."""

    def __init__(self, seed=0):
        super().__init__()
        self.rng = np.random.default_rng(seed)

    def factor(self, n=None):
        slow = self.rng.random(n) < 0.1
        return np.where(slow, self.rng.uniform(1.1, 2.0, n), self.rng.uniform(0.97, 1.02, n))

    def execute(self, batch) -> StepResult:
        return StepResult(self.time(batch.shape) * float(self.factor()))


def test_step_jitter_from_the_profiler_makes_latencies_add_up(fitted):
    """Medians (the profile) under-predict sums of jittery steps: a TPOT is a mean. With the
    profiler's run/median quantiles drawn per simulated step, TPOT and E2E come out right;
    without them the simulation runs fast by about the jitter's mean."""
    from dataclasses import replace

    from nanosim.calibrate.profile import jitter_quantiles
    from nanosim.sim.jitter import StepJitter

    gpu, prof = fitted
    runs = JitteryGpu(seed=1).factor(20_000)  # the factors of the profiler's timed runs
    prof = replace(prof, step_jitter=jitter_quantiles(list(runs / np.median(runs))))
    assert len(prof.step_jitter) == 101 and jitter_quantiles([1.0] * 50) == ()
    errs = {}
    for jitter in (True, False):
        c = EngineConfig(max_model_len=8192)
        real = Engine(c, RecordingBackend(JitteryGpu(seed=2)), 3000)
        sim = Engine(c, SimBackend.for_cost(ProfileCostModel(prof, MODEL, GPU), jitter), 3000)
        assert (sim.backend.jitter is not None) == jitter
        v = validate_replay(make_workload("chatbot", 8.0, num_requests=300, seed=5), real, sim)
        e = v.latency.set_index(["metric", "stat"]).rel_error
        errs[jitter] = e
    mean = StepJitter(prof.step_jitter).mean
    assert 1.05 < mean < 1.12  # 0.9 * ~0.995 + 0.1 * 1.55 over a median of ~1.0
    for m in ("tpot_s", "e2e_s"):
        assert abs(errs[True][(m, "p50")]) < 0.03, errs[True]
        assert abs(errs[True][(m, "mean")]) < 0.03, errs[True]
        assert errs[False][(m, "mean")] < -0.04  # medians alone run fast


def test_a_slow_spell_of_the_machine_is_flagged(fitted, tmp_path):
    """The same GPU with a stretch of its steps 15% slow (a shared host's slow spell): the
    validation says so (speed_drift, the printed warning, validation.json); the steady GPU
    is not flagged."""
    import json

    from nanosim.calibrate.validate import speed_drift

    gpu, prof = fitted

    class SpellGpu(TrueGpu):
        def __init__(self):
            super().__init__()
            self.n = 0

        def time(self, shape):
            self.n += 1
            return gpu.time(shape) * (1.15 if 2000 <= self.n < 3500 else 1.0)

    reqs = make_workload("chatbot", 12.0, num_requests=400, seed=11)
    results = {}
    for name, g in (("steady", gpu), ("spell", SpellGpu())):
        real, sim = engines(g, prof, 3000)
        v = validate_replay(reqs, real, sim)
        results[name] = (speed_drift(v.steps), format_validation(v), write(v, tmp_path / name, {}))
    steady, spell = results["steady"][0], results["spell"][0]
    assert steady["off_fraction"] < 0.02 and "WARNING" not in results["steady"][1]
    assert spell["off_fraction"] > 0.1 and spell["high"] > 1.1 and "WARNING: measured/predicted drifted" in results["spell"][1]
    saved = json.loads((results["spell"][2] / "validation.json").read_text())["speed_drift"]
    assert saved["off_fraction"] == pytest.approx(spell["off_fraction"])
