"""--profile-from with a profile that measured device time beside wall time: only the
measured device part is scaled by the roofline, the measured host part is kept; a profile
without device times prices exactly as the fitted split always did."""
import dataclasses
import json

import numpy as np
import pytest

from nanosim.calibrate.shapes import default_grid
from nanosim.cli import main
from nanosim.config import get_gpu, get_model
from nanosim.core.batch import DECODE_PATHS, STEADY, StepShape
from nanosim.sim.costmodel import RooflineCostModel
from nanosim.sim.cross_gpu import HOST_TERMS, CrossGpuCostModel, host_terms_s
from nanosim.sim.profile import (DEVICE_KEYS, ProfileCostModel, ProfileError, build_profile,
                                 device_profile, load_profile, profile_from_dict, profile_to_dict,
                                 save_profile)

MODEL, H100 = get_model("qwen3-0.6b"), get_gpu("h100")
FAST = dataclasses.replace(H100, name="h100-2xhbm", hbm_bytes_per_s=2 * H100.hbm_bytes_per_s)
GPU_EFF = dict(hbm_efficiency=0.8, gemm_efficiency=0.6, attn_efficiency=0.4)
HOST_PER_KV_TOKEN_S = 1e-8  # host time that grows with context (block tables): no roofline host term


def device_s(gpu, shape: StepShape) -> float:
    """The synthetic machine's device time: GPU phases only, no host terms."""
    return RooflineCostModel(MODEL, gpu, step_overhead_s=0.0, per_seq_overhead_s=0.0,
                             eager_overhead_s=0.0, **GPU_EFF).step_time_s(shape)


def host_s(shape: StepShape) -> float:
    """Its host time: per step, per sequence, eager steps, and per token of context."""
    tokens = shape.prefill_tokens + shape.num_decode_seqs
    seqs = shape.num_prefill_seqs + shape.num_decode_seqs
    return (1.5e-3 + 2e-6 * seqs + (4e-3 if shape.prefill_tokens else 0.0)
            + HOST_PER_KV_TOKEN_S * (shape.decode_context_tokens + shape.prefill_kv_tokens)) if tokens else 0.0


def wall_s(gpu, shape: StepShape) -> float:
    return host_s(shape) + device_s(gpu, shape)


def grid():
    return default_grid(max_blocks=3000, block_size=256, max_tokens=8192, max_seqs=256, max_model_len=4096)


def profile(with_device: bool):
    dec, pre, mixed = grid()
    return build_profile(MODEL, "h100", 1, lambda s: wall_s(H100, s), dec, pre, [m.shape for m in mixed],
                         attention_backend="synthetic",
                         measure_device=(lambda s: device_s(H100, s)) if with_device else None)


@pytest.fixture(scope="module")
def profiles():
    return profile(True), profile(False)


def decode(rows, ctx, path=STEADY):
    return StepShape(num_decode_seqs=rows, decode_context_tokens=rows * ctx, decode_max_context_tokens=ctx,
                     decode_path=path)


GRID_DECODES = [decode(b, c) for b in (1, 8, 64) for c in (128, 1024, 2048)]  # measured nodes


