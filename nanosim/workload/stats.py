"""Trace statistics, a readable table of them, and the canonical writer.

Block reuse (prefix-bearing traces): at a KV block size B, a request's full prompt blocks
are its first floor(prompt_tokens / B) blocks; block j is *reused* when the content of
tokens [0, (j+1)*B) - the chained content a prefix cache hashes - already appeared as a
full block of an earlier request. ``block_reuse_ratio`` = reused / all full prompt blocks
(length-only requests count in the denominator and never hit): the prefix-cache hit rate
of an infinite cache, counted in whole blocks, no "last token is always computed" rule.

It is computed without materialising token ids: for ``prefix_blocks`` requests, content is
determined by the chain of block ids and how much of each block the prompt covers, so the
longest prefix shared with any earlier request is found on a trie of block-id chains;
requests with ``prompt_token_ids`` are hashed block by block. (The two kinds are never
compared with each other: their token spaces are disjoint by construction.)

``content_block_reuse_ratio`` is the Mooncake-paper style count at the trace's own content
blocks: the fraction of all ``prefix_blocks`` entries (partial last blocks included) whose
id already appeared in an earlier request.
"""
from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Sequence

import numpy as np

from nanosim.core.request import Request

PERCENTILES = (50, 90, 99)


def _dist(x: np.ndarray) -> dict:
    d = {f"p{q}": float(np.percentile(x, q)) for q in PERCENTILES}
    d.update(mean=float(x.mean()), max=int(x.max()))
    return d


def _longest_shared_prefix(r: Request, seen: dict) -> int:
    """Tokens of r's prompt whose content appeared in an earlier request; updates ``seen``.

    seen maps a chain node (hash of (block size, ids[0..k])) to the most tokens of that
    content block any earlier prompt covered.
    """
    P, n = r.prefix_block_tokens, r.prompt_tokens
    shared, matching, chain = 0, True, hash((-1, P))
    for k, bid in enumerate(r.prefix_blocks):
        cover = min(P, n - k * P)
        if cover <= 0:
            break
        chain = hash((chain, bid))
        before = seen.get(chain, 0)
        if matching:
            m = min(before, cover)
            shared += m
            matching = m == P
        if cover > before:
            seen[chain] = cover
    return shared


