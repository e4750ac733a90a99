"""Mooncake (Kimi) FAST'25 traces: JSON lines with prefix-block hashes.

Each line: ``timestamp`` (ms from trace start, integer), ``input_length``, ``output_length``,
``hash_ids`` (remapped hashes of 512-token prompt blocks; equal id = identical KV prefix
block; ``len(hash_ids) = ceil(input_length / 512)``, the last block partial). They become
``prefix_blocks = hash_ids`` with ``prefix_block_tokens = 512`` (``block_tokens=`` to change),
so ``Request.token_ids()`` makes prompts that share prefixes exactly where the trace says.
Token ids are never materialised here (the conversation sample has ~49M prompt tokens).

A row whose hash_ids do not match ceil(input_length / block) is kept as is (fewer ids: the
rest of the prompt is unique; more: the extra ids are ignored) with one TraceWarning.

    {"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1, ..., 13]}
"""
from __future__ import annotations

import json
import warnings

import numpy as np

from nanosim.core.request import Request
from nanosim.workload._parse import (build_trace, check_sorted, iter_json_lines, json_int_list,
                                     json_number)
from nanosim.workload.errors import TraceError, TraceWarning

NAME = "mooncake"
KEYS = ("timestamp", "input_length", "output_length", "hash_ids")


def sniff(path, first_lines: list[str]) -> bool:
    try:
        obj = json.loads(first_lines[0])
    except (IndexError, ValueError):
        return False
    return isinstance(obj, dict) and {"input_length", "output_length", "hash_ids"} <= obj.keys()


def load(path, *, block_tokens: int = 512) -> list[Request]:
    if block_tokens < 1:
        raise ValueError("block_tokens must be >= 1")
    t, p, o, blocks, lines = [], [], [], [], []
    mismatched = 0
    for lineno, obj in iter_json_lines(path):
        t.append(json_number(path, lineno, obj, "timestamp", integer=False, min_value=0))
        n_in = json_number(path, lineno, obj, "input_length", integer=True, min_value=1)
        p.append(n_in)
        o.append(json_number(path, lineno, obj, "output_length", integer=True, min_value=1))
        if "hash_ids" not in obj:
            raise TraceError(path, lineno, "missing key 'hash_ids'")
        ids = json_int_list(path, lineno, obj, "hash_ids")
        if ids is None:
            raise TraceError(path, lineno, "hash_ids: expected a list of integers")
        mismatched += len(ids) != -(-n_in // block_tokens)
        blocks.append(ids or None)
        lines.append(lineno)
    if mismatched:
        warnings.warn(f"{path}: {mismatched} rows have len(hash_ids) != ceil(input_length/"
                      f"{block_tokens})", TraceWarning, stacklevel=3)
    ms = np.asarray(t, dtype=np.float64)
    check_sorted(path, ms, np.asarray(lines), "timestamp")  # on the raw ms values
    return build_trace(path, (ms - ms[0]) / 1000.0, np.asarray(p), np.asarray(o), np.asarray(lines),
                       prefix_blocks=blocks, prefix_block_tokens=block_tokens,
                       time_col="timestamp")
