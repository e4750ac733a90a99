"""Real mode on CPU: the same Engine/Scheduler/BlockManager drive a tiny fp32 Qwen3, whose
greedy tokens must equal transformers' generate() with prefix caching, chunked prefill and
preemption all in play; `nanosim run` end to end; clear errors."""
import json

import pandas as pd
import pytest
import torch

transformers = pytest.importorskip("transformers")

from nanosim.cli import main  # noqa: E402
from nanosim.core.metrics import REQUEST_COLUMNS, STEP_COLUMNS  # noqa: E402
from nanosim.gpu.llm import LLM, SamplingParams  # noqa: E402
from tests.tiny_qwen3 import save_tiny_qwen3  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-qwen3")
    return path, save_tiny_qwen3(path)


def hf_greedy(model, ids, n):
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False,
                             eos_token_id=None, pad_token_id=0)
    return out[0, len(ids):].tolist()


def test_greedy_parity_with_prefix_cache_chunking_and_preemption(tiny_dir):
    path, model = tiny_dir
    g = torch.Generator().manual_seed(1)
    shared = torch.randint(0, 384, (40,), generator=g).tolist()
    prompts = [shared + torch.randint(0, 384, (n,), generator=g).tolist() for n in (5, 17, 30, 9)]
    prompts.append(torch.randint(0, 384, (70,), generator=g).tolist())
    n_out = 40
    llm = LLM(str(path), device="cpu", dtype="float32", block_size=8, max_num_seqs=4,
              max_num_batched_tokens=32, max_model_len=128, num_kv_blocks=16)
    outs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=n_out))
    for p, o in zip(prompts, outs):
        assert o.token_ids == hf_greedy(model, p, n_out)
    req, steps = llm.engine.results()
    assert req.cached_prompt_tokens.sum() > 0  # prefix caching hit
    assert req.preemptions.sum() > 0  # KV pressure preempted someone
    assert (steps.prefill_tokens == 32).any() and len(steps) > 0  # chunked prompts
    assert ((steps.num_prefill_seqs > 0) & (steps.num_decode_seqs > 0)).any()  # mixed steps


def test_seeded_sampling_reproducible(tiny_dir):
    path, _ = tiny_dir
    llm = LLM(str(path), device="cpu", dtype="float32", block_size=8, max_model_len=128)
    sp = SamplingParams(temperature=0.8, top_k=50, top_p=0.9, max_tokens=10, seed=7)
    a = llm.generate([[1, 2, 3, 4]], sp)[0].token_ids
    b = llm.generate([[1, 2, 3, 4]], sp)[0].token_ids
    assert a == b and len(a) == 10


def test_stop_token_ends_generation(tiny_dir):
    path, model = tiny_dir
    ref = hf_greedy(model, [5, 6, 7], 12)
    llm = LLM(str(path), device="cpu", dtype="float32", block_size=8, max_model_len=128)
    out = llm.generate([[5, 6, 7]], SamplingParams(temperature=0, max_tokens=12,
                                                   stop_token_ids=(ref[3],)))[0]
    cut = ref.index(ref[3]) + 1
    assert out.token_ids == ref[:cut] and out.finish_reason == "stop"


def test_nanosim_run_cpu_end_to_end(tiny_dir, tmp_path, capsys):
    path, _ = tiny_dir
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n" +
                     "".join(f"{i * 0.01:.2f},{10 + 5 * i},{2 + i % 4}\n" for i in range(12)))
    out = tmp_path / "run"
    rc = main(["run", "--trace", str(trace), "--model", str(path), "--device", "cpu",
               "--dtype", "float32", "--block-size", "16", "--max-model-len", "256",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    req = pd.read_parquet(out / "requests.parquet")
    steps = pd.read_parquet(out / "steps.parquet")
    summary = json.loads((out / "summary.json").read_text())
    assert list(req.columns) == list(REQUEST_COLUMNS) and list(steps.columns) == list(STEP_COLUMNS)
    assert summary["finished"] == 12 and summary["mode"] == "real"
    assert list(req.output_tokens) == [2 + i % 4 for i in range(12)]
    assert (steps.duration_s > 0).all()
    assert "attention backend torch" in capsys.readouterr().out


def test_clear_errors(tiny_dir, tmp_path, capsys):
    path, _ = tiny_dir
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            LLM(str(path), device="cuda")
    llm = LLM(str(path), device="cpu", dtype="float32", block_size=8, max_model_len=64)
    with pytest.raises(ValueError, match="max_model_len"):
        llm.generate([list(range(80))])
    with pytest.raises(ValueError, match="tokenizer"):
        llm.generate(["hello"])
    from nanosim.gpu.loader import WeightsError
    with pytest.raises(WeightsError):
        LLM("qwen3-0.6b", device="cpu", weights=str(path))
    from nanosim.gpu.kv_cache import KVCacheTooSmall
    with pytest.raises((KVCacheTooSmall, ValueError), match="max_model_len"):
        LLM(str(path), device="cpu", dtype="float32", block_size=8, max_model_len=256, num_kv_blocks=4)
    rc = main(["run", "--workload", "chatbot", "--model", str(path), "--device", "cuda",
               "--out", str(tmp_path / "x"), "--no-progress"])
    if not torch.cuda.is_available():
        assert rc == 2 and "no CUDA GPU" in capsys.readouterr().err


def test_warmup_leaves_a_fresh_engine(tiny_dir):
    path, model = tiny_dir
    llm = LLM(str(path), device="cpu", dtype="float32", block_size=8, max_model_len=128)
    llm.warmup()
    req, steps = llm.engine.results()
    assert len(req) == 0 and len(steps) == 0 and llm.engine.bm.num_free == llm.engine.bm.num_blocks
    out = llm.generate([[5, 6, 7]], SamplingParams(temperature=0, max_tokens=6))[0]
    assert out.token_ids == hf_greedy(model, [5, 6, 7], 6)


def test_close_lets_go_of_the_weights_and_the_kv_cache(tiny_dir):
    """A closed LLM's tensors are freed although start-up put its heap out of the collector's
    reach (gc.freeze): the validation suite loads one LLM after another in one process, and
    on a GPU the next found no room for a KV block when the first's memory stayed taken."""
    import weakref

    path, _ = tiny_dir
    llm = LLM(str(path), device="cpu", dtype="float32", block_size=8, max_model_len=128)
    llm.generate([[1, 2, 3]], SamplingParams(temperature=0.0, max_tokens=4))
    weight = weakref.ref(next(llm.runner.model.parameters()))
    cache = weakref.ref(llm.runner.kv_caches[0][0])
    llm.close()
    llm.close()  # idempotent
    assert weight() is None and cache() is None
    assert llm.runner is None and llm.engine is None
    with pytest.raises(RuntimeError, match="unusable: it was closed"):
        llm.generate([[1, 2, 3]])
