"""OpenAI request bodies and response objects (vLLM's field names and defaults,
../shared/SERVING_AND_TRACES.md §2b). Unknown fields are accepted and ignored, as vLLM does.

Response builders return plain dicts: they are serialised once per SSE chunk, the hot path.
"""
from __future__ import annotations

import json
import time
from typing import Any, Union

from pydantic import BaseModel, ConfigDict


class StreamOptions(BaseModel):
    include_usage: bool = False
    continuous_usage_stats: bool = False


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: Union[str, list[str], None] = None
    stop_token_ids: list[int] | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False  # vLLM extension
    min_tokens: int = 0  # vLLM extension
    return_token_ids: bool = False  # vLLM extension: token ids in every choice

    def stop_strings(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionRequest(_Sampling):
    prompt: Union[str, list[int], list[str], list[list[int]]]
    max_tokens: int | None = 16


class ChatRequest(_Sampling):
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None


class RequestError(Exception):
    """A bad request: HTTP ``status`` with OpenAI's error body."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param, self.status = param, status

    def body(self) -> dict:
        kind = "invalid_request_error" if self.status == 400 else "server_error"
        if self.status == 404:
            kind = "NotFoundError"
        if self.status == 503:
            kind = "service_unavailable"
        return {"error": {"message": str(self), "type": kind, "param": self.param,
                          "code": self.status}}


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens}}


class Responses:
    """Builds one request's chunks and final object (completions or chat)."""

    def __init__(self, chat: bool, request_id: str, model: str, with_ids: bool) -> None:
        self.chat, self.id, self.model, self.with_ids = chat, request_id, model, with_ids
        self.created = int(time.time())
        self.object = "chat.completion.chunk" if chat else "text_completion"
        head = json.dumps(self._head(self.object), separators=(",", ":"))[:-1]
        if chat:
            self._sse_pre = f'data: {head},"choices":[{{"index":0,"delta":{{"content":'
            self._sse_pre_role = f'data: {head},"choices":[{{"index":0,"delta":{{"role":"assistant","content":'
            self._sse_mid = '},"logprobs":null,"finish_reason":'
        else:
            self._sse_pre = self._sse_pre_role = f'data: {head},"choices":[{{"index":0,"text":'
            self._sse_mid = ',"logprobs":null,"finish_reason":'

    def sse(self, text: str, token_ids: list[int], finish_reason: str | None,
            role: bool = False) -> str:
        """``chunk`` as one SSE event, built from string pieces (the hot path: one per request
        per engine step; the same JSON as json.dumps(self.chunk(...)))."""
        pre = self._sse_pre_role if role else self._sse_pre
        reason = "null" if finish_reason is None else f'"{finish_reason}"'
        ids = f',"token_ids":[{",".join(map(str, token_ids))}]' if self.with_ids else ""
        tail = "" if self.chat else ',"stop_reason":null'
        return f'{pre}{json.dumps(text)}{self._sse_mid}{reason}{tail}{ids}}}]}}\n\n'

    def _head(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def chunk(self, text: str, token_ids: list[int], finish_reason: str | None,
              role: bool = False) -> dict:
        if self.chat:
            delta = {"role": "assistant", "content": text} if role else {"content": text}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason,
                      "stop_reason": None}
        if self.with_ids:
            choice["token_ids"] = token_ids
        return {**self._head(self.object), "choices": [choice]}

    def usage_chunk(self, u: dict) -> dict:
        return {**self._head(self.object), "choices": [], "usage": u}

    def final(self, text: str, token_ids: list[int], finish_reason: str, u: dict) -> dict:
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text},
                      "logprobs": None, "finish_reason": finish_reason}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason,
                      "stop_reason": None}
            obj = "text_completion"
        if self.with_ids:
            choice["token_ids"] = token_ids
        return {**self._head(obj), "choices": [choice], "usage": u}


def model_card(name: str, max_model_len: int) -> dict:
    return {"id": name, "object": "model", "created": int(time.time()), "owned_by": "nanosim",
            "root": name, "parent": None, "max_model_len": max_model_len, "permission": []}

