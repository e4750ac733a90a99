"""Kernel switches live in one frozen KernelOptions (nanosim/gpu/options.py) that the runner
hands down; no module global is a switch any more."""
import re
import sys
from pathlib import Path

import pytest
import torch

from nanosim.config import ModelSpec
from nanosim.gpu.options import KERNELS, KernelOptions

ROOT = Path(__file__).resolve().parents[2]
TINY = ModelSpec("tiny", hidden_size=32, num_layers=1, num_q_heads=2, num_kv_heads=1, head_dim=16,
                 intermediate_size=64, vocab_size=128, max_position_embeddings=64)


def test_defaults_are_the_values_the_kernels_had_as_module_constants():
    # the same constexprs reach the kernels by default: these were decode_attention's
    # PREWAIT_MAX_ROWS, SPLIT_TOKENS, SPLIT_WAVES, MAX_SPLITS, ORDER, QKV_PROLOGUE,
    # pdl.ENABLED, skinny_gemm.PROGRAMS_PER_SM, splitk_gemm.MID_MAX_M,
    # inputs.MIXED_DECODE_KERNEL, triton_backend.MIXED_DECODE_SPLITS,
    # flash_backend.SMALL_DECODE_ROWS and layers.COMPILE_BACKEND
    assert KERNELS == KernelOptions(
        pdl=True, decode_order=True, qkv_prologue=True, prewait_max_rows=2, split_tokens=0,
        split_waves=2, max_splits=16, skinny_programs_per_sm=1, splitk_max_m=512,
        mixed_decode_kernel=True, mixed_decode_splits=4, flash_small_decode_rows=16,
        compile_backend="inductor")
    with pytest.raises(AttributeError):
        KERNELS.pdl = False


def test_parse_names_the_field_and_type():
    assert KernelOptions.parse("pdl=0, prewait_max_rows=4") == KernelOptions(pdl=False, prewait_max_rows=4)
    with pytest.raises(ValueError, match="prewait_max_rows takes a int"):
        KernelOptions.parse("prewait_max_rows=x")
    with pytest.raises(ValueError, match="'nope=1': expected FIELD=VALUE"):
        KernelOptions.parse("nope=1")


def test_runner_hands_its_options_to_backend_layers_and_packer():
    from nanosim.gpu.inputs import SeqWork
    from nanosim.gpu.layers import RMSNorm, SiluAndMul
    from nanosim.gpu.linear import _ParallelLinear
    from nanosim.gpu.options import RunnerOptions
    from nanosim.gpu.runner import ModelRunner

    # Triton runs under the interpreter on CPU (conftest) and natively where CUDA is
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    k = KernelOptions(prewait_max_rows=0, splitk_max_m=7, mixed_decode_kernel=False)
    r = ModelRunner(TINY, dev, RunnerOptions(dtype=torch.float32, block_size=4, num_kv_blocks=8,
                    max_num_batched_tokens=32, max_num_seqs=4, seed=1, attention="triton",
                    fused_ops=True, kernels=k))
    assert r.kernels is k and r.backend.kernels is k and r.packer.mixed_decode_kernel is False
    lin = [m for m in r.model.modules() if isinstance(m, _ParallelLinear)]
    ew = [m for m in r.model.modules() if isinstance(m, (RMSNorm, SiluAndMul)) and m.fused is not None]
    assert lin and all(m.kernels is k for m in lin) and r.model.lm_head.kernels is k
    assert len(ew) == 2 * TINY.num_layers + 2  # two norms a layer, the final norm, the activation
    assert all(m.fused is k for m in ew)
    out = r.step([SeqWork([1, 2, 3], 0, [0]), SeqWork([4], 0, [1])])
    assert len(out.token_ids) == 2
    plain = ModelRunner(TINY, dev, RunnerOptions(dtype=torch.float32, block_size=4, num_kv_blocks=8,
                        max_num_batched_tokens=32, max_num_seqs=4, seed=1))
    fused_default = KERNELS if dev == "cuda" else None  # fused_ops defaults to on only on CUDA
    assert plain.kernels is KERNELS and all(
        m.kernels is fused_default for m in plain.model.modules() if isinstance(m, _ParallelLinear))


def test_no_module_attribute_is_assigned_from_outside():
    """`mod.NAME = value` on a module's upper-case constant (a switch flipped at run time)
    appears nowhere in the package or the benchmarks."""
    pat = re.compile(r"^\s*[a-z_][a-z0-9_]*\.[A-Z][A-Z0-9_]+\s*=[^=]", re.M)
    hits = [f"{p.relative_to(ROOT)}: {m.group().strip()}"
            for d in ("nanosim", "benchmarks") for p in (ROOT / d).rglob("*.py")
            for m in pat.finditer(p.read_text())]
    assert not hits, hits


def test_no_backend_option_is_flipped_after_construction():
    """`x.backend.NAME = ...`, `backend.NAME = ...`, `engine.backend = ...` (a built backend's
    option changed from outside: async_decode, fast_decode, default_sampling; or an engine's
    backend swapped) and `llm.async_decode = ...` appear nowhere in the package, the
    benchmarks or the tests: an A/B builds one backend per arm (GpuBackend(...,
    fast_decode=..., default_sampling=...), LLM(fast_decode=...), LLM.with_decoding)."""
    pat = re.compile(r"^\s*(?:\w+\.)*(?:(?:backend|engine)\.[a-z]\w*|llm\.(?:async|fast)_decode)\s*=[^=]",
                     re.M)
    hits = [f"{p.relative_to(ROOT)}: {m.group().strip()}"
            for d in ("nanosim", "benchmarks", "tests") for p in (ROOT / d).rglob("*.py")
            for m in pat.finditer(p.read_text())]
    assert not hits, hits
    assert pat.search("    llm.backend.async_decode = True") and pat.search("backend.fast_decode = f")


def test_decode_ab_arms_are_kernel_options():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from decode_ab import parse_arm
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert parse_arm("no_pdl:pdl=0") == ("no_pdl", KernelOptions(pdl=False))
    assert parse_arm("old:decode_attention.PREWAIT_MAX_ROWS=0,pdl.ENABLED=0") == (
        "old", KernelOptions(prewait_max_rows=0, pdl=False))
    with pytest.raises(SystemExit, match="arm 'x'"):
        parse_arm("x:nope=1")


def test_runner_options_hold_the_old_keyword_defaults_and_travel_to_tp_workers():
    import pickle

    from nanosim.gpu.options import RunnerOptions

    o = RunnerOptions()
    assert (o.dtype, o.block_size, o.num_kv_blocks, o.gpu_memory_utilization,
            o.max_num_batched_tokens, o.max_num_seqs, o.attention, o.enforce_eager, o.weights_dir,
            o.seed, o.max_model_len, o.fused_ops, o.mixed_graphs, o.compile_ops, o.kernels) == (
        "bfloat16", 256, None, 0.9, 16384, 512, "auto", False, None, 0, None, None, None, False,
        KERNELS)
    custom = o.with_(block_size=16, kernels=KernelOptions(pdl=False))
    assert pickle.loads(pickle.dumps(custom)) == custom  # WorkerArgs carries it to each rank
    with pytest.raises(AttributeError):
        o.block_size = 16
