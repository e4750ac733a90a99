"""ModelRunner plumbing on CPU: backend choice, input checks, KV sizing, lazy imports."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nanosim.config import MODELS, ModelSpec
from nanosim.gpu import kv_cache
from nanosim.gpu.attention import BackendUnavailable, select_backend
from nanosim.gpu.cuda_graphs import graph_batch_sizes
from nanosim.gpu.inputs import SeqWork
from nanosim.gpu.options import RunnerOptions
from nanosim.gpu.runner import ModelRunner, StepOutput

TINY = ModelSpec("tiny", hidden_size=32, num_layers=1, num_q_heads=2, num_kv_heads=1, head_dim=16,
                 intermediate_size=64, vocab_size=128, max_position_embeddings=64)


@pytest.fixture(scope="module")
def runner():
    return ModelRunner(TINY, "cpu", RunnerOptions(dtype=torch.float32, block_size=4, num_kv_blocks=8,
                       max_num_batched_tokens=32, max_num_seqs=4, seed=1))


def test_backend_selection():
    assert select_backend("auto", "cpu", 16).name == "torch"
    with pytest.raises(BackendUnavailable, match="needs a CUDA device"):
        select_backend("flash", "cpu", 16)
    with pytest.raises(BackendUnavailable, match="is not one of"):
        select_backend("xformers", "cpu", 16)


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendUnavailable, match="TRITON_INTERPRET=1"):
        select_backend("triton", "cpu", 16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="flash selection is checked on CUDA only")
def test_flash_missing_is_a_clear_error():
    try:
        import flash_attn  # noqa: F401
        pytest.skip("flash_attn is installed here")
    except ImportError:
        with pytest.raises(BackendUnavailable, match="neither flash_attn.cute"):
            select_backend("flash", "cuda", 256)


def test_step_output_and_non_sampling_rows(runner):
    out = runner.step([SeqWork([1, 2, 3, 4, 5], 0, [0, 1], samples=False), SeqWork([7, 8], 0, [2])])
    assert isinstance(out, StepOutput) and len(out.token_ids) == 1 and 0 <= out.token_ids[0] < 128
    assert out.duration_s > 0 and out.wall_s >= out.duration_s
    assert runner.step([SeqWork([9], 0, [3], samples=False)]).token_ids == []


@pytest.mark.parametrize("work,match", [
    ([SeqWork([1] * 5, 0, [0])], "needs 2 blocks"),
    ([SeqWork([1], 0, [8])], r"block ids must be in \[0, 8\)"),
    ([SeqWork([1] * 33, 0, list(range(8)))], "exceed max_num_batched_tokens=32"),
    ([SeqWork([], 0, [0])], "at least one token"),
    ([SeqWork([1], 0, [0])] * 5, "needs 1..4 sequences"),
    ([SeqWork([1], 64, [0] * 17)], r"needs 17 blocks \(max 16\)"),  # past max_model_len=64
])
def test_bad_work_is_refused(runner, work, match):
    with pytest.raises(ValueError, match=match):
        runner.step(work)


def test_last_position_of_max_model_len_is_accepted(runner):
    assert len(runner.step([SeqWork([1], 63, [0] * 16)]).token_ids) == 1


def test_cpu_needs_explicit_kv_blocks():
    with pytest.raises(ValueError, match="num_kv_blocks is required on CPU"):
        ModelRunner(TINY, "cpu", RunnerOptions(dtype=torch.float32, block_size=4, max_num_batched_tokens=8, max_num_seqs=2))


def test_graph_batch_sizes():
    assert graph_batch_sizes(512)[:6] == [1, 2, 4, 8, 16, 32] and graph_batch_sizes(512)[-1] == 512
    assert graph_batch_sizes(40) == [1, 2, 4, 8, 16, 32, 40]
    assert graph_batch_sizes(3) == [1, 2, 3]


def test_kv_sizing_follows_nano_vllm(monkeypatch):
    spec = MODELS["qwen3-0.6b"]
    assert kv_cache.kv_block_bytes(spec, 1, torch.bfloat16) == 112 * 1024  # FACTS.md
    block = kv_cache.kv_block_bytes(spec, 256, torch.bfloat16)  # 28 MiB
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d=None: (70 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_stats", lambda d=None: {
        "allocated_bytes.all.peak": 4 * gib, "allocated_bytes.all.current": 1.5 * gib})
    # 80 * 0.9 - 10 (used) - 4 (peak) + 1.5 (current) = 59.5 GiB
    assert kv_cache.blocks_from_memory(torch.device("cuda"), block, 0.9) == int(59.5 * gib) // block
    kv_cache.check_fits(16, 256, 4096, block, 0.9)
    with pytest.raises(kv_cache.KVCacheTooSmall, match="max_model_len=4096 needs 16"):
        kv_cache.check_fits(15, 256, 4096, block, 0.9)


def test_imports_stay_lazy():
    code = ("import sys, nanosim.gpu, nanosim.config; assert 'torch' not in sys.modules;"
            "import torch; from nanosim.gpu.runner import ModelRunner, RunnerOptions; from nanosim.config import ModelSpec;"
            "s = ModelSpec('t', 32, 1, 2, 1, 16, 64, vocab_size=64, max_position_embeddings=32);"
            "ModelRunner(s, 'cpu', RunnerOptions(torch.float32, 4, 4, max_num_batched_tokens=8, max_num_seqs=2));"
            "assert 'triton' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=Path(__file__).parents[2])


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                    reason="runs Triton kernels on CPU tensors through the interpreter, which "
                           "conftest turns on only where no CUDA device is visible")
def test_graph_layout_padding_matches_eager_layout():
    """What a decode CUDA graph computes, run eagerly on CPU: 3 decodes packed into the
    fixed graph layout padded to 4 rows (triton backend, interpreted) equal the compact
    layout's rows, and the padding row writes no KV."""
    from nanosim.gpu.attention.triton_backend import TritonAttention
    from nanosim.gpu.inputs import InputPacker
    from nanosim.gpu.kv_cache import allocate_kv_cache
    from nanosim.gpu.loader import build_model

    cpu = torch.device("cpu")
    model = build_model(TINY, TritonAttention(block_m=16, block_n=16), cpu, torch.float32, seed=2)
    kv = allocate_kv_cache(TINY, 12, 4, torch.float32, cpu)
    packer = InputPacker(cpu, 4, 64, 8, 16, graph_max_bs=8)
    prompts = [[5, 6, 7, 8, 9], [1, 2], [3, 3, 3, 3, 3, 3, 3]]
    tables = [[0, 1], [2], [3, 4]]
    with torch.no_grad():
        pre = packer.pack([SeqWork(p, 0, t, samples=False) for p, t in zip(prompts, tables)], 12)
        model(pre.input_ids, pre.positions, pre.meta, kv)
        work = [SeqWork([11], len(p), t) for p, t in zip(prompts, tables)]
        snapshot = [(k.clone(), v.clone()) for k, v in kv]
        eager = packer.pack(work, 12)
        h_eager = model(eager.input_ids, eager.positions, eager.meta, kv)
        kv_after = [(k.clone(), v.clone()) for k, v in kv]
        for (k, v), (k0, v0) in zip(kv, snapshot):
            k.copy_(k0), v.copy_(v0)
        g = packer.pack(work, 12, graph_bs=4)
        assert g.meta.block_tables.shape == (4, 16) and g.meta.seq_lens.tolist() == [6, 3, 8, 1]
        assert g.meta.slot_mapping.tolist()[-1] == -1
        g.meta.query_lens_host = g.meta.seq_lens_host = None  # as captured
        h_graph = model(g.input_ids, g.positions, g.meta, kv)
    torch.testing.assert_close(h_graph[:3], h_eager, atol=1e-5, rtol=1e-5)
    new_slots = sorted(eager.meta.slot_mapping.tolist())
    for (k, v), (k0, _), (k1, v1) in zip(kv, snapshot, kv_after):
        written = (k != k0).flatten(2).any(-1).flatten().nonzero().flatten().tolist()
        assert written == new_slots  # the padding row wrote nothing
        torch.testing.assert_close(k, k1, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(v, v1, atol=1e-6, rtol=1e-6)


def test_start_up_runs_the_warm_up_forward_with_what_it_needs(monkeypatch):
    """The warm-up (`_profile_peak_memory`) runs only on CUDA, so a start-up step moved after
    it would show only on a GPU. Here the runner's own source, with the warm-up's CUDA guard
    lifted and its memory-stat calls made no-ops, is built on the CPU: every attribute the
    warm-up's forward reads must exist by then."""
    import types

    import nanosim.gpu.runner as runner_mod

    guard = 'if self.device.type == "cuda":  # warm up'
    src = Path(runner_mod.__file__).read_text()
    assert src.count(guard) == 1, "the warm-up's guard moved: update this test"
    for name in ("empty_cache", "reset_peak_memory_stats", "synchronize"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: None)
    forced = types.ModuleType("runner_warm_up_forced")
    monkeypatch.setitem(sys.modules, forced.__name__, forced)
    exec(compile(src.replace(guard, "if True:  # warm up"), runner_mod.__file__, "exec"), forced.__dict__)
    r = forced.ModelRunner(TINY, "cpu", RunnerOptions(dtype=torch.float32, block_size=4, num_kv_blocks=8,
                           max_num_batched_tokens=32, max_num_seqs=4, seed=1))
    assert r.num_kv_blocks == 8 and len(r.step([SeqWork([1, 2, 3], 0, [0])]).token_ids) == 1