def test_the_device_fields_round_trip_and_are_checked(profiles, tmp_path):
    dev, _ = profiles
    assert all(0 < p.extra["gpu_duration_s"] < p.duration_s for p in dev.decode + dev.prefill + dev.mixed)
    save_profile(dev, tmp_path / "p.json")
    back = load_profile(tmp_path / "p.json")
    assert [p.extra for p in back.decode] == [p.extra for p in dev.decode]
    assert [p.extra for p in back.mixed] == [p.extra for p in dev.mixed]
    d = device_profile(back)
    assert [p.duration_s for p in d.prefill] == [p.extra["gpu_duration_s"] for p in dev.prefill]
    bad = profile_to_dict(dev)
    bad["decode"][3]["gpu_duration_s"] = 2 * bad["decode"][3]["duration_s"]
    with pytest.raises(ProfileError, match=r"decode\[3\]\.gpu_duration_s: must be a positive number of "
                                           r"seconds <= duration_s"):
        profile_from_dict(bad, "x.json")
    bad = profile_to_dict(dev)
    bad["prefill"][0]["packed_gpu_duration_s"] = 1e-3  # a path the point has no wall time of
    with pytest.raises(ProfileError, match=r"prefill\[0\]\.packed_gpu_duration_s: is a device time "
                                           r"without its wall time packed_duration_s"):
        profile_from_dict(bad, "x.json")
    bad = profile_to_dict(dev)
    bad["mixed"][0]["gpu_duration_s"] = "fast"
    with pytest.raises(ProfileError, match=r"mixed\[0\]\.gpu_duration_s: must be a finite number"):
        profile_from_dict(bad, "x.json")
    part = profile_to_dict(dev)
    del part["prefill"][1]["gpu_duration_s"]  # one point without: no measured split
    assert device_profile(profile_from_dict(part)) is None


def test_double_bandwidth_halves_exactly_the_measured_device_part_and_keeps_the_host_part(profiles):
    dev, _ = profiles
    same = CrossGpuCostModel(ProfileCostModel(dev, MODEL, H100), H100)
    cross = CrossGpuCostModel(ProfileCostModel(dev, MODEL, H100), FAST)
    assert cross.device is not None and "split measured" in cross.description
    for s in GRID_DECODES:
        br = same.src_roofline.breakdown(s)  # the premise: the fitted GPU phases are memory-bound
        assert br["gemm_memory"] > br["gemm_compute"] and br["decode_attn_memory"] > br["decode_attn_compute"]
        host, gpu = cross.split_s(s)
        assert host == pytest.approx(host_s(s), rel=1e-9)  # the measured host part, kept
        assert gpu == pytest.approx(device_s(H100, s) / 2, rel=1e-9)  # the measured device part, halved
        assert cross.step_time_s(s) == pytest.approx(host_s(s) + device_s(H100, s) / 2, rel=1e-9)
        assert same.step_time_s(s) == pytest.approx(wall_s(H100, s), rel=1e-12)
        # the synthetic GPU's own device time halves too: on the nodes the prediction is the truth
        assert cross.step_time_s(s) == pytest.approx(wall_s(FAST, s), rel=1e-9)


def test_the_measured_split_beats_the_fitted_one_where_host_time_grows_with_context(profiles):
    """Host time that grows with context is no roofline host term: the fitted split reads
    it as GPU time and halves it; the measured split keeps it (off the grid nodes too)."""
    dev, _ = profiles
    measured = CrossGpuCostModel(ProfileCostModel(dev, MODEL, H100), FAST)
    fitted = CrossGpuCostModel(ProfileCostModel(dev, MODEL, H100), FAST, measured_split=False)
    shapes = [decode(b, c) for b in (1, 3, 8, 20, 64, 200) for c in (300, 900, 2500, 4000)]
    truth = np.array([wall_s(FAST, s) for s in shapes])

    def err(m):
        return np.abs(np.array([m.step_time_s(s) for s in shapes]) - truth) / truth
    e_meas, e_fit = err(measured), err(fitted)
    assert e_meas.mean() < 0.01 and e_fit.mean() > 0.03, (e_meas.mean(), e_fit.mean())
    assert e_meas.max() < e_fit.max()


