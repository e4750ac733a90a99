"""--profile-from: a profile's prices carried to another GPU by the roofline, GPU phases
scaled and host time kept, checked against GPUs whose specs the tests make up."""
import dataclasses
import json

import numpy as np
import pytest

from nanosim.calibrate.shapes import default_grid
from nanosim.cli import main
from nanosim.config import get_gpu, get_model
from nanosim.core.batch import StepShape
from nanosim.sim.cost_select import make_cost_model
from nanosim.sim.costmodel import RooflineCostModel
from nanosim.sim.cross_gpu import CrossGpuCostModel
from nanosim.sim.profile import ProfileCostModel, ProfileError, build_profile, save_profile

MODEL, H100 = get_model("qwen3-0.6b"), get_gpu("h100")
EFF = dict(hbm_efficiency=0.8, gemm_efficiency=0.6, attn_efficiency=0.4, step_overhead_s=1.5e-3,
           per_seq_overhead_s=2e-6, eager_overhead_s=4e-3)


def true_gpu(gpu):
    """The synthetic machine: a roofline with these efficiencies and host terms on ``gpu``."""
    return RooflineCostModel(MODEL, gpu, **EFF)


def profile_of(gpu_name: str, spec):
    dec, pre, mixed = default_grid(max_blocks=3000, block_size=256, max_tokens=8192, max_seqs=256,
                                   max_model_len=4096)
    return build_profile(MODEL, gpu_name, 1, true_gpu(spec).step_time_s, dec, pre,
                         [m.shape for m in mixed], attention_backend="synthetic")


@pytest.fixture(scope="module")
def h100_profile():
    return profile_of("h100", H100)


def decode(rows, ctx):
    return StepShape(num_decode_seqs=rows, decode_context_tokens=rows * ctx,
                     decode_max_context_tokens=ctx)


def prefill(tokens, cached=0):
    return StepShape(num_prefill_seqs=1, prefill_tokens=tokens,
                     prefill_attn_pairs=tokens * cached + tokens * (tokens + 1) / 2,
                     prefill_kv_tokens=tokens + cached)


STEPS = [decode(1, 300), decode(8, 1000), decode(8, 1000), decode(64, 2000), prefill(512),
         prefill(2048, 1024), decode(3, 500),
         StepShape(num_prefill_seqs=1, prefill_tokens=256, prefill_attn_pairs=256 * 257 / 2,
                   prefill_kv_tokens=256, num_decode_seqs=16, decode_context_tokens=16 * 700,
                   decode_max_context_tokens=700)]


def test_equal_specs_are_the_identity(h100_profile):
    twin = dataclasses.replace(H100, name="h100-twin")  # another name, the same datasheet
    cross = CrossGpuCostModel(ProfileCostModel(h100_profile, MODEL, H100), twin)
    plain = ProfileCostModel(h100_profile, MODEL, H100)
    # equal to the last bits a division and its inverse can round
    assert [cross.step_time_s(s) for s in STEPS] == pytest.approx([plain.step_time_s(s) for s in STEPS],
                                                                  rel=1e-13)
    assert cross.decode_run_s(8, 8000, 50, 1000) == pytest.approx(plain.decode_run_s(8, 8000, 50, 1000),
                                                                  rel=1e-13)
    host, gpu = cross.split_s(decode(8, 1000))
    assert host > 0 and gpu > 0 and host + gpu == pytest.approx(plain.step_time_s(decode(8, 1000)))


def test_double_bandwidth_halves_the_decode_gpu_part_and_keeps_the_host_part(h100_profile):
    fast = dataclasses.replace(H100, name="h100-2xhbm", hbm_bytes_per_s=2 * H100.hbm_bytes_per_s)
    same = CrossGpuCostModel(ProfileCostModel(h100_profile, MODEL, H100), H100)
    cross = CrossGpuCostModel(ProfileCostModel(h100_profile, MODEL, H100), fast)
    for s in (decode(1, 300), decode(8, 1000), decode(64, 2000)):
        br = same.src_roofline.breakdown(same.source._padded(s))
        # the premise: every GPU phase of these decode steps is memory-bound
        assert br["gemm_memory"] > br["gemm_compute"] and br["decode_attn_memory"] > br["decode_attn_compute"]
        host, gpu = same.split_s(s)
        host2, gpu2 = cross.split_s(s)
        assert host2 == pytest.approx(host, rel=1e-12) and host > 0
        assert gpu2 == pytest.approx(gpu / 2, rel=1e-9)
        assert cross.step_time_s(s) == pytest.approx(host + gpu / 2, rel=1e-9)
    # a compute-bound prefill barely moves with bandwidth, and halves its GEMMs with FLOP/s
    big = prefill(4096)
    assert cross.step_time_s(big) == pytest.approx(same.step_time_s(big), rel=0.05)
    flops = dataclasses.replace(H100, name="h100-2xflops", bf16_flops_per_s=2 * H100.bf16_flops_per_s)
    host, gpu = same.split_s(big)
    host3, gpu3 = CrossGpuCostModel(ProfileCostModel(h100_profile, MODEL, H100), flops).split_s(big)
    assert host3 == pytest.approx(host) and 0.45 * gpu < gpu3 < 0.75 * gpu


