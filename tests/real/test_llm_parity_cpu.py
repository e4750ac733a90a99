"""Real mode on CPU gets the vLLM-parity features of the shared engine: reset_prefix_cache on
the LLM, and the preemption / prefix-cache statistics in a replay's summary and steps."""
import pytest
import torch

pytest.importorskip("transformers")

from nanosim.core.metrics import CACHE_COLUMNS  # noqa: E402
from nanosim.core.request import Request  # noqa: E402
from nanosim.gpu.llm import LLM, SamplingParams  # noqa: E402
from nanosim.gpu.replay import replay  # noqa: E402
from tests.real.test_llm_cpu import tiny_dir  # noqa: E402,F401  (module fixture)


def small_llm(path, **kw):
    return LLM(str(path), device="cpu", dtype="float32", block_size=8, max_num_seqs=4,
               max_num_batched_tokens=64, max_model_len=96, **kw)


def test_llm_reset_prefix_cache(tiny_dir):  # noqa: F811
    path, _ = tiny_dir
    llm = small_llm(path, num_kv_blocks=32)
    prompt = list(range(3, 43))
    greedy = SamplingParams(temperature=0.0, max_tokens=4)
    first = llm.generate([prompt], greedy)[0]["token_ids"]
    again = llm.generate([prompt], greedy)[0]["token_ids"]
    req, _ = llm.engine.results()
    assert first == again and req.cached_prompt_tokens.tolist() == [0, 32]
    llm.engine.add_request(Request(99, 0.0, 40, 4, prompt_token_ids=tuple(prompt)), 4, greedy)
    llm.engine.step(0.0)
    assert llm.reset_prefix_cache() is False  # request 99 holds blocks
    while llm.engine.has_work:
        llm.engine.step(0.0)
    assert llm.reset_prefix_cache() is True
    assert llm.generate([prompt], greedy)[0]["token_ids"] == first
    req, _ = llm.engine.results()
    cached = dict(zip(req.request_id, req.cached_prompt_tokens))
    assert cached[99] == 32 and cached[2] == 0  # nothing cached after the reset


def test_real_replay_reports_preemption_and_cache_stats(tiny_dir):  # noqa: F811
    path, _ = tiny_dir
    llm = small_llm(path, num_kv_blocks=12)
    g = torch.Generator().manual_seed(3)
    reqs = [Request(i, 0.001 * i, 30, 24,
                    prompt_token_ids=tuple(torch.randint(0, 384, (30,), generator=g).tolist()))
            for i in range(4)]
    req_df, steps, summary = replay(llm, reqs, "virtual")
    assert summary["preemptions"] > 0 and summary["preempted_requests"] > 0
    assert summary["prefix_cache_preempted_requests"] > 0
    assert summary["prefix_cache_preempted_hits"] > 0  # victims hit their own blocks again
    assert summary["prefix_cache_requests"] == 4
    for c in CACHE_COLUMNS:
        assert summary[c] == steps[c].sum()
    assert steps.preemptions.sum() == summary["preemptions"]
    assert "prefix_cache_hit_rate_window" in steps


def test_replay_leaves_the_llm_as_built(tiny_dir):  # noqa: F811
    """replay passes its sampling with each request and changes nothing of the LLM; the
    virtual clock refuses an LLM that decodes asynchronously instead of switching it off."""
    path, _ = tiny_dir
    llm = small_llm(path, num_kv_blocks=32)
    default, backend = llm.backend.default_sampling, llm.engine.backend
    reqs = [Request(i, 0.0, 12, 3, prompt_token_ids=tuple(range(5 + i, 17 + i))) for i in range(2)]
    req_df, _, summary = replay(llm, reqs, "virtual", temperature=0.0)
    assert llm.backend.default_sampling is default and llm.engine.backend is backend
    assert req_df.output_tokens.tolist() == [3, 3] and summary["async_decode"] is False
    ahead = small_llm(path, num_kv_blocks=32, async_decode=True)
    with pytest.raises(ValueError, match="async_decode=False"):
        replay(ahead, reqs, "virtual")


def test_with_decoding_builds_an_arm_over_the_same_runner(tiny_dir):  # noqa: F811
    """An A/B arm is an LLM built with its decoding options over the same runner (nothing
    loaded again), with its own backend and engine; the LLM it came from is left as built."""
    path, _ = tiny_dir
    llm = small_llm(path, num_kv_blocks=32)
    arm = llm.with_decoding(fast_decode=False)
    assert arm.runner is llm.runner and arm.backend is not llm.backend and arm.engine is not llm.engine
    assert (arm.backend.fast_decode, llm.backend.fast_decode) == (False, True)
    assert arm.backend.async_decode is llm.backend.async_decode is False
    greedy = SamplingParams(temperature=0.0, max_tokens=5)
    prompts = [list(range(3, 20)), list(range(7, 30))]
    assert [o["token_ids"] for o in arm.generate(prompts, greedy)] == \
        [o["token_ids"] for o in llm.generate(prompts, greedy)]
    assert len(llm.engine.results()[0]) == len(arm.engine.results()[0]) == 2
