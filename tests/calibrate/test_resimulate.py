"""benchmarks/resimulate.py: the simulated half of a validate output, re-run on the CPU from
what validation.json records, reproduces the recorded errors; another profile changes them."""
import argparse
import dataclasses
import importlib.util
from pathlib import Path

from nanosim.calibrate.shapes import default_grid
from nanosim.calibrate.validate import RecordingBackend, validate_replay, write
from nanosim.config import EngineConfig, get_gpu, get_model
from nanosim.core.engine import Engine
from nanosim.sim.backend import SimBackend
from nanosim.sim.costmodel import RooflineCostModel
from nanosim.sim.cost_select import make_cost_model
from nanosim.sim.profile import build_profile, save_profile
from nanosim.workload import load_trace, make_workload
from nanosim.workload.canonical_csv import write as write_trace
from nanosim.workload.transforms import scale_rate

MODEL, GPU = get_model("qwen3-0.6b"), get_gpu("h100")
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "resimulate.py"


def _script():
    spec = importlib.util.spec_from_file_location("resimulate", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _profile(path: Path, slower: float = 1.0) -> Path:
    """A small synthetic profile of a GPU that is not our roofline (``slower``: every step
    that much slower)."""
    gpu = RooflineCostModel(MODEL, GPU, hbm_efficiency=0.8, gemm_efficiency=0.6, attn_efficiency=0.4,
                            step_overhead_s=1.5e-3)
    dec, pre, mixed = default_grid(max_blocks=3000, block_size=256, max_tokens=8192, max_seqs=256,
                                   max_model_len=4096)
    prof = build_profile(MODEL, "h100", 1, lambda s: slower * gpu.step_time_s(s), dec, pre,
                         [m.shape for m in mixed], attention_backend="synthetic")
    save_profile(prof, path)
    return path


def test_rerun_reproduces_the_recorded_errors_and_scores_another_profile(tmp_path):
    trace = tmp_path / "trace.csv"
    write_trace(make_workload("chatbot", 3.0, num_requests=80, seed=1), trace)
    workload = {"format": None, "rate": 2.0, "num_requests": 200, "rate_scale": 2.0,
                "max_requests": 60, "seed": 0}
    reqs = scale_rate(load_trace(trace)[:60], 2.0)  # what validate replays with those flags
    prof = _profile(tmp_path / "p.json")
    cfg = EngineConfig(max_model_len=4096)
    real_gpu = RooflineCostModel(MODEL, GPU, hbm_efficiency=0.75, step_overhead_s=1.8e-3)
    real = Engine(cfg, RecordingBackend(SimBackend(real_gpu)), 2000)
    sim = Engine(cfg, SimBackend.for_cost(make_cost_model(MODEL, GPU, 1, str(prof)), True), 2000)
    v = validate_replay(reqs, real, sim)
    out = write(v, tmp_path / "val", {
        "trace": str(trace), "requests": len(reqs), "model": MODEL.name, "tp": 1,
        "gpu": "NVIDIA H100 80GB HBM3", "engine": dataclasses.asdict(cfg),
        "kv_blocks": {"gpu": 2000, "host": 0}, "workload": workload, "step_jitter": True})
    mod = _script()
    args = argparse.Namespace(profile=str(prof), trace=None, no_step_jitter=False, rate_scale=None,
                              max_requests=None, num_kv_blocks=None, max_model_len=4096)
    recorded, rerun = mod.resimulate(out, args)
    assert len(rerun) == 6 and rerun == recorded
    args.profile = str(_profile(tmp_path / "slow.json", slower=1.2))
    _, slower = mod.resimulate(out, args)
    assert slower["tpot_s_p50"] > recorded["tpot_s_p50"] + 0.1
