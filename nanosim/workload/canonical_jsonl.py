"""nanosim's canonical JSON lines: one request object per line, the fields of ``Request``.

Keys: ``arrival_s``, ``prompt_tokens``, ``output_tokens`` (required); ``priority`` (int,
default 0), ``prefix_blocks`` (list of ints or null), ``prefix_block_tokens`` (int, default
512), ``prompt_token_ids`` (list of ints or null). Same rules as the canonical CSV; extra keys
are ignored.

    {"arrival_s": 0.0, "prompt_tokens": 6758, "output_tokens": 500, "prefix_blocks": [0, 1]}
"""
from __future__ import annotations

import json
from os import PathLike

import numpy as np

from nanosim.core.request import Request
from nanosim.workload._parse import build_trace, iter_json_lines, json_int_list, json_number

NAME = "canonical_jsonl"
KEYS = ("arrival_s", "prompt_tokens", "output_tokens")


def sniff(path, first_lines: list[str]) -> bool:
    try:
        obj = json.loads(first_lines[0])
    except (IndexError, ValueError):
        return False
    return isinstance(obj, dict) and set(KEYS) <= obj.keys()


def load(path) -> list[Request]:
    cols = {k: [] for k in ("t", "p", "o", "prio", "blocks", "btok", "ids", "lines")}
    for ln, obj in iter_json_lines(path):
        cols["t"].append(json_number(path, ln, obj, "arrival_s", integer=False, min_value=0))
        cols["p"].append(json_number(path, ln, obj, "prompt_tokens", integer=True, min_value=1))
        cols["o"].append(json_number(path, ln, obj, "output_tokens", integer=True, min_value=1))
        cols["prio"].append(json_number(path, ln, obj, "priority", integer=True, min_value=None,
                                        default=0))
        cols["blocks"].append(json_int_list(path, ln, obj, "prefix_blocks"))
        cols["btok"].append(json_number(path, ln, obj, "prefix_block_tokens", integer=True,
                                        min_value=1, default=512))
        cols["ids"].append(json_int_list(path, ln, obj, "prompt_token_ids"))
        cols["lines"].append(ln)
    return build_trace(path, np.asarray(cols["t"], dtype=np.float64), np.asarray(cols["p"]),
                       np.asarray(cols["o"]), np.asarray(cols["lines"]), priority=cols["prio"],
                       prefix_blocks=cols["blocks"], prefix_block_tokens=cols["btok"],
                       token_ids=cols["ids"], time_col="arrival_s")


def write(requests: list[Request], path: str | PathLike) -> None:
    """Write requests as canonical JSON lines (floats via repr: exact round trip)."""
    with open(path, "w") as f:
        for r in requests:
            obj = {"arrival_s": float(r.arrival_s), "prompt_tokens": r.prompt_tokens,
                   "output_tokens": r.output_tokens}
            if r.priority != 0:
                obj["priority"] = r.priority
            if r.prefix_blocks is not None:
                obj["prefix_blocks"] = list(r.prefix_blocks)
                obj["prefix_block_tokens"] = r.prefix_block_tokens
            if r.prompt_token_ids is not None:
                obj["prompt_token_ids"] = list(r.prompt_token_ids)
            f.write(json.dumps(obj) + "\n")
