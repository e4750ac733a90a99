"""Where a command writes: checked before any work starts, written atomically.

* ``check_out_dir`` / ``check_out_file``: the one check every writing command runs on its
  output location before it starts (an existing file where a folder is wanted or the
  reverse, a path under a file, a place this process cannot write) -> ``OutputError``
  naming the flag, which the CLI prints as one line (exit 2).
* ``staged_dir``: a run's files are written into a temporary folder beside the target and
  moved into place only when all are written, so a reader never sees files of two runs
  side by side, and a run that fails midway leaves the previous run's files as they were.
* ``atomic_file``: one output file written beside its target and renamed over it.
* ``write_run`` / ``format_summary``: a run's tables and summary (``simulate`` and ``run``).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from nanosim.config import ConfigError


class OutputError(ConfigError):
    """The output location cannot be written; the message names the flag and the path."""


def _nearest_existing(path: Path) -> Path:
    """path itself or its closest ancestor that exists (raises OutputError through a file)."""
    p = path
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    return p


def _check_writable_folder(folder: Path, flag: str, target: Path) -> None:
    """Create and remove a probe in ``folder`` (os.access says yes to root on /proc)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".nanosim-probe-", dir=folder))
    except OSError as e:
        raise OutputError(f"{flag} {target}: cannot write in {folder} "
                          f"({e.strerror or e})") from None


def _check_parents(path: Path, flag: str) -> Path:
    """The closest existing ancestor of path, which must be a writable folder."""
    anc = _nearest_existing(path.parent if path.parent != path else path)
    if not anc.is_dir():
        raise OutputError(f"{flag} {path}: {anc} is a file, not a folder")
    _check_writable_folder(anc, flag, path)
    return anc


def check_out_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` can be made (or replaced) as an output folder, else OutputError."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{flag} {out}: is an existing file, not a folder")
    _check_parents(out, flag)
    if out.is_dir():
        _check_writable_folder(out, flag, out)
    return out


def check_out_file(path: str | os.PathLike, flag: str = "--out",
                   suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` can be written as an output file (``suffixes``: the allowed ones)."""
    out = Path(path)
    if out.is_dir():
        raise OutputError(f"{flag} {out}: is an existing folder, not a file")
    if suffixes and out.suffix.lower() not in suffixes:
        raise OutputError(f"{flag} {out}: give a file ending in {' or '.join(suffixes)}")
    _check_parents(out, flag)
    return out


@contextlib.contextmanager
def staged_dir(out_dir: str | os.PathLike, flag: str = "--out"):
    """Yield a temporary folder beside ``out_dir``; on success its files replace out_dir's
    (other files already in out_dir are kept), on any error it is removed."""
    out = check_out_dir(out_dir, flag)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_in(tmp, out)


def _swap_in(tmp: Path, out: Path) -> None:
    """Put tmp where out is: two renames, so out holds one run's files at any instant."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rmdir(old)
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(old, out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for entry in old.iterdir():  # files of other commands (e.g. a report) stay
        if not (out / entry.name).exists():
            os.rename(entry, out / entry.name)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, flag: str = "--out"):
    """Yield a temporary path beside ``path``; renamed over it once the block succeeds."""
    out = check_out_file(path, flag)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.tmp-", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        yield Path(name)
        os.replace(name, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise


def write_run(out_dir: str | Path, requests, steps, summary: dict) -> Path:
    """requests.parquet, steps.parquet and summary.json in out_dir, all three or none
    (staged_dir). Tables are DataFrames or column dicts (sim/job.py, frames=False: no
    pandas). Nothing random is written, so a rerun gives the same bytes."""
    with staged_dir(out_dir) as tmp:
        for name, table in (("requests", requests), ("steps", steps)):
            if isinstance(table, dict):
                from nanosim.arrow_tables import write_parquet

                write_parquet(table, tmp / f"{name}.parquet")
            else:
                table.to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return Path(out_dir)


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
