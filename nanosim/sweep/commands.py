"""Body of `nanosim sweep` (cli.py keeps only the parsers); `nanosim report` is report/html.py."""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
import typing
from dataclasses import fields
from pathlib import Path

from nanosim.config import ConfigError
from nanosim.output import check_out_dir


def sweep(a) -> int:
    from nanosim.sweep import load_spec, run_sweep
    from nanosim.sweep.point import Point

    if a.keys:
        print(format_keys(Point))
        return 0
    if a.spec is None:
        raise ConfigError("give a spec file (experiments/*.toml), or --keys to list its keys")
    spec = load_spec(a.spec)
    out = Path(a.out or Path("out") / spec.name)
    if a.dry_run:
        print(format_plan(spec, out, a.limit))
        return 0
    check_out_dir(out, "--out")  # before any point runs
    print(f"sweep {spec.name}: {len(spec.points)} points -> {out}", file=sys.stderr)
    try:
        with _sigterm_as_interrupt() as check_stop:
            rep = run_sweep(spec, out, workers=a.workers, ray_address=a.ray, limit=a.limit,
                            retry_failed=a.retry_failed, force=a.force,
                            progress=not a.no_progress, check_stop=check_stop)
    except KeyboardInterrupt as e:
        print(f"\ninterrupted: finished points are saved in {out}; rerun the same command to "
              "run the rest", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
    print(rep.format())
    failed = _failed_in_store(out)
    if failed:
        print(f"{failed} point(s) failed; errors are in the points table (nanosim report "
              f"{out}); rerun with --retry-failed after fixing the cause", file=sys.stderr)
    print(f"results in {out}; next: nanosim report {out}")
    return 1 if failed else 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: workers stopped, finished points kept."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises Terminated in the main thread. Python swallows an exception raised
    inside a finalizer (a ParquetWriter's __del__ running when the signal came), so the
    signal is also remembered: the context yields a check that raises it again, which the
    sweep's loop calls between waits."""
    received: list[int] = []

    def stop(signum, frame):
        received.append(signum)
        raise Terminated()

    def check_stop() -> None:
        if received:
            raise Terminated()

    if threading.current_thread() is not threading.main_thread():
        yield check_stop
        return
    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield check_stop
    finally:
        signal.signal(signal.SIGTERM, old)


def _failed_in_store(out: Path) -> int:
    from nanosim.sweep.store import ResultStore

    try:
        pts = ResultStore(out).points()
    except ConfigError:  # no point finished yet
        return 0
    return int((pts["status"] == "failed").sum())


def format_keys(point_cls) -> str:
    """The spec keys, their types and defaults, as a table."""
    hints = typing.get_type_hints(point_cls)
    rows = [f"{'key':<24} {'type':<28} default"]
    for f in fields(point_cls):
        t = str(hints[f.name]).replace("typing.", "").replace("<class '", "").replace("'>", "")
        rows.append(f"{f.name:<24} {t:<28} {f.default!r}")
    return "\n".join(rows)


def format_plan(spec, out: Path, limit: int | None) -> str:
    """What a run would do: the points (varying keys only) and which are already done."""
    from nanosim.sweep.store import ResultStore

    done = ResultStore(out).committed_ids() if (out / "points").is_dir() else set()
    keys = spec.varying()
    pts = spec.points[:limit] if limit is not None else spec.points
    todo = sum(p.point_id not in done for p in pts)
    lines = [f"sweep {spec.name}: {len(spec.points)} points, varying {', '.join(keys) or '-'}",
             f"{len(pts) - todo} already in {out}, {todo} to run"
             + (f" (--limit {limit})" if limit is not None else "")]
    for i, p in enumerate(pts[:40]):
        state = "done" if p.point_id in done else "todo"
        lines.append(f"  {i + 1:4d} {p.point_id} {state}  "
                     + ", ".join(f"{k}={getattr(p, k)}" for k in keys))
    if len(pts) > 40:
        lines.append(f"  ... {len(pts) - 40} more")
    return "\n".join(lines)