def _reused_token_blocks(r: Request, B: int, seen: set) -> int:
    """Full B-blocks of r's explicit token ids already seen (chained); updates ``seen``."""
    ids = np.asarray(r.prompt_token_ids, dtype=np.int64)
    chain, reused = hash((-2, B)), 0
    for j in range(len(ids) // B):
        chain = hash((chain, ids[j * B:(j + 1) * B].tobytes()))
        reused += chain in seen
        seen.add(chain)
    return reused


def block_reuse(requests: Sequence[Request], block_size_tokens: int) -> tuple[int, int]:
    """(reused full prompt blocks, all full prompt blocks) at block size B (see module doc)."""
    B = block_size_tokens
    if B < 1:
        raise ValueError("block_size_tokens must be >= 1")
    nodes: dict = {}
    hashed: set = set()
    reused = full = 0
    for r in requests:
        full += r.prompt_tokens // B
        if r.prompt_token_ids is not None:
            reused += _reused_token_blocks(r, B, hashed)
        elif r.prefix_blocks:
            reused += _longest_shared_prefix(r, nodes) // B
    return reused, full


def trace_stats(requests: Sequence[Request], block_size_tokens: int = 16,
                bucket_s: float = 60.0) -> dict:
    """Summary of a trace (a plain dict, JSON-serialisable).

    Keys: num_requests, span_s, mean_rate_rps ((n-1)/span), interarrival_cv, bucket_s,
    rate_per_bucket_rps (requests per bucket / bucket_s, buckets from t=0; the last one
    may be partial), prompt_tokens / output_tokens ({p50, p90, p99, mean, max}; numpy
    linear percentiles), total_prompt_tokens, total_output_tokens, priorities ({class:
    count}), and when any request carries prefix content: block_size_tokens,
    full_prompt_blocks, reused_prompt_blocks, block_reuse_ratio; with prefix_blocks also
    content_blocks, content_block_reuse_ratio. Absent prefix content, those are None.
    """
    if not requests:
        raise ValueError("empty trace")
    if not bucket_s > 0:
        raise ValueError("bucket_s must be > 0")
    t = np.array([r.arrival_s for r in requests], dtype=np.float64)
    p = np.array([r.prompt_tokens for r in requests], dtype=np.int64)
    o = np.array([r.output_tokens for r in requests], dtype=np.int64)
    n, span = len(t), float(t.max() - t.min())
    gaps = np.diff(np.sort(t))
    counts = np.bincount(((t - t.min()) // bucket_s).astype(np.int64))
    prio = {}
    for r in requests:
        prio[r.priority] = prio.get(r.priority, 0) + 1
    s = {
        "num_requests": n,
        "span_s": span,
        "mean_rate_rps": (n - 1) / span if span > 0 else None,
        "interarrival_cv": float(gaps.std() / gaps.mean()) if n > 2 and span > 0 else None,
        "bucket_s": float(bucket_s),
        "rate_per_bucket_rps": (counts / bucket_s).tolist(),
        "prompt_tokens": _dist(p),
        "output_tokens": _dist(o),
        "total_prompt_tokens": int(p.sum()),
        "total_output_tokens": int(o.sum()),
        "priorities": dict(sorted(prio.items())),
        "block_size_tokens": block_size_tokens,
        "full_prompt_blocks": None,
        "reused_prompt_blocks": None,
        "block_reuse_ratio": None,
        "content_blocks": None,
        "content_block_reuse_ratio": None,
    }
    if any(r.has_content for r in requests):
        reused, full = block_reuse(requests, block_size_tokens)
        s.update(full_prompt_blocks=full, reused_prompt_blocks=reused,
                 block_reuse_ratio=reused / full if full else 0.0)
    if any(r.prefix_blocks for r in requests):
        seen: set = set()
        total = hits = 0
        for r in requests:
            ids = r.prefix_blocks or ()
            total += len(ids)
            hits += sum(b in seen for b in ids)
            seen.update(ids)
        s.update(content_blocks=total, content_block_reuse_ratio=hits / total if total else 0.0)
    return s


def format_stats(stats: dict, synthetic_arrivals: str | None = None) -> str:
    """A readable fixed-width table of ``trace_stats`` output. ``synthetic_arrivals``: how
    the arrival times of a trace without timestamps were made; the rate and burstiness rows
    are then left out (they would describe that choice, not the trace)."""
    def num(x, fmt="{:,.1f}"):
        return "-" if x is None else fmt.format(x)

    rows = [("requests", f"{stats['num_requests']:,}")]
    if synthetic_arrivals:
        rows.append(("arrivals", f"synthetic, {synthetic_arrivals}: the trace has no "
                                 "timestamps"))
    else:
        rows += [
            ("span", num(stats["span_s"], "{:,.1f} s")),
            ("mean rate", num(stats["mean_rate_rps"], "{:.3f} req/s")),
            ("inter-arrival CV", num(stats["interarrival_cv"], "{:.2f}")),
        ]
        rates = np.asarray(stats["rate_per_bucket_rps"])
        rows.append((f"rate per {stats['bucket_s']:g} s bucket",
                     f"min {rates.min():.3f} / median {np.median(rates):.3f} / max "
                     f"{rates.max():.3f} req/s over {len(rates)} buckets"))
    lines = [f"{k:<26}{v}" for k, v in rows]
    head = f"{'tokens':<10}" + "".join(f"{c:>10}" for c in ("p50", "p90", "p99", "mean", "max"))
    lines += ["", head]
    for key, label in (("prompt_tokens", "input"), ("output_tokens", "output")):
        d = stats[key]
        lines.append(f"{label:<10}" + "".join(f"{d[c]:>10,.1f}" for c in
                                              ("p50", "p90", "p99", "mean", "max")))
    lines.append("")
    lines.append(f"{'total tokens':<26}in {stats['total_prompt_tokens']:,} / "
                 f"out {stats['total_output_tokens']:,}")
    if len(stats["priorities"]) > 1:
        lines.append(f"{'priority classes':<26}" + ", ".join(
            f"{k}: {v:,}" for k, v in stats["priorities"].items()))
    if stats["block_reuse_ratio"] is not None:
        lines.append(f"{'block reuse @' + str(stats['block_size_tokens']) + ' tok':<26}"
                     f"{stats['block_reuse_ratio']:.1%} ({stats['reused_prompt_blocks']:,} of "
                     f"{stats['full_prompt_blocks']:,} full prompt blocks)")
    if stats["content_block_reuse_ratio"] is not None:
        lines.append(f"{'content-block id reuse':<26}{stats['content_block_reuse_ratio']:.1%} "
                     f"of {stats['content_blocks']:,} prefix_blocks entries")
    return "\n".join(lines)


def write_canonical(requests: Sequence[Request], path: str | PathLike) -> None:
    """Write a trace in nanosim's canonical format, CSV or JSON lines by suffix
    (``.csv`` / ``.jsonl``); ``load_trace`` reads it back identically."""
    from nanosim.workload import canonical_csv, canonical_jsonl

    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        canonical_csv.write(list(requests), path)
    elif suffix == ".jsonl":
        canonical_jsonl.write(list(requests), path)
    else:
        raise ValueError(f"{path}: write_canonical needs a .csv or .jsonl suffix")
