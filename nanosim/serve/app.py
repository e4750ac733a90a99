"""The HTTP face: FastAPI routes over an EngineDriver.

    POST /v1/completions        prompt: text or token ids
    POST /v1/chat/completions   messages (needs a tokenizer with a chat template)
    GET  /v1/models, /health, /metrics (Prometheus text, vLLM names)

Streams are SSE (``data: <json>\\n\\n`` ... ``data: [DONE]\\n\\n``). Each engine step's tokens
of a request form one chunk; when the client reads slower than steps come, the waiting steps
go out together in one chunk (as vLLM does). A client that disconnects has its request
aborted (its KV blocks are freed before the next step).
"""
from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from nanosim.serve.protocol import (ChatRequest, CompletionRequest, RequestError, Responses,
                                    model_card, usage)
from nanosim.serve.tokens import Detokenizer, Tokens


@dataclass
class ServerState:
    """What the routes need; built by server.py (make_driver runs inside the event loop)."""

    model_name: str
    max_model_len: int
    tokens: Tokens
    make_driver: object  # () -> EngineDriver
    make_sampling: object  # (body, max_tokens) -> SamplingParams or None (sim)
    on_close: object = None  # () -> None, after the driver stopped (LLM.close)
    driver: object = None


def _dumps(obj) -> str:
    return "data: " + json.dumps(obj, separators=(",", ":")) + "\n\n"


def build_app(state: ServerState) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app):
        state.driver = state.make_driver()
        state.driver.start()
        try:
            yield
        finally:
            await state.driver.stop()
            if state.on_close is not None:
                state.on_close()

    app = FastAPI(title="nanosim", lifespan=lifespan)

    @app.exception_handler(RequestError)
    async def _request_error(request, exc: RequestError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        errs = exc.errors()
        loc = ".".join(str(x) for x in errs[0]["loc"][1:]) if errs else None
        msg = "; ".join(f"{'.'.join(str(x) for x in e['loc'][1:])}: {e['msg']}" for e in errs)
        return JSONResponse(RequestError(msg or "invalid request", loc).body(), status_code=400)

    @app.get("/health")
    async def health():
        ok = state.driver is not None and state.driver.healthy
        return Response(status_code=200 if ok else 503)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [model_card(state.model_name, state.max_model_len)]}

    @app.get("/metrics")
    async def metrics():
        if state.driver is not None:
            state.driver.refresh_gauges()
        return Response(state.driver.metrics.exposition(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        _check(state, body, body.max_tokens)
        ids = state.tokens.prompt_ids(body.prompt)
        return await _serve(state, body, ids, body.max_tokens, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest):
        limit = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        _check(state, body, limit)
        ids = state.tokens.chat_ids(body.messages)
        if limit is None:  # vLLM: the rest of the context
            limit = max(1, state.max_model_len - len(ids))
        return await _serve(state, body, ids, limit, chat=True)

    return app


def _check(state: ServerState, body, max_tokens: int | None) -> None:
    if body.model is not None and body.model != state.model_name:
        raise RequestError(f"the model `{body.model}` does not exist; this server serves "
                           f"`{state.model_name}`", "model")
    if max_tokens is not None and max_tokens <= 0:
        raise RequestError(f"max_tokens must be at least 1, got {max_tokens}", "max_tokens")
    if body.n != 1:
        raise RequestError("only n=1 is supported", "n")
    if body.temperature is not None and body.temperature < 0:
        raise RequestError("temperature must be >= 0", "temperature")
    if body.top_p is not None and not 0 < body.top_p <= 1:
        raise RequestError("top_p must be in (0, 1]", "top_p")
    if body.min_tokens < 0:
        raise RequestError("min_tokens must be >= 0", "min_tokens")


async def _serve(state: ServerState, body, ids: list[int], max_tokens: int, chat: bool):
    driver = state.driver
    if max_tokens is None:
        max_tokens = 16
    job = driver.submit(ids, max_tokens, state.make_sampling(body, max_tokens), body.seed)
    out = Responses(chat, f"{'chatcmpl' if chat else 'cmpl'}-{job.index}", state.model_name,
                    body.return_token_ids)
    gen = _generate(driver, job, Detokenizer(state.tokens), body.stop_strings())
    if body.stream:
        opts = body.stream_options
        return StreamingResponse(_sse(gen, out, job, opts is not None and opts.include_usage, chat),
                                 media_type="text/event-stream")
    return await _collect(gen, out, job)


async def _generate(driver, job, detok: Detokenizer, stops: list[str]):
    """Yields (text, token_ids, finish_reason or None) per batch of ready steps; aborts the
    request in the engine if the consumer goes away before the end."""
    try:
        emitted = 0  # characters of detok.text given out
        while True:
            items = [await job.queue.get()]
            while not job.queue.empty():
                items.append(job.queue.get_nowait())
            done = items[-1] is None
            ids = [t for it in items if it is not None for t in it[0]]
            reason = job.finish_reason if done else None
            if ids:
                detok.add(ids)
            text = detok.text[emitted:]
            cut = _find_stop(detok.text, stops, emitted)
            if cut is not None:
                text, reason, done = detok.text[emitted:cut], "stop", True
                driver.end(job, "stop")
            emitted += len(text)
            if ids or text or done:
                yield text, ids, reason if done else None
            if done:
                return
    finally:
        if job.finish_reason is None:
            driver.end(job, "abort")


def _find_stop(text: str, stops: list[str], start: int) -> int | None:
    """Index where the first stop string begins, if one ends after ``start`` (OpenAI: the
    stop string itself is not returned)."""
    best = None
    for s in stops:
        i = text.find(s, max(0, start - len(s) + 1))
        if i >= 0 and (best is None or i < best):
            best = i
    return best


async def _sse(gen, out: Responses, job, include_usage: bool, chat: bool):
    n, first = 0, True
    async for text, ids, reason in gen:
        n += len(ids)
        yield out.sse(text, ids, reason, role=chat and first)
        first = False
    if include_usage:
        yield _dumps(out.usage_chunk(usage(len(job.prompt_ids), n, job.cached_tokens)))
    yield "data: [DONE]\n\n"


async def _collect(gen, out: Responses, job):
    texts, ids, reason = [], [], "length"
    async for text, new_ids, r in gen:
        texts.append(text)
        ids.extend(new_ids)
        reason = r or reason
    u = usage(len(job.prompt_ids), len(ids), job.cached_tokens)
    return JSONResponse(out.final("".join(texts), ids, reason, u))
