"""`nanosim serve --sim` over real HTTP with the official openai client: completions and chat,
streaming and not, usage, stop strings, OpenAI-shaped 400 errors, /metrics under vLLM's names
(parsed by prometheus_client), a client disconnect that frees the request's blocks, and the
bounded queue's 503."""
import asyncio
import time

import httpx
import pytest

from tests.serve.conftest import running_server

openai = pytest.importorskip("openai")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

MODEL = "qwen3-8b"


@pytest.fixture(scope="module")
def sim(chat_tokenizer_dir):
    with running_server(["--sim", "--model", MODEL, "--gpu", "h100", "--tokenizer",
                         str(chat_tokenizer_dir), "--max-model-len", "512"]) as s:
        yield s


def client(url):
    return openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)


def metrics(url) -> dict:
    """{(name, frozenset(labels without model/engine)): value} of every sample."""
    text = httpx.get(url + "/metrics").text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            assert s.labels.get("model_name") == MODEL and s.labels.get("engine") == "0"
            rest = frozenset((k, v) for k, v in s.labels.items() if k not in ("model_name", "engine"))
            out[(s.name, rest)] = s.value
    return out


def test_sse_events_are_the_chunk_objects():
    """The hot path builds SSE events from string pieces: the same JSON as the chunk dicts."""
    import json

    from nanosim.serve.protocol import Responses

    for chat in (False, True):
        for ids in (False, True):
            out = Responses(chat, "cmpl-1", MODEL, ids)
            for role in (False, True):
                for reason in (None, "length"):
                    event = out.sse('a "quoted"\n\u00e9', [1, 2], reason, role)
                    assert event.startswith("data: ") and event.endswith("\n\n")
                    assert json.loads(event[6:]) == out.chunk('a "quoted"\n\u00e9', [1, 2], reason, role)


def test_models_health_and_completions(sim):
    url, _ = sim
    c = client(url)
    assert [m.id for m in c.models.list().data] == [MODEL]
    assert httpx.get(url + "/health").status_code == 200
    r = c.completions.create(model=MODEL, prompt=[5, 6, 7], max_tokens=5, seed=3)
    assert r.object == "text_completion" and r.choices[0].finish_reason == "length"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (3, 5, 8)
    again = c.completions.create(model=MODEL, prompt="w1 w2 w3", max_tokens=5, seed=3)
    assert again.usage.prompt_tokens == 3 and again.choices[0].text == r.choices[0].text  # seeded ids
    stream = c.completions.create(model=MODEL, prompt=[5, 6, 7], max_tokens=5, seed=3, stream=True,
                                  stream_options={"include_usage": True},
                                  extra_body={"return_token_ids": True})
    chunks = list(stream)
    content = [ch for ch in chunks if ch.choices]
    assert "".join(ch.choices[0].text for ch in content) == r.choices[0].text
    assert sum(len(ch.choices[0].model_extra["token_ids"]) for ch in content) == 5
    assert content[-1].choices[0].finish_reason == "length"
    assert all(ch.choices[0].finish_reason is None for ch in content[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5


def test_chat_streaming_and_not(sim):
    url, _ = sim
    c = client(url)
    msgs = [{"role": "user", "content": "w1 w2"}]
    r = c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=4, seed=1)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.usage.prompt_tokens == 4 and r.usage.completion_tokens == 4  # <|user|> w1 w2 <|assistant|>
    chunks = list(c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=4, seed=1,
                                            stream=True, stream_options={"include_usage": True}))
    assert chunks[0].object == "chat.completion.chunk" and chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == \
        r.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == 4


def test_stop_string_ends_the_request(sim):
    url, _ = sim
    c = client(url)
    full = c.completions.create(model=MODEL, prompt=[9], max_tokens=12, seed=5).choices[0].text
    stop = full.split()[4]
    cut = c.completions.create(model=MODEL, prompt=[9], max_tokens=12, seed=5, stop=[stop])
    assert cut.choices[0].text == full[:full.find(stop)] and cut.choices[0].finish_reason == "stop"


