"""The paged runner against Hugging Face transformers' Qwen3ForCausalLM (fp32, CPU)."""
import pytest
import torch

from nanosim.gpu.inputs import SeqWork
from nanosim.gpu.loader import read_spec
from nanosim.gpu.options import RunnerOptions
from nanosim.gpu.runner import ModelRunner

BS = 4  # block size: small, so prompts span several blocks and chunks cross block edges


def make_runner(path, attention="torch", fused_ops=False, blocks=64, **kw):
    return ModelRunner(read_spec(path), "cpu", RunnerOptions(dtype=torch.float32, block_size=BS, num_kv_blocks=blocks,
                       max_num_batched_tokens=128, max_num_seqs=8, attention=attention,
                       weights_dir=path, max_model_len=128, fused_ops=fused_ops, **kw))


def full_logits(runner, ids):
    """All rows' logits of one fresh prompt, through the runner's model and packer."""
    inp = runner.packer.pack([SeqWork(ids, 0, list(range(-(-len(ids) // BS))))], runner.num_kv_blocks)
    with torch.no_grad():
        return runner.model.compute_logits(runner.model(inp.input_ids, inp.positions, inp.meta,
                                                        runner.kv_caches))


def hf_greedy(model, prompt, n):
    ids = list(prompt)
    for _ in range(n):
        with torch.no_grad():
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt):]


@pytest.mark.parametrize("which", ["hf_untied", "hf_tied"])
def test_logits_match_transformers(which, request):
    model, path = request.getfixturevalue(which)
    runner = make_runner(path)
    ids = torch.randint(0, model.config.vocab_size, (23,), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(ids[None]).logits[0]
    torch.testing.assert_close(full_logits(runner, ids.tolist()), ref, atol=1e-5, rtol=1e-5)


def run_schedule(runner, prompts, n_decode):
    """Drive 3 sequences through the paged runner with prefix reuse, chunking and mixing.

    A (11 tokens) prefills whole in step 1, next to the first chunk (6) of C (13 tokens).
    B (10 tokens) shares A's first 8 tokens: its table starts with A's first two blocks
    and only its last 2 tokens are computed, in step 2, with C's second chunk (7) and
    A's first decode. Then all three decode together for ``n_decode`` steps."""
    A, B, C = prompts
    tables = {"A": list(range(0, 8)), "B": [0, 1] + list(range(8, 14)), "C": list(range(16, 24))}
    out = {"A": [], "B": [], "C": []}
    s1 = runner.step([SeqWork(A, 0, tables["A"]), SeqWork(C[:6], 0, tables["C"], samples=False)])
    out["A"] += s1.token_ids
    s2 = runner.step([SeqWork(B[8:], 8, tables["B"]), SeqWork(C[6:], 6, tables["C"]),
                      SeqWork(out["A"][-1:], len(A), tables["A"])])
    out["B"].append(s2.token_ids[0])
    out["C"].append(s2.token_ids[1])
    out["A"].append(s2.token_ids[2])
    for _ in range(n_decode):
        work = [SeqWork(out[n][-1:], len(p) + len(out[n]) - 1, tables[n])
                for n, p in zip("ABC", prompts)]
        for n, t in zip("ABC", runner.step(work).token_ids):
            out[n].append(t)
    return [out[n] for n in "ABC"]


def prompts_for(vocab):
    g = torch.Generator().manual_seed(7)
    A = torch.randint(0, vocab, (11,), generator=g).tolist()
    B = A[:8] + torch.randint(0, vocab, (2,), generator=g).tolist()
    C = torch.randint(0, vocab, (13,), generator=g).tolist()
    return A, B, C


def test_greedy_generation_matches_transformers(hf_untied):
    model, path = hf_untied
    prompts = prompts_for(model.config.vocab_size)
    got = run_schedule(make_runner(path), prompts, n_decode=3)
    expect = [hf_greedy(model, p, len(g)) for p, g in zip(prompts, got)]
    assert got == expect


def test_triton_backend_and_fused_ops_match_torch_tokens(hf_untied):
    """The whole model on our Triton kernels (interpreted on CPU) gives the same tokens."""
    model, path = hf_untied
    prompts = prompts_for(model.config.vocab_size)
    ref = run_schedule(make_runner(path), prompts, n_decode=2)
    got = run_schedule(make_runner(path, attention="triton", fused_ops=True), prompts, n_decode=2)
    assert got == ref


def test_seeded_sampling_is_independent_of_batch(hf_tied):
    _, path = hf_tied
    runner = make_runner(path)
    prompt = list(range(5, 14))
    hot = dict(temperature=1.5, top_k=50, top_p=0.95, seed=1234)

    def generate(with_neighbour: bool, seed: int):
        toks = []
        for step in range(4):
            ids, start = (prompt, 0) if step == 0 else (toks[-1:], len(prompt) + step - 1)
            work = [SeqWork(ids, start, list(range(8)), **{**hot, "seed": seed})]
            if with_neighbour:  # another sequence in the batch must not change ours
                work.insert(0, SeqWork([1, 2, 3], 0, [10], temperature=1.0, seed=step))
            toks.append(runner.step(work).token_ids[-1])
        return toks

    alone = generate(False, 1234)
    assert generate(True, 1234) == alone
    assert any(generate(False, s) != alone for s in (1, 2, 3))


def test_compiled_elementwise_ops_give_the_same_tokens(hf_untied, monkeypatch):
    """compile_ops: norms, activation and rotary under torch.compile (aot_eager here: the
    plumbing and dynamic shapes without a C++ build; the GPU A/B uses inductor) give the same
    tokens as the plain torch path, and cannot be combined with the fused kernels."""
    from nanosim.gpu import layers
    from nanosim.gpu.options import KernelOptions
    from nanosim.gpu.rotary import RotaryEmbedding

    from torch._dynamo.utils import counters

    counters.clear()
    _, path = hf_untied
    prompts = prompts_for(256)
    runner = make_runner(path, compile_ops=True, kernels=KernelOptions(compile_backend="aot_eager"))
    mods = [m for m in runner.model.modules()
            if isinstance(m, (layers.RMSNorm, layers.SiluAndMul, RotaryEmbedding))]
    assert mods and all(m.compiled == "aot_eager" for m in mods)
    assert run_schedule(runner, prompts, n_decode=2) == run_schedule(make_runner(path), prompts, n_decode=2)
    assert counters["stats"]["unique_graphs"] >= 3  # norm, activation, rotary were compiled
    with pytest.raises(ValueError, match="fused_ops"):
        make_runner(path, compile_ops=True, fused_ops=True)
