"""The user API as in vLLM: ``from nanosim import LLM, SamplingParams``; generate() takes
strings (tokenizer in the checkpoint) and token ids and returns RequestOutput objects with
text, token ids and per-request metrics. Tiny fp32 Qwen3 on CPU."""
import math
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from nanosim import LLM, RequestOutput, SamplingParams  # noqa: E402
from tests.real.test_llm_cpu import hf_greedy  # noqa: E402

VOCAB = 384


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny Qwen3 checkpoint with a word-level tokenizer ("w0".."w381", <unk>, <eos>)."""
    cfg = transformers.Qwen3Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
        tie_word_embeddings=False)
    torch.manual_seed(0)
    model = transformers.Qwen3ForCausalLM(cfg).eval()
    path = tmp_path_factory.mktemp("tiny-qwen3-tok")
    model.save_pretrained(path)
    vocab = {f"w{i}": i for i in range(VOCAB - 2)} | {"<unk>": VOCAB - 2, "<eos>": VOCAB - 1}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                                         eos_token="<eos>").save_pretrained(path)
    return path, model


def test_strings_and_token_ids_give_vllm_shaped_outputs(model_dir):
    path, model = model_dir
    llm = LLM(str(path), device="cpu", dtype="float32", block_size=8, max_model_len=128)
    sp = SamplingParams(temperature=0.0, max_tokens=6, ignore_eos=True)
    outs = llm.generate(["w5 w6 w7", [5, 6, 7], {"prompt_token_ids": [9, 8]}], sp)
    assert [type(o) for o in outs] == [RequestOutput] * 3
    a, b, c = outs
    assert a.prompt == "w5 w6 w7" and a.prompt_token_ids == [5, 6, 7]
    assert b.prompt is None and b.prompt_token_ids == [5, 6, 7]
    ref = hf_greedy(model, [5, 6, 7], 6)
    assert a.outputs[0].token_ids == b.token_ids == ref and c.token_ids == hf_greedy(model, [9, 8], 6)
    assert a.outputs[0].text == a.text == " ".join(f"w{i}" for i in ref)  # decoded
    assert a.outputs[0].finish_reason == "length" and a.outputs[0].index == 0
    assert a["token_ids"] == ref and a["text"] == a.text  # nano-vLLM's dict keys
    assert [o.request_id for o in outs] == ["0", "1", "2"]
    m = a.metrics
    assert m.prompt_tokens == 3 and m.output_tokens == 6 and m.arrival_s == 0.0
    assert 0 < m.ttft_s <= m.e2e_s and m.finish_s == pytest.approx(m.e2e_s)
    assert m.tpot_s == pytest.approx((m.finish_s - m.first_token_s) / 5)
    assert b.metrics.cached_prompt_tokens == 0 and not math.isnan(b.metrics.tpot_s)


def test_one_prompt_stop_on_eos_and_bad_input(model_dir, capsys):
    path, _ = model_dir
    llm = LLM(str(path), device="cpu", dtype="float32", block_size=8, max_model_len=128)
    one = llm.generate("w1 w2", SamplingParams(temperature=0.0, max_tokens=4), use_tqdm=True)
    assert len(one) == 1 and 1 <= len(one[0].token_ids) <= 4
    assert "generate" in capsys.readouterr().err  # the progress bar
    with pytest.raises(ValueError, match="2 sampling params for 1 prompts"):
        llm.generate(["w1"], [SamplingParams(), SamplingParams()])
    with pytest.raises(ValueError, match="'prompt' or 'prompt_token_ids'"):
        llm.generate([{"text": "w1"}])
    with pytest.raises(KeyError, match="RequestOutput keys"):
        one[0]["logprobs"]


def test_import_nanosim_stays_free_of_torch():
    code = ("import sys, nanosim; from nanosim import SamplingParams, RequestOutput; "
            "SamplingParams(max_tokens=3); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
