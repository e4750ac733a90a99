"""Trace transforms. Each takes traces and returns a NEW canonical trace: sorted by
arrival_s, request_id 0..n-1, first arrival 0.0 (inputs are never modified).

Renumbering changes request_id, and ``Request.token_ids()`` draws the unique (non-shared)
part of a prompt from its request_id: unique parts stay unique, shared prefix content
(prefix_blocks / prompt_token_ids) is kept as is.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import numpy as np

from nanosim.core.request import Request


def rebase(requests: Sequence[Request]) -> list[Request]:
    """Sort by arrival (stable), shift the first arrival to 0.0, renumber ids 0..n-1."""
    if not requests:
        return []
    order = sorted(range(len(requests)), key=lambda i: requests[i].arrival_s)
    t0 = requests[order[0]].arrival_s
    return [replace(requests[i], request_id=k, arrival_s=requests[i].arrival_s - t0)
            for k, i in enumerate(order)]


def time_window(trace: Sequence[Request], start_s: float, end_s: float | None = None,
                ) -> list[Request]:
    """Requests with start_s <= arrival_s < end_s (end open: to the end), rebased."""
    return rebase([r for r in trace if r.arrival_s >= start_s
                   and (end_s is None or r.arrival_s < end_s)])


def scale_rate(trace: Sequence[Request], factor: float) -> list[Request]:
    """Multiply the request rate by ``factor``: every arrival_s is divided by it
    (factor 2 compresses time, twice the load; 0.5 stretches it). Lengths are unchanged."""
    if not factor > 0 or not math.isfinite(factor):
        raise ValueError("factor must be a finite number > 0")
    return rebase([replace(r, arrival_s=r.arrival_s / factor) for r in trace])


def to_rate(trace: Sequence[Request], rate_rps: float) -> list[Request]:
    """``scale_rate`` so that the mean rate (n-1)/span becomes ``rate_rps``."""
    t = [r.arrival_s for r in trace]
    if len(t) < 2 or max(t) <= min(t):
        raise ValueError("need >= 2 requests spanning > 0 s")
    return scale_rate(trace, rate_rps / ((len(t) - 1) / (max(t) - min(t))))


def sample(trace: Sequence[Request], *, fraction: float | None = None,
           num_requests: int | None = None, seed: int = 0) -> list[Request]:
    """A seeded random subset (without replacement, order kept): ``fraction`` of the
    requests, or exactly ``num_requests``. This thins the trace: the span stays about the
    same, so the rate drops by the same fraction (use scale_rate to restore it)."""
    n = len(trace)
    if (fraction is None) == (num_requests is None):
        raise ValueError("give exactly one of fraction and num_requests")
    k = round(fraction * n) if fraction is not None else num_requests
    if not 0 <= k <= n:
        raise ValueError(f"cannot sample {k} of {n} requests")
    keep = np.sort(np.random.default_rng([int(seed), 20]).choice(n, size=k, replace=False))
    return rebase([trace[i] for i in keep])


def clip_lengths(trace: Sequence[Request], max_model_len: int, *,
                 max_output_tokens: int | None = None, drop: bool = False) -> list[Request]:
    """Make every request fit a model context of ``max_model_len`` tokens.

    Rule (clip, the default): prompt_tokens <= max_model_len - 1 (at least one token is
    generated), then output_tokens <= max_model_len - prompt_tokens (prompt + output <=
    max_model_len), and output_tokens <= max_output_tokens when given. A clipped prompt
    keeps its first tokens: prompt_token_ids are cut, prefix_blocks keep the blocks that
    still cover the prompt. With ``drop=True`` requests with prompt + output >
    max_model_len are removed instead (output still capped by max_output_tokens).
    """
    if max_model_len < 2:
        raise ValueError("max_model_len must be >= 2")
    out = []
    for r in trace:
        o = r.output_tokens if max_output_tokens is None else min(r.output_tokens,
                                                                  max_output_tokens)
        if r.prompt_tokens + o <= max_model_len:
            out.append(r if o == r.output_tokens else replace(r, output_tokens=o))
        elif not drop:
            p = min(r.prompt_tokens, max_model_len - 1)
            out.append(replace(r, prompt_tokens=p, output_tokens=min(o, max_model_len - p),
                               prompt_token_ids=r.prompt_token_ids and r.prompt_token_ids[:p],
                               prefix_blocks=r.prefix_blocks and
                               r.prefix_blocks[:-(-p // r.prefix_block_tokens)]))
    return rebase(out)


def _offset_blocks(traces: Sequence[Sequence[Request]], share: bool) -> list[list[Request]]:
    """Give each trace its own content-block id range unless ``share`` (same id space)."""
    if share:
        return [list(t) for t in traces]
    out, base = [], 0
    for t in traces:
        ids = [b for r in t for b in (r.prefix_blocks or ())]
        out.append([replace(r, prefix_blocks=tuple(b + base for b in r.prefix_blocks))
                    if r.prefix_blocks else r for r in t] if base else list(t))
        base += (max(ids) + 1) if ids else 0
    return out


def concat(traces: Sequence[Sequence[Request]], *, gap_s: float = 0.0,
           share_block_ids: bool = False) -> list[Request]:
    """One trace after another: each next trace starts ``gap_s`` after the previous one's
    last arrival. Content-block ids are shifted so traces do not falsely share prefixes,
    unless ``share_block_ids`` (e.g. two windows of the same Mooncake file)."""
    if gap_s < 0:
        raise ValueError("gap_s must be >= 0")
    parts, start, out = _offset_blocks([rebase(t) for t in traces], share_block_ids), 0.0, []
    for t in parts:
        if not t:
            continue
        out += [replace(r, arrival_s=r.arrival_s + start) for r in t]
        start = out[-1].arrival_s + gap_s
    return rebase(out)


def merge(traces: Sequence[Sequence[Request]], *, share_block_ids: bool = False,
          ) -> list[Request]:
    """Superimpose traces (each rebased to start at 0), interleaved by arrival time; ties
    keep the order of ``traces``. Block ids as in ``concat``."""
    parts = _offset_blocks([rebase(t) for t in traces], share_block_ids)
    return rebase([r for t in parts for r in t])