def test_bad_requests_get_openai_400s(sim):
    url, _ = sim
    c = client(url)
    cases = [dict(model="no-such-model", prompt=[1], max_tokens=2),
             dict(model=MODEL, prompt=[1], max_tokens=0),
             dict(model=MODEL, prompt=[1] * 600, max_tokens=2),  # over --max-model-len 512
             dict(model=MODEL, prompt=[1] * 500, max_tokens=20),
             dict(model=MODEL, prompt=[10**6], max_tokens=2)]  # outside the vocabulary
    params = []
    for kw in cases:
        with pytest.raises(openai.BadRequestError) as e:
            c.completions.create(**kw)
        assert e.value.status_code == 400
        params.append(e.value.body["param"])
    assert params == ["model", "max_tokens", "prompt", "max_tokens", "prompt"]
    raw = httpx.post(url + "/v1/completions", json={"model": MODEL, "prompt": [1], "max_tokens": -1})
    err = raw.json()["error"]
    assert raw.status_code == 400 and set(err) == {"message", "type", "param", "code"}
    assert err["code"] == 400 and err["type"] == "invalid_request_error" and "max_tokens" in err["message"]
    raw = httpx.post(url + "/v1/completions", json={"model": MODEL})  # no prompt: 400, not 422
    assert raw.status_code == 400 and raw.json()["error"]["param"] == "prompt"


def test_metrics_carry_vllm_names(sim):
    url, _ = sim
    before = metrics(url)
    c = client(url)
    for n in (3, 6):
        c.completions.create(model=MODEL, prompt=[1, 2, 3, 4], max_tokens=n)
    after = metrics(url)

    def delta(name, **labels):
        key = (name, frozenset(labels.items()))
        return after[key] - before.get(key, 0.0)

    assert delta("vllm:request_success_total", finished_reason="length") == 2
    assert delta("vllm:generation_tokens_total") == 9
    assert delta("vllm:prompt_tokens_total") == 8
    assert delta("vllm:time_to_first_token_seconds_count") == 2
    assert delta("vllm:inter_token_latency_seconds_count") == 7  # one per decode step
    assert delta("vllm:e2e_request_latency_seconds_count") == 2
    assert delta("vllm:request_time_per_output_token_seconds_count") == 2
    assert delta("vllm:prefix_cache_queries_total") == 8  # tokens, as vLLM counts
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:num_preemptions_total", "vllm:prefix_cache_hits_total"):
        assert (name, frozenset()) in after
    assert after[("vllm:num_requests_running", frozenset())] == 0
    assert after[("vllm:time_to_first_token_seconds_bucket", frozenset({("le", "0.001")}))] >= 0


def test_disconnect_mid_stream_aborts_and_frees_blocks(sim):
    url, state = sim
    engine = state.driver.engine.engine  # the Engine behind LocalEngine
    before = metrics(url)
    body = {"model": MODEL, "prompt": list(range(1, 250)), "max_tokens": 200, "stream": True}
    with httpx.stream("POST", url + "/v1/completions", json=body) as resp:
        assert resp.status_code == 200
        events = 0
        for line in resp.iter_lines():
            events += line.startswith("data: ")
            if events == 3:
                assert engine.bm.num_used > 0  # the request holds KV blocks now
                break
    deadline = time.monotonic() + 5
    while engine.has_work or state.driver.live:
        assert time.monotonic() < deadline, "the aborted request is still in the engine"
        time.sleep(0.01)
    engine.check()  # block manager invariants over the remaining (no) sequences
    assert engine.bm.num_used == 0
    after = metrics(url)
    key = ("vllm:request_success_total", frozenset({("finished_reason", "abort")}))
    assert after[key] - before.get(key, 0) == 1
    gen = ("vllm:generation_tokens_total", frozenset())
    assert 3 <= after[gen] - before[gen] < 200


def test_stream_interval_groups_tokens_after_the_first():
    with running_server(["--sim", "--model", MODEL, "--gpu", "l40s", "--stream-interval", "4",
                         "--max-model-len", "512"]) as (url, _):
        chunks = client(url).completions.create(model=MODEL, prompt=[1, 2, 3], max_tokens=10,
                                                stream=True, extra_body={"return_token_ids": True})
        sizes = [len(ch.choices[0].model_extra["token_ids"]) for ch in chunks]
    assert sizes == [1, 4, 4, 1]


def test_bounded_queue_answers_503():
    async def burst(url):
        async with httpx.AsyncClient() as c:
            body = {"prompt": [1, 2, 3], "max_tokens": 30}
            return await asyncio.gather(*[c.post(url + "/v1/completions", json=body, timeout=30)
                                          for _ in range(6)])

    with running_server(["--sim", "--model", MODEL, "--max-num-seqs", "1", "--max-waiting", "2",
                         "--max-model-len", "512"]) as (url, _):
        codes = [r.status_code for r in asyncio.run(burst(url))]
        rejected = [r for r in asyncio.run(burst(url)) if r.status_code == 503]
    assert codes.count(200) >= 2 and codes.count(503) >= 1 and set(codes) == {200, 503}
    assert rejected and "max-waiting" in rejected[0].json()["error"]["message"]
