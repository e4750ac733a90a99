"""`nanosim profile` on a tiny Qwen3 on the CPU records each point's device time beside its
wall time (the runner's step timer: CUDA events on a GPU, perf_counter around the same span
on a CPU), as the replays record StepResult.gpu_s; the profile round-trips through its file
and its device times make a measured host/device split."""
import pytest

torch = pytest.importorskip("torch")

from nanosim.calibrate.profile import profile_runner  # noqa: E402
from nanosim.config import ModelSpec  # noqa: E402
from nanosim.sim.profile import DEVICE_KEYS, device_profile, load_profile, save_profile  # noqa: E402

TINY = ModelSpec("tiny", hidden_size=32, num_layers=1, num_q_heads=2, num_kv_heads=1, head_dim=16,
                 intermediate_size=64, vocab_size=128, max_position_embeddings=2048)


@pytest.fixture(scope="module")
def profiled():
    from nanosim.gpu.options import RunnerOptions
    from nanosim.gpu.runner import ModelRunner

    runner = ModelRunner(TINY, "cpu", RunnerOptions(dtype=torch.float32, block_size=16, num_kv_blocks=320,
                                                    max_num_batched_tokens=512, max_num_seqs=9,
                                                    max_model_len=512, seed=1))
    return profile_runner(runner, "h100", reps=1, warmup=0, passes=1, prefill_passes=1)


def test_every_point_records_its_device_time_beside_its_wall_time(profiled):
    p = profiled
    assert p.decode and p.prefill and p.mixed and p.gpu_device_name == "cpu"
    for x in p.decode + p.prefill + p.mixed:
        assert 0 < x.extra["gpu_duration_s"] <= x.duration_s  # the same runs: device within wall
    for x in p.decode:  # the packed step() of each decode run, timed on both clocks too
        assert 0 < x.extra["packed_gpu_duration_s"] <= x.extra["packed_duration_s"]
    assert "gpu_duration_s" in p.notes


def test_the_profile_round_trips_with_its_device_times(profiled, tmp_path):
    save_profile(profiled, tmp_path / "tiny.json")
    back = load_profile(tmp_path / "tiny.json")
    for a, b in zip(profiled.decode + profiled.prefill + profiled.mixed, back.decode + back.prefill + back.mixed):
        assert a.duration_s == b.duration_s
        assert {k: b.extra[k] for k in DEVICE_KEYS.values() if k in a.extra} == \
            {k: a.extra[k] for k in DEVICE_KEYS.values() if k in a.extra}
    dev = device_profile(back)
    assert dev is not None
    assert [x.duration_s for x in dev.prefill] == [x.extra["gpu_duration_s"] for x in back.prefill]