def test_without_device_times_the_price_is_what_the_fitted_split_gave(profiles):
    dev, plain = profiles
    old = CrossGpuCostModel(ProfileCostModel(plain, MODEL, H100), FAST)
    assert old.device is None and "split from the fitted roofline: the profile records no device times" \
        in old.description
    forced = CrossGpuCostModel(ProfileCostModel(dev, MODEL, H100), FAST, measured_split=False)
    shapes = GRID_DECODES + [decode(5, 777), decode(3, 500, "packed"),
                             StepShape(num_prefill_seqs=1, prefill_tokens=512, prefill_attn_pairs=512 * 513 / 2,
                                       prefill_kv_tokens=512),
                             StepShape(num_prefill_seqs=1, prefill_tokens=256, prefill_attn_pairs=256 * 257 / 2,
                                       prefill_kv_tokens=256, num_decode_seqs=16,
                                       decode_context_tokens=16 * 700, decode_max_context_tokens=700)]
    for s in shapes:
        padded = old.source._padded(s)
        before = old.source.step_time_s(s) * (old.roofline.step_time_s(padded) / old.src_roofline.step_time_s(padded))
        assert old.step_time_s(s) == before  # the formula --profile-from priced with, bit for bit
        assert forced.step_time_s(s) == before  # the device fields change no wall price
        assert ProfileCostModel(dev, MODEL, H100).step_time_s(s) == ProfileCostModel(plain, MODEL, H100).step_time_s(s)
        assert host_terms_s(old.src_roofline, padded) == pytest.approx(
            sum(old.src_roofline.breakdown(padded)[k] for k in HOST_TERMS), rel=1e-15)
    np.testing.assert_array_equal(old.decode_run_s(8, 8000, 30, 1500), forced.decode_run_s(8, 8000, 30, 1500))


@pytest.mark.parametrize("first", DECODE_PATHS)
def test_a_measured_split_decode_run_equals_stepping(profiles, first):
    """Fast-forward equals stepping, bit for bit, with device times on every decode path."""
    dev, _ = profiles

    def paths(p):
        extra = {**p.extra, "packed_duration_s": 1.2 * p.duration_s, "packed_gpu_duration_s": p.extra["gpu_duration_s"],
                 "subset_duration_s": 1.05 * p.duration_s, "subset_gpu_duration_s": p.extra["gpu_duration_s"]}
        return dataclasses.replace(p, extra=extra)
    prof = dataclasses.replace(dev, decode=tuple(paths(p) for p in dev.decode))
    cm = CrossGpuCostModel(ProfileCostModel(prof, MODEL, H100), get_gpu("h200"))
    assert cm.device is not None
    n, ctx0, max0, k = 12, 12 * 900, 1500, 40
    got = cm.decode_run_s(n, ctx0, k, max0, first)
    shapes = [StepShape(num_decode_seqs=n, decode_context_tokens=ctx0 + n * i, decode_max_context_tokens=max0 + i,
                        decode_path=first if i == 0 else STEADY) for i in range(k)]
    want = np.array([cm.step_time_s(s) for s in reversed(shapes)][::-1])
    assert np.array_equal(got, want)
    # the packed path's extra wall time is host time: kept whole, not scaled
    h_p, g_p = cm.split_s(decode(8, 1024, "packed"))
    h_s, g_s = cm.split_s(decode(8, 1024))
    assert g_p == pytest.approx(g_s, rel=1e-12) and h_p > h_s


def test_simulate_summary_names_the_split(profiles, tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n"
                     + "".join(f"{0.05 * i:.2f},{200 + 37 * i},{20 + i}\n" for i in range(20)))
    for name, prof in zip(("dev", "plain"), profiles):
        d = tmp_path / name
        d.mkdir()
        save_profile(prof, d / "h100_qwen3-0.6b.json")
        out = tmp_path / f"out-{name}"
        assert main(["simulate", "--trace", str(trace), "--model", MODEL.name, "--out", str(out), "--no-progress",
                     "--gpu", "h200", "--profile", str(d), "--profile-from", "h100"]) == 0
        cost = json.loads((out / "summary.json").read_text())["cost_model"]
        assert cost.startswith("profile-from h100")
        assert ("split measured" in cost) == (name == "dev")
        assert ("split from the fitted roofline" in cost) == (name == "plain")
    assert set(DEVICE_KEYS) == {"duration_s", "packed_duration_s", "subset_duration_s"}
