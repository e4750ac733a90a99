"""Writing a run's tables and printing its summary (shared by `simulate` and `run`)."""
from __future__ import annotations

import json
from pathlib import Path


def write_run(out_dir: str | Path, requests, steps, summary: dict) -> Path:
    """requests.parquet, steps.parquet and summary.json in out_dir (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, table in (("requests", requests), ("steps", steps)):
        if isinstance(table, dict):  # column dicts (sim/job.py, frames=False): no pandas
            from nanosim.arrow_tables import write_parquet

            write_parquet(table, out / f"{name}.parquet")
        else:
            table.to_parquet(out / f"{name}.parquet", index=False)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return out


def _ms(d: dict, key: str) -> str:
    v = d.get(key)
    return "      -" if v is None else f"{v * 1e3:9.1f}"


def format_summary(s: dict) -> str:
    """A fixed-width table of the headline figures."""
    lines = [
        f"requests      {s['requests']} ({s['finished']} finished, {s['rejected']} rejected, "
        f"{s['preemptions']} preemptions)",
        f"duration      {s['duration_s']:.2f} s over {s['steps']} engine steps",
        f"throughput    {s['throughput_req_s']:.2f} req/s, {s['output_tok_s']:.1f} output tok/s",
        f"prefix cache  {100 * s['prefix_cache_hit_rate']:.1f}% of prompt tokens hit",
        *([f"re-admitted   {s['prefix_cache_preempted_requests']} times after preemption, "
           f"{100 * s['prefix_cache_preempted_hits'] / max(s['prefix_cache_preempted_queries'], 1):.1f}% "
           "of their tokens hit again (counted apart, as vLLM does)"]
          if s.get("prefix_cache_preempted_requests") else []),
        f"KV peak       {100 * s['peak_kv_usage']:.1f}% of blocks; mean batch "
        f"{s['mean_batch_size']:.1f} seqs",
        "latency (ms)        p50       p90       p99      mean",
    ]
    for name, key in (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("E2E", "e2e_s")):
        d = s[key]
        lines.append(f"  {name:<6}   {_ms(d, 'p50')} {_ms(d, 'p90')} {_ms(d, 'p99')} {_ms(d, 'mean')}")
    if s.get("replicas"):
        lines.append(f"router        {s['router']}")
        for r in s["replicas"]:
            lines.append(f"  replica {r['replica']:<3} {r['requests']:6d} requests "
                         f"{r['output_tokens']:9d} output tokens, prefix hit "
                         f"{100 * r['prefix_cache_hit_rate']:.1f}%")
    for k in ("cost_model", "step_jitter", "note"):
        if s.get(k):
            lines.append(f"{k.replace('_', ' '):<13} {s[k]}")
    return "\n".join(lines)