def test_prediction_for_an_unprofiled_gpu_beats_the_unscaled_profile(h100_profile):
    """A machine whose efficiencies and host time are the same on both GPUs: the H100
    profile scaled to the target's datasheet predicts the target within the profile's own
    interpolation error; unscaled, decode steps miss by the bandwidth ratio."""
    target = dataclasses.replace(H100, name="made-up", hbm_bytes_per_s=4.8e12,
                                 bf16_flops_per_s=1200e12)
    truth = true_gpu(target)
    cross = CrossGpuCostModel(ProfileCostModel(h100_profile, MODEL, H100), target)
    plain = ProfileCostModel(h100_profile, MODEL, H100)
    shapes = [decode(b, c) for b in (1, 4, 16, 64, 200) for c in (200, 900, 3000)]
    shapes += [prefill(t, c) for t in (256, 1024, 4096) for c in (0, 2048)]
    meas = np.array([truth.step_time_s(s) for s in shapes])
    err = lambda m: np.mean(np.abs(np.array([m.step_time_s(s) for s in shapes]) - meas) / meas)  # noqa: E731
    assert err(cross) < 0.02 < 0.08 < err(plain)


def test_make_cost_model_profile_from_and_its_errors(h100_profile, tmp_path):
    save_profile(h100_profile, tmp_path / "h100_p.json")
    cm = make_cost_model(MODEL, get_gpu("h200"), 1, str(tmp_path), profile_from="h100")
    assert isinstance(cm, CrossGpuCostModel) and cm.description.startswith("profile-from h100")
    assert "HBM 1.43x" in cm.description
    with pytest.raises(ProfileError, match="--profile-from a100"):
        make_cost_model(MODEL, get_gpu("h200"), 1, str(tmp_path), profile_from="a100")
    rf = make_cost_model(MODEL, get_gpu("h200"), 1, str(tmp_path))
    assert rf.name == "roofline" and "h100 has one: --profile-from h100" in rf.description


def _simulate(tmp_path, name, *flags):
    trace = tmp_path / "t.csv"
    if not trace.exists():
        trace.write_text("arrival_s,prompt_tokens,output_tokens\n"
                         + "".join(f"{0.05 * i:.2f},{200 + 37 * i},{20 + i}\n" for i in range(30)))
    out = tmp_path / name
    assert main(["simulate", "--trace", str(trace), "--model", MODEL.name, "--out", str(out),
                 "--no-progress", *flags]) == 0
    return json.loads((out / "summary.json").read_text())


def test_simulate_gpu_h200_picks_an_h200_profile_or_says_what_it_used(h100_profile, tmp_path):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    save_profile(h100_profile, profiles / "h100_qwen3-0.6b.json")
    s = _simulate(tmp_path, "a", "--gpu", "h200", "--profile", str(profiles))
    assert s["cost_model"].startswith("roofline (no profile for qwen3-0.6b on h200")
    assert "--profile-from h100" in s["cost_model"]
    s = _simulate(tmp_path, "b", "--gpu", "h200", "--profile", str(profiles), "--profile-from", "h100")
    assert s["cost_model"].startswith("profile-from h100") and "scaled to h200" in s["cost_model"]
    save_profile(profile_of("h200", get_gpu("h200")), profiles / "h200_qwen3-0.6b.json")
    s = _simulate(tmp_path, "c", "--gpu", "h200", "--profile", str(profiles))
    assert s["cost_model"].startswith("profile ") and "h200_qwen3-0.6b.json" in s["cost_model"]
    assert "on h200" in s["cost_model"]
