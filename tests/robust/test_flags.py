"""Seeds, flag ranges, assumed arrival rates, one default cost model, swap pricing, profile
errors and CLI-speaking messages (issue 21, items 5-11)."""
import json
from pathlib import Path

import pandas as pd
import pytest

from nanosim.cli import main
from nanosim.config import EngineConfig, get_gpu, get_model
from nanosim.core.batch import StepShape
from tests.robust.helpers import TINY_RUN, forbid, one_line_error

DATA = Path(__file__).resolve().parents[1] / "data"
TRACE = ["--trace", str(DATA / "golden_trace.csv"), "--model", "qwen3-0.6b", "--gpu", "h100",
         "--no-progress"]


def steps_of(tmp_path, name, *args):
    out = tmp_path / name
    assert main(["simulate", *TRACE, "--out", str(out), *args]) == 0
    return pd.read_parquet(out / "steps.parquet"), json.loads((out / "summary.json").read_text())


# ------------------------------------------------------------------ 5: --seed reaches jitter

@pytest.mark.parametrize("replicas", ["1", "2"])
def test_seed_reaches_step_jitter(tmp_path, replicas):
    a, sa = steps_of(tmp_path, "a", "--seed", "1", "--replicas", replicas)
    b, _ = steps_of(tmp_path, "b", "--seed", "2", "--replicas", replicas)
    a2, _ = steps_of(tmp_path, "a2", "--seed", "1", "--replicas", replicas)
    assert "drawn from the profile" in sa["step_jitter"]  # the shipped profile has jitter
    assert not a["duration_s"].equals(b["duration_s"])  # the trace is the same: only jitter
    pd.testing.assert_frame_equal(a, a2)


def test_replicas_draw_different_streams():
    from nanosim.sim.job import build_engine

    cfg = EngineConfig(seed=3)
    m, g = get_model("qwen3-0.6b"), get_gpu("h100")
    draws = [build_engine(m, g, cfg, "auto", replica=i).backend.jitter.draw(8) for i in (0, 1)]
    again = build_engine(m, g, cfg, "auto", replica=0).backend.jitter.draw(8)
    assert list(draws[0]) != list(draws[1]) and list(draws[0]) == list(again)


# ------------------------------------------------------------------ 6: flag ranges

