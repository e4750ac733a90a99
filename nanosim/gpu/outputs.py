"""What ``LLM.generate`` returns: vLLM's shapes (RequestOutput / CompletionOutput), plus
per-request metrics from the engine. No torch here.

    out = llm.generate(["Hello"], SamplingParams(max_tokens=32))[0]
    out.prompt, out.prompt_token_ids           # as given / as encoded
    out.outputs[0].text, out.outputs[0].token_ids, out.outputs[0].finish_reason   # vLLM
    out.text, out.token_ids                    # shortcuts to outputs[0]
    out["text"], out["token_ids"]              # nano-vLLM's dict keys, same values
    out.metrics.ttft_s, out.metrics.e2e_s      # seconds on the engine clock

Times are on the engine clock of that ``generate`` call: it starts at 0 when the call
starts and advances by each step's measured duration (the host time of the step, see
gpu/backend.py); every request of the call arrives at 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class CompletionOutput:
    index: int  # which completion of the request (always 0: one per request)
    text: str | None  # decoded token_ids (None without a tokenizer)
    token_ids: list[int]
    finish_reason: str  # "stop" (EOS or a stop token) or "length" (max_tokens)


@dataclass(frozen=True)
class RequestMetrics:
    arrival_s: float  # engine clock, s
    first_token_s: float
    finish_s: float
    ttft_s: float  # first_token_s - arrival_s
    tpot_s: float  # (finish_s - first_token_s) / (output tokens - 1); nan for 1 token
    e2e_s: float  # finish_s - arrival_s
    prompt_tokens: int
    output_tokens: int
    cached_prompt_tokens: int  # prefix-cache hit at admission
    preemptions: int


@dataclass(frozen=True)
class RequestOutput:
    request_id: str
    prompt: str | None  # the string given (None for token-id prompts)
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    metrics: RequestMetrics
    finished: bool = True

    @property
    def text(self) -> str | None:
        return self.outputs[0].text

    @property
    def token_ids(self) -> list[int]:
        return self.outputs[0].token_ids

    @property
    def finish_reason(self) -> str:
        return self.outputs[0].finish_reason

    @property
    def num_cached_tokens(self) -> int:
        return self.metrics.cached_prompt_tokens

    _KEYS = ("text", "token_ids", "finish_reason")

    def __getitem__(self, key: str):
        """nano-vLLM returns dicts {"text", "token_ids"}: the same keys work here."""
        if key not in self._KEYS:
            raise KeyError(f"{key!r}; RequestOutput keys: {', '.join(self._KEYS)}")
        return getattr(self, key)


def request_output(seq, prompt: str | None, tokenizer) -> RequestOutput:
    """The RequestOutput of a finished engine Sequence."""
    ids = list(seq.output_ids)
    text = tokenizer.decode(ids) if tokenizer is not None else None
    req = seq.req
    first = seq.first_token_s if seq.first_token_s is not None else math.nan
    finish = seq.finish_s if seq.finish_s is not None else math.nan
    n = len(ids)
    metrics = RequestMetrics(
        arrival_s=req.arrival_s, first_token_s=first, finish_s=finish,
        ttft_s=first - req.arrival_s, e2e_s=finish - req.arrival_s,
        tpot_s=(finish - first) / (n - 1) if n > 1 else math.nan,
        prompt_tokens=req.prompt_tokens, output_tokens=n,
        cached_prompt_tokens=seq.num_cached_tokens, preemptions=seq.num_preemptions)
    return RequestOutput(str(req.request_id), prompt, list(req.prompt_token_ids),
                         [CompletionOutput(0, text, ids, seq.finish_reason)], metrics)
