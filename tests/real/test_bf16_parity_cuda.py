"""On a CUDA GPU: Qwen3-0.6B shapes with random weights saved as a bf16 HF checkpoint. The
reference is transformers' Qwen3ForCausalLM in fp32 on those same (bf16-valued) weights.
Our bf16 runner (triton backend, fused kernels, CUDA graphs) must be as close to it as
transformers' own bf16 forward is, and pick the same greedy tokens where the reference's
top-2 logit margin is clear of bf16 noise."""
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_bf16_parity_qwen3_0_6b_shapes(tmp_path):
    import transformers

    from nanosim.config import get_model
    from nanosim.gpu.inputs import SeqWork
    from nanosim.gpu.llm import LLM

    m = get_model("qwen3-0.6b")
    cfg = transformers.Qwen3Config(
        vocab_size=m.vocab_size, hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
        num_hidden_layers=m.num_layers, num_attention_heads=m.num_q_heads,
        num_key_value_heads=m.num_kv_heads, head_dim=m.head_dim, tie_word_embeddings=True,
        max_position_embeddings=4096, rope_theta=m.rope_theta)
    torch.manual_seed(0)
    hf16 = transformers.Qwen3ForCausalLM(cfg).to("cuda", torch.bfloat16).eval()
    hf16.save_pretrained(tmp_path)
    hf32 = transformers.Qwen3ForCausalLM(cfg).to("cuda").eval()
    hf32.load_state_dict({k: v.float() for k, v in hf16.state_dict().items()})
    llm = LLM(str(tmp_path), device="cuda", block_size=256, max_model_len=2048, max_num_seqs=16,
              gpu_memory_utilization=0.8)
    g = torch.Generator().manual_seed(0)
    agree = clear = 0
    for n in (37, 300, 1000, 1500):
        p = torch.randint(0, 150000, (n,), generator=g).tolist()
        with torch.no_grad():
            ref = hf32(torch.tensor([p], device="cuda")).logits[0, -1].float()
            theirs = hf16(torch.tensor([p], device="cuda")).logits[0, -1].float()
        ours = llm.runner.logits([SeqWork(p, 0, list(range(-(-n // 256))), True)])[0].float()
        e_ours, e_hf = rel(ours, ref), rel(theirs, ref)
        print(f"n={n}: rel err vs fp32 reference: ours {e_ours:.2e}, transformers bf16 {e_hf:.2e}")
        assert e_ours < max(2 * e_hf, 5e-3)
        top2 = ref.topk(2).values
        if (top2[0] - top2[1]).item() > 4 * (ours - ref).abs().max().item():
            clear += 1
            agree += int(ours.argmax().item() == ref.argmax().item())
    assert agree == clear
