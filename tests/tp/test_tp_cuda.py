"""On two or more CUDA GPUs (NCCL, CUDA graphs): Qwen3-0.6B shapes, random bf16 weights.

tp=2 must be as close to an fp32 tp=1 reference as tp=1 bf16 is (the all-reduce adds the
two halves' partial sums in a different order, so bit equality is not expected), and pick
the same greedy token wherever the reference's top-2 margin is clear of bf16 noise. A
greedy generation through the whole engine (CUDA graphs on both ranks) must then agree
with tp=1 token for token up to the first near-tie of the reference."""
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                                reason="needs two CUDA GPUs")

@pytest.fixture(autouse=True)
def _hang_guard():  # overrides the folder's 120 s guard: three model loads and graph captures
    import faulthandler

    faulthandler.dump_traceback_later(480, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


OPTS = dict(block_size=256, max_model_len=2048, max_num_seqs=16, gpu_memory_utilization=0.5)


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _prompts():
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 150000, (n,), generator=g).tolist() for n in (37, 300, 1000, 1500)]


def _logits(llm, prompts):
    from nanosim.gpu.inputs import SeqWork

    return [llm.runner.logits([SeqWork(p, 0, list(range(-(-len(p) // 256))), True)])[0].float().cpu()
            for p in prompts]


def _run(prompts, sp, **kw):
    """(last-token logits per prompt, greedy generations or None); frees the GPU after."""
    import gc

    from nanosim.gpu.llm import LLM

    with LLM("qwen3-0.6b", **OPTS, **kw) as llm:
        if kw.get("tensor_parallel_size", 1) > 1:
            assert llm.runner.graphs is not None  # decode replays CUDA graphs on every rank
        logits = _logits(llm, prompts)
        print(f"{kw or 'tp=1 bf16'}: logits done", flush=True)
        gen = None if sp is None else [o.token_ids for o in llm.generate(prompts, sp)]
    del llm
    gc.collect()
    torch.cuda.empty_cache()
    return logits, gen


def test_tp2_matches_tp1_in_bf16():
    from nanosim.gpu.llm import SamplingParams

    prompts = _prompts()
    sp = SamplingParams(temperature=0.0, max_tokens=24, ignore_eos=True)
    ref, _ = _run(prompts, None, dtype="float32")
    one, gen1 = _run(prompts, sp)
    two, gen2 = _run(prompts, sp, tensor_parallel_size=2)
    clear = agree = 0
    for p, r, a, b in zip(prompts, ref, one, two):
        e1, e2 = rel(a, r), rel(b, r)
        print(f"n={len(p)}: rel err vs fp32 tp=1: tp=1 bf16 {e1:.2e}, tp=2 bf16 {e2:.2e}")
        assert e2 < max(2 * e1, 5e-3)
        top2 = r.topk(2).values
        if (top2[0] - top2[1]).item() > 4 * max((a - r).abs().max().item(), (b - r).abs().max().item()):
            clear += 1
            agree += int(b.argmax().item() == r.argmax().item())
    assert agree == clear
    same = [next((i for i, (x, y) in enumerate(zip(g1, g2)) if x != y), len(g1))
            for g1, g2 in zip(gen1, gen2)]
    print(f"greedy tokens equal to tp=1 for the first {same} of {sp.max_tokens} per prompt")
    assert all(len(g) == sp.max_tokens for g in gen2)
    assert sum(same) >= len(prompts) * sp.max_tokens // 2  # bf16 near-ties may split late tokens
