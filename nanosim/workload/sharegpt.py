"""ShareGPT-style conversations (JSON array, or JSON lines, of ``{"conversations": [...]}``).

Each conversation gives one request, vLLM-benchmark style: its first user turn is the
prompt and the assistant turn right after it is the output. Turns are
``{"from": "human"|"user", "value": text}`` / ``{"from": "gpt"|"assistant", ...}``
(``role``/``content`` keys work too). Conversations without such a pair, or with an empty
text, are skipped (one TraceWarning gives the count).

Lengths: ``tokenizer(text)`` when given (returns a list of ids or a count); otherwise
``ceil(len(text) / chars_per_token)`` with ``chars_per_token=4.0`` (OpenAI's rule of thumb
for English; code and CJK text have fewer characters per token, so this undercounts them).
With ``keep_token_ids=True`` (tokenizer returning ids) the prompt ids are kept in the
requests. No timestamps: arrivals come from ``rate_rps=`` (Poisson, ``seed=``) or
``arrivals=`` exactly as for the vidur format.

    [{"id": "x1", "conversations": [{"from": "human", "value": "Hi"},
                                    {"from": "gpt", "value": "Hello!"}]}]
"""
from __future__ import annotations

import json
import math
import re
import warnings
from typing import Callable, Sequence

import numpy as np

from nanosim.core.request import Request
from nanosim.workload._parse import build_trace, read_text, synthetic_arrivals
from nanosim.workload.errors import TraceError, TraceWarning

NAME = "sharegpt"
USER = {"human", "user"}
ASSISTANT = {"gpt", "assistant", "chatgpt", "bard", "model"}


def sniff(path, first_lines: list[str]) -> bool:
    head = "\n".join(first_lines)
    return head[:1] in "[{" and bool(re.search(r'"conversations"\s*:', head))


def _read(path) -> list:
    text = read_text(path)
    if not text.strip():
        raise TraceError(path, 1, "empty file")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise TraceError(path, e.lineno, f"bad JSON: {e.msg} (column {e.colno})") from None
        return [(1, x) for x in items]  # one JSON document: items have no own line
    out = []
    for lineno, line in enumerate(text.split("\n"), 1):  # physical lines
        if line.strip():
            try:
                out.append((lineno, json.loads(line)))
            except json.JSONDecodeError as e:
                raise TraceError(path, lineno, f"bad JSON: {e.msg} (column {e.colno})") from None
    return out


def _turn(turn) -> tuple[str, str] | None:
    if not isinstance(turn, dict):
        return None
    role = str(turn.get("from", turn.get("role", ""))).lower()
    text = turn.get("value", turn.get("content"))
    return (role, text) if isinstance(text, str) else None


def _first_pair(conv) -> tuple[str, str] | None:
    turns = [_turn(t) for t in conv] if isinstance(conv, list) else []
    for a, b in zip(turns, turns[1:]):
        if a and b and a[0] in USER and b[0] in ASSISTANT and a[1] and b[1]:
            return a[1], b[1]
    return None


def load(path, *, tokenizer: Callable[[str], Sequence[int] | int] | None = None,
         chars_per_token: float = 4.0, keep_token_ids: bool = False,
         rate_rps: float | None = None, seed: int = 0, arrivals=None) -> list[Request]:
    if chars_per_token <= 0:
        raise ValueError("chars_per_token must be > 0")
    items = _read(path)
    prompts, outputs, ids, lines = [], [], [], []
    skipped = 0
    for k, (lineno, item) in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("conversations"), list):
            raise TraceError(path, lineno, f"conversation #{k}: expected an object with a "
                                           "'conversations' list")
        pair = _first_pair(item["conversations"])
        if pair is None:
            skipped += 1
            continue
        p, o, pid = _count(pair[0], tokenizer, chars_per_token), \
            _count(pair[1], tokenizer, chars_per_token), None
        if keep_token_ids and tokenizer is not None and not isinstance(p, int):
            pid = tuple(int(x) for x in p)
        p, o = (p if isinstance(p, int) else len(p)), (o if isinstance(o, int) else len(o))
        if p < 1 or o < 1:
            skipped += 1
            continue
        prompts.append(p), outputs.append(o), ids.append(pid), lines.append(lineno)
    if skipped:
        warnings.warn(f"{path}: skipped {skipped} conversations without a non-empty "
                      "user -> assistant turn pair", TraceWarning, stacklevel=3)
    if not prompts:
        raise TraceError(path, 1, "no usable conversations")
    t = synthetic_arrivals(path, len(prompts), rate_rps=rate_rps, seed=seed, arrivals=arrivals,
                           what="a ShareGPT conversation file")
    return build_trace(path, t, np.asarray(prompts), np.asarray(outputs), np.asarray(lines),
                       token_ids=ids if keep_token_ids else None)


def _count(text: str, tokenizer, chars_per_token: float):
    if tokenizer is None:
        return math.ceil(len(text) / chars_per_token)
    n = tokenizer(text)
    return int(n) if isinstance(n, (int, np.integer)) else list(n)
