"""Prompts to token ids and generated ids to text.

With a tokenizer (a checkpoint dir, or ``--tokenizer DIR`` in sim mode) text prompts are
encoded, chat messages go through its chat template and outputs are decoded. Without one,
prompts must be token ids and each output token's text is `` <id>`` (a space and its id),
so a client still sees one piece of text per token.

Sim mode draws its output token ids deterministically: request ``i`` of a server (ids in
order of arrival) with seed ``s`` gets numpy's default_rng([s, i]) ids, or the request's own
``seed`` field in place of ``i`` when it sets one.
"""
from __future__ import annotations

import numpy as np

from nanosim.serve.protocol import RequestError


class Tokens:
    def __init__(self, tokenizer, vocab_size: int) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.has_chat = tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))

    def prompt_ids(self, prompt) -> list[int]:
        """A completions prompt (one string or one list of token ids) as token ids."""
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]  # a batch of one
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise RequestError("text prompts need a tokenizer: start the server with a "
                                   "checkpoint dir that has one (or --tokenizer DIR), or send "
                                   "token ids", "prompt")
            return list(self.tokenizer.encode(prompt))
        if not prompt or not all(isinstance(t, int) for t in prompt):
            raise RequestError("prompt must be a string or one non-empty list of token ids "
                               "(batches of several prompts are not supported)", "prompt")
        if min(prompt) < 0 or max(prompt) >= self.vocab_size:
            raise RequestError(f"prompt token ids must be in [0, {self.vocab_size})", "prompt")
        return list(prompt)

    def chat_ids(self, messages: list[dict]) -> list[int]:
        if not self.has_chat:
            raise RequestError("chat completions need a tokenizer with a chat template in the "
                               "checkpoint dir (tokenizer_config.json 'chat_template'); this "
                               "server has none: use /v1/completions", "messages")
        try:
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                     tokenize=True)
        except Exception as e:  # a malformed message list
            raise RequestError(f"messages: {e}", "messages") from None
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # BatchEncoding in newer transformers
            ids = ids["input_ids"]
        return list(ids)

    def text(self, ids: list[int]) -> str:
        if self.tokenizer is None:
            return "".join(f" {t}" for t in ids)
        return self.tokenizer.decode(ids, skip_special_tokens=True)


class Detokenizer:
    """One request's incremental text: decodes all ids so far and returns the new suffix
    (O(n) per call with a tokenizer; a multi-byte character split across tokens waits)."""

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens
        self.ids: list[int] = []
        self.text = ""

    def add(self, ids: list[int]) -> str:
        self.ids.extend(ids)
        if self.tokens.tokenizer is None:
            new = self.tokens.text(ids)
        else:
            full = self.tokens.text(self.ids)
            if full.endswith("\ufffd"):
                return ""
            new = full[len(self.text):]
        self.text += new
        return new


class SimTokenSource:
    """Deterministic made-up output ids for sim mode: one generator per request, drawn one id
    at a time, so the ids depend only on the request's index or seed, not on the steps."""

    def __init__(self, seed: int, vocab_size: int) -> None:
        self.seed, self.vocab_size = seed, vocab_size

    def generator(self, request_index: int, request_seed: int | None):
        key = [self.seed, 0, request_index] if request_seed is None else [self.seed, 1, request_seed]
        rng = np.random.default_rng(key)
        vocab = self.vocab_size
        return lambda n: [int(rng.integers(vocab)) for _ in range(n)]