@pytest.mark.parametrize("flags, flag", [
    (["--max-requests", "-5"], "--max-requests"), (["--max-requests", "0"], "--max-requests"),
    (["--replicas", "0"], "--replicas"), (["--replicas", "-2"], "--replicas"),
    (["--num-requests", "-1"], "--num-requests"), (["--rate", "0"], "--rate"),
    (["--rate", "nan"], "--rate"), (["--rate-scale", "-1"], "--rate-scale"),
    (["--max-model-len", "1e20"], "--max-model-len"), (["--block-size", "0"], "--block-size"),
    (["--num-kv-blocks", "0"], "--num-kv-blocks"), (["--tp", "0"], "--tp"),
    (["--num-kv-blocks", "2147483647"], "--num-kv-blocks"),  # MemoryError before
    (["--seed", "-1"], "--seed"), (["--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization"),
    (["--max-num-seqs", "64", "--max-num-batched-tokens", "32"], "--max-num-batched-tokens"),
])
def test_simulate_flag_ranges(tmp_path, capsys, monkeypatch, flags, flag):
    forbid(monkeypatch, "nanosim.sim.job.run_simulation")
    one_line_error(capsys, ["simulate", *TINY_RUN, *flags, "--out", str(tmp_path / "o")], flag)


def test_sweep_limit_and_workers(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\n[fixed]\nworkload = "chatbot"\nnum_requests = 5\n')
    one_line_error(capsys, ["sweep", str(spec), "--limit", "-3"], "--limit")
    one_line_error(capsys, ["sweep", str(spec), "--limit", "0"], "--limit")
    one_line_error(capsys, ["sweep", str(spec), "--workers", "-1"], "--workers")


@pytest.mark.parametrize("cell", ["1e20", "99999999999999999999", "2147483648"])
def test_huge_length_in_a_trace(tmp_path, capsys, cell):
    bad = tmp_path / "t.csv"
    bad.write_text(f"arrival_s,prompt_tokens,output_tokens\n0.0,10,5\n1.0,{cell},5\n")
    with _no_warning():
        one_line_error(capsys, ["simulate", "--trace", str(bad), "--out", str(tmp_path / "o")],
                       f"{bad}:3:", "too large")


class _no_warning:
    def __enter__(self):
        import warnings
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error")  # numpy's cast warning would end the test here

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


# ------------------------------------------------------------------ 7: assumed rates

VIDUR = "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n" + "".join(
    f"{10 + i},{5 + i},{15 + 2 * i},2.0\n" for i in range(20))


def test_vidur_says_which_rate_it_assumed(tmp_path, capsys):
    t = tmp_path / "v.csv"
    t.write_text(VIDUR)
    assert main(["simulate", "--trace", str(t), "--model", "qwen3-0.6b", "--no-progress",
                 "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "no timestamps" in err and "2 req/s" in err and "--rate" in err
    assert main(["trace", "stats", str(t)]) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out and "inter-arrival CV" not in out and "mean rate" not in out
    assert main(["trace", "stats", str(t), "--rate", "5"]) == 0
    assert "5 req/s" in capsys.readouterr().out


def test_rate_on_a_timestamped_trace_warns(tmp_path, capsys):
    assert main(["simulate", *TRACE, "--rate", "9", "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "--rate" in err and "ignored" in err and "--rate-scale" in err
    assert main(["trace", "stats", str(DATA / "golden_trace.csv")]) == 0
    assert "inter-arrival CV" in capsys.readouterr().out  # real timestamps: real statistics


def test_rate_default_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    assert "default 2.0" in " ".join(capsys.readouterr().out.split())


# ------------------------------------------------------------------ 8: one default cost model

def test_sweep_and_simulate_share_the_default_cost_model(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('name = "same"\n[fixed]\nmodel = "qwen3-0.6b"\ngpu = "h100"\n'
                    'workload = "chatbot"\nrate_rps = 20.0\nnum_requests = 40\n')
    assert main(["sweep", str(spec), "--out", str(tmp_path / "sw"), "--workers", "0",
                 "--no-progress"]) == 0
    from nanosim.sweep import ResultStore

    pt = ResultStore(tmp_path / "sw").points().iloc[0]
    assert main(["simulate", *TINY_RUN, "--num-requests", "40", "--out", str(tmp_path / "si")]) == 0
    s = json.loads((tmp_path / "si" / "summary.json").read_text())
    assert s["cost_model"] == pt["cost_model"] and "profile" in s["cost_model"]
    assert s["ttft_s"]["p50"] == pytest.approx(pt["ttft_p50_s"], rel=1e-12)


def test_sweep_can_ask_for_the_roofline(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('name = "roof"\n[fixed]\nmodel = "qwen3-0.6b"\nworkload = "chatbot"\n'
                    'num_requests = 10\nprofile = "none"\n')
    assert main(["sweep", str(spec), "--out", str(tmp_path / "sw"), "--workers", "0",
                 "--no-progress"]) == 0
    from nanosim.sweep import ResultStore

    assert ResultStore(tmp_path / "sw").points().iloc[0]["cost_model"].startswith("roofline")


# ------------------------------------------------------------------ 9: swaps at the block size

@pytest.mark.parametrize("profile", [None, "auto"])
def test_swap_time_follows_block_size(profile):
    from nanosim.sim.job import build_engine

    m, g = get_model("qwen3-0.6b"), get_gpu("h100")
    cost = {}
    for b in (16, 256):
        cm = build_engine(m, g, EngineConfig(block_size_tokens=b, preemption_mode="swap"),
                          profile, step_jitter=False).backend.cost_model
        # a swap-only step: overhead + blocks x per-block copy time
        cost[b] = (cm.step_time_s(StepShape(swap_blocks=101))
                   - cm.step_time_s(StepShape(swap_blocks=1))) / 100
    assert cost[256] / cost[16] == pytest.approx(16, rel=1e-6)


# ------------------------------------------------------------------ 10: profile not JSON

@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"not json at all", b""])
def test_bad_profile_names_the_file(tmp_path, capsys, content):
    prof = tmp_path / "p.json"
    prof.write_bytes(content)
    one_line_error(capsys, ["simulate", *TINY_RUN, "--profile", str(prof),
                            "--out", str(tmp_path / "o")], str(prof))


# ------------------------------------------------------------------ 11: messages in flags

BURST = ("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
         "5,ChatGPT,472,18,490,Conversation log\n6,ChatGPT,0,0,0,Conversation log\n"
         "7,ChatGPT,40,8,48,Conversation log\n")


def test_messages_speak_cli_flags(tmp_path, capsys):
    t = tmp_path / "u.txt"
    t.write_text("hello,world\n1,2\n")
    line = one_line_error(capsys, ["trace", "stats", str(t)], "--format")
    assert "format=" not in line
    b = tmp_path / "b.csv"
    b.write_text(BURST)
    assert main(["trace", "stats", str(b)]) == 0
    err = capsys.readouterr().err
    assert "--failed keep" in err and "failed='keep'" not in err
    assert main(["trace", "stats", str(b), "--failed", "keep"]) == 0
    assert "requests                  3" in capsys.readouterr().out
    line = one_line_error(capsys, ["trace", "stats", str(b), "--failed", "error"], "--failed")
    assert "failed='" not in line


def test_cuda_missing_speaks_device_flag(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    line = one_line_error(capsys, ["run", "--workload", "chatbot", "--num-requests", "2",
                                   "--model", "qwen3-0.6b", "--out", str(tmp_path / "o")],
                          "--device cpu")
    assert "device='" not in line
