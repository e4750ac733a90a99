"""benchmarks/gpu_throughput.py prices its roofline with the GPU it runs on, and the device
name -> preset mapping is one function (issue 21, item 12). CPU only: names are given."""
import importlib.util
from pathlib import Path

import pytest

from nanosim.config import ConfigError, gpu_for_device

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_throughput.py"


@pytest.mark.parametrize("device, preset, hbm", [
    ("NVIDIA H100 80GB HBM3", "h100", 3.35e12), ("NVIDIA H200", "h200", 4.8e12),
    ("NVIDIA H200 NVL", None, None), ("NVIDIA H100 PCIe", None, None),
    ("NVIDIA A100-SXM4-80GB", "a100-80gb", 2.039e12), ("NVIDIA A100-SXM4-40GB", None, None),
    ("NVIDIA L40S", "l40s", 864e9), ("NVIDIA GeForce RTX 4090", None, None)])
def test_device_name_to_preset(device, preset, hbm):
    if preset is None:
        with pytest.raises(ConfigError, match="--gpu"):
            gpu_for_device(device)
    else:
        g = gpu_for_device(device)
        assert g.name == preset and g.hbm_bytes_per_s == hbm


def load_bench():
    spec = importlib.util.spec_from_file_location("gpu_throughput", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_roofline_uses_the_device_spec(capsys):
    pytest.importorskip("torch")
    bench = load_bench()
    prompts, outs = [[1] * 200] * 64, [300] * 64
    h100 = bench.roofline(prompts, outs, gpu=bench.roofline_gpu("NVIDIA H100 80GB HBM3"))
    h200 = bench.roofline(prompts, outs, gpu=bench.roofline_gpu("NVIDIA H200"))
    assert h100["gpu"] == "h100" and h200["gpu"] == "h200"
    assert h200["tok_s"] > 1.2 * h100["tok_s"]  # decode is HBM-bound: 4.8 vs 3.35 TB/s
    assert "h200" in capsys.readouterr().out  # it says which spec it used
    assert bench.roofline_gpu("NVIDIA H200", override="h100").name == "h100"
