"""Checks that need a real GPU (skipped, with a reason, on CPU-only machines)."""
import pytest
import torch

from nanosim.config import ModelSpec
from nanosim.gpu.inputs import SeqWork
from nanosim.gpu.options import RunnerOptions
from nanosim.gpu.runner import ModelRunner

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SPEC = ModelSpec("tiny", hidden_size=128, num_layers=2, num_q_heads=4, num_kv_heads=2, head_dim=64,
                 intermediate_size=256, vocab_size=512, max_position_embeddings=512)


def make(**kw):
    args = dict(dtype=torch.float32, block_size=16, num_kv_blocks=64, max_num_batched_tokens=256,
                max_num_seqs=8, max_model_len=512, seed=5)
    return ModelRunner(SPEC, "cuda", RunnerOptions(**{**args, **kw}))


def generate(runner, prompts, steps):
    tables = [list(range(8 * i, 8 * i + 8)) for i in range(len(prompts))]
    toks = [[t] for t in runner.step([SeqWork(p, 0, tb) for p, tb in zip(prompts, tables)]).token_ids]
    for _ in range(steps):
        work = [SeqWork(t[-1:], len(p) + len(t) - 1, tb) for p, t, tb in zip(prompts, toks, tables)]
        for t, new in zip(toks, runner.step(work).token_ids):
            t.append(new)
    return toks


def test_triton_graphs_match_torch_eager_greedy():
    prompts = [list(range(1, 40)), list(range(100, 107)), list(range(7, 30))]  # 3 seqs: graph bs 4
    ref = generate(make(attention="torch", enforce_eager=True, fused_ops=False), prompts, 6)
    fast = make(attention="triton")
    assert fast.graphs is not None and fast.graphs.batch_size_for(3) == 4
    assert generate(fast, prompts, 6) == ref


def test_kv_cache_sized_from_memory():
    r = make(num_kv_blocks=None, gpu_memory_utilization=0.5)
    assert r.num_kv_blocks >= 512 // 16
    assert r.kv_caches[0][0].shape == (r.num_kv_blocks, 16, 2, 64)


def test_mixed_graphs_match_eager_prefill_steps():
    """Steps with a prefill replay a token-bucket CUDA graph (tile-map attention): the same
    greedy tokens as the eager path, over chunked prompts with prefix hits and decodes."""
    prompts = [list(range(1, 40)), list(range(1, 25)) + [9, 9], list(range(7, 30))]
    eager = make(attention="triton", mixed_graphs=False)
    graphs = make(attention="triton")
    assert eager.mixed_graphs is None and graphs.mixed_graphs is not None
    assert graphs.mixed_graphs.size_for(3 * 39) == 128
    assert generate(graphs, prompts, 6) == generate(eager, prompts, 6)
    # a mixed step over the K/V both runners wrote alike: a chunk after a 16-token cached
    # prefix (prompt 0's blocks) while two sequences decode (prompts 1 and 2's blocks)
    works = [SeqWork(list(range(50, 61)), 16, list(range(0, 8)), True),
             SeqWork([5], 20, list(range(8, 16)), True), SeqWork([6], 9, list(range(16, 24)), True)]
    assert graphs.step(works).token_ids == eager.step(works).token_ids


def test_step_next_matches_packed_steps():
    """The steady-decode fast path (step_next: inputs edited in place) gives the tokens of
    fully packed steps, with temperature sampling, rows dropping out and new blocks (16-token
    blocks: the 39-token prompt starts block 3 at its 10th decode)."""
    prompts = [list(range(1, 40)), list(range(100, 107)), list(range(7, 30))]
    tables = [list(range(8 * i, 8 * i + 8)) for i in range(3)]

    def run(fast: bool) -> list[list[int]]:
        r = make(attention="triton")
        first = r.step([SeqWork(p, 0, tb, True, 0.8, 0, 1.0, i) for i, (p, tb) in
                        enumerate(zip(prompts, tables))]).token_ids
        toks, rows = [[t] for t in first], [0, 1, 2]
        for step in range(14):
            keep = [0, 2] if step == 8 else None  # prompt 1 finishes after 8 decode steps
            if keep is not None:
                rows = [rows[i] for i in keep]
            if fast and step > 0:
                out = r.step_next(keep).token_ids
            else:
                out = r.step([SeqWork(toks[i][-1:], len(prompts[i]) + len(toks[i]) - 1, tables[i], True,
                                      0.8, 0, 1.0, i) for i in rows]).token_ids
            for i, t in zip(rows, out):
                toks[i].append(t)
        return toks

    slow, fast = run(False), run(True)
    assert fast == slow and len(fast[0]) == 15 and len(fast[1]) == 9


@pytest.mark.parametrize("num_blocks", [64, 16])  # 16 blocks of 16 tokens: preemptions
def test_async_decode_gives_the_tokens_of_synchronous_decoding(num_blocks):
    """LLM.generate with async decoding (steps launched ahead, fed the sampled ids on the
    device) gives exactly the tokens of synchronous decoding, with CUDA graphs: rows
    finishing by length and by stop token, sampled and greedy rows, prefix hits, preemption.
    Stop ids: a token each row samples midway in a run without them."""
    from nanosim.gpu.llm import LLM, SamplingParams

    llm = LLM("qwen3-0.6b", device="cuda", block_size=16, seed=5, num_kv_blocks=num_blocks,
              max_num_seqs=8, max_num_batched_tokens=256, max_model_len=256)
    prompts = [list(range(1 + i, 30 + 3 * i)) for i in range(6)] + [list(range(1, 30)) + [3, 4]]

    def run(async_decode: bool, stops):
        arm = llm.with_decoding(async_decode=async_decode)
        sps = [SamplingParams(temperature=0.8 if i % 2 else 0.0, max_tokens=20 + 5 * i, seed=i,
                              stop_token_ids=st) for i, st in enumerate(stops)]
        outs = arm.generate(prompts, sps)
        return [o.token_ids for o in outs], [o.finish_reason for o in outs], arm

    free, _, _ = run(False, [()] * len(prompts))
    stops = [(t[12],) if i in (1, 2, 5) else () for i, t in enumerate(free)]
    ref, reasons, _ = run(False, stops)
    got, got_reasons, arm = run(True, stops)
    assert got == ref and got_reasons == reasons
    assert "length" in reasons and "stop" in reasons
    if num_blocks == 16:  # the engine that ran is the arm's (with_decoding: a fresh engine)
        assert arm.engine.results()[0].preemptions.sum() > 0


@pytest.mark.parametrize("small_rows", [16, 0])
def test_flash_backend_matches_the_torch_reference_in_bf16(small_rows):
    """FlashAttention (FA4 page-table varlen, or FA2) with the fused K/V store in bf16: logits
    of a mixed step (fresh prompt, a chunk after cached blocks, decodes) within bf16 noise of
    the torch reference, and greedy decoding through the decode CUDA graphs agrees; the
    3-row decodes on our Triton kernel (small_rows 16, the default) or on FlashAttention's."""
    from nanosim.gpu.attention.flash_backend import import_flash
    from nanosim.gpu.options import KernelOptions

    try:
        import_flash()
    except ImportError:
        pytest.skip("flash_attn is not installed")
    bf16 = dict(dtype=torch.bfloat16, block_size=256 if import_flash()[0] == 2 else 16)
    ref = make(attention="torch", enforce_eager=True, fused_ops=False, **bf16)
    flash = make(attention="flash", kernels=KernelOptions(flash_small_decode_rows=small_rows), **bf16)
    assert flash.backend.name == "flash" and flash.graphs is not None
    prompts = [list(range(1, 40)), list(range(100, 107)), list(range(7, 30))]
    got, want = generate(flash, prompts, 6), generate(ref, prompts, 6)
    agree = sum(a == b for g, w in zip(got, want) for a, b in zip(g, w)) / sum(map(len, want))
    assert agree >= 0.8, (got, want)
    works = [SeqWork(list(range(50, 61)), 16, list(range(0, 8)), True),
             SeqWork([5], 20, list(range(8, 16)), True), SeqWork([6], 9, list(range(16, 24)), True)]
    a, b = flash.logits(works).float(), ref.logits(works).float()
    assert ((a - b).norm() / b.norm()).item() < 3e-2
