"""The results store of a sweep: a folder of Parquet files, one set per point.

    DIR/sweep.json              spec (name, TOML text, point ids in order, SLO, output)
    DIR/points/<id>.parquet     one row: status, error, parameters, summary figures
    DIR/requests/<id>.parquet   the per-request table (latency CDFs, SLO goodput)
    DIR/timeline/<id>.parquet   the per-step table in time bins (KV usage, batch size)
    DIR/steps/<id>.parquet      every step (only with [output] steps = "full")

Why Parquet files and not DuckDB: one file per point makes each commit a single
``os.replace`` (atomic on POSIX), so a killed sweep leaves either a whole point or
none, with no lock, no writer process and no database to repair; a point id is the file
name, so a rerun overwrites and never duplicates. pyarrow is already a dependency, and
pandas, pyarrow.dataset, DuckDB (``SELECT * FROM 'DIR/points/*.parquet'``) or Spark read
the folders as datasets. Only the sweep's driver process writes (workers, local or on Ray,
return their tables), so the store works unchanged when workers run on other machines.

Commit order: requests, timeline and steps files first, the points row last. A point is
done iff its points row exists; table files without a row (a crash between writes) are
ignored by the readers and overwritten when the point runs again. Temporary files are
named ``.tmp-*`` (readers and pyarrow datasets skip them) and removed at the next start.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import typing
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from nanosim.config import ConfigError
from nanosim.sweep.point import field_types

TABLES = ("requests", "timeline", "steps")
# Flat summary figures of a point, with their Arrow types (see worker.summary_record).
SUMMARY_TYPES = {
    "requests": pa.int64(), "finished": pa.int64(), "rejected": pa.int64(),
    "preemptions": pa.int64(), "steps": pa.int64(), "span_s": pa.float64(),
    "throughput_req_s": pa.float64(), "output_tok_s": pa.float64(),
    "output_tokens": pa.int64(), "prefix_cache_hit_rate": pa.float64(),
    **{f"{m}_{q}_s": pa.float64() for m in ("ttft", "tpot", "e2e")
       for q in ("p50", "p90", "p99", "mean")},
    "mean_batch_size": pa.float64(), "peak_kv_usage": pa.float64(), "kv_blocks": pa.int64(),
    "sim_end_s": pa.float64(), "sim_wall_s": pa.float64(), "cost_model": pa.string(),
    "note": pa.string(),
}
RUN_TYPES = {"point_wall_s": pa.float64(), "worker": pa.string(), "finished_at": pa.string()}


class ResultStore:
    """Reads and (from the sweep's driver only) writes one sweep folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------ metadata
    @property
    def meta(self) -> dict:
        f = self.root / "sweep.json"
        if not f.is_file():
            raise ConfigError(f"{self.root} is not a sweep results folder (no sweep.json); "
                              "run `nanosim sweep SPEC --out DIR` first")
        return json.loads(f.read_text())

    def create(self, meta: dict, force: bool = False) -> None:
        """Start or resume: refuse a folder made by another spec unless force."""
        old = self.root / "sweep.json"
        if old.is_file() and not force:
            prev = json.loads(old.read_text())
            if prev["name"] != meta["name"] or set(prev["point_ids"]) != set(meta["point_ids"]):
                raise ConfigError(
                    f"{self.root} holds sweep {prev['name']!r} with other points than this spec "
                    f"({len(prev['point_ids'])} vs {len(meta['point_ids'])}); use another --out, "
                    "or --force to adopt this spec (points with identical parameters are reused)")
        for d in ("points", *TABLES):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self._clean_tmp()
        _atomic_write(old, lambda tmp: tmp.write_text(json.dumps(meta, indent=1) + "\n"))

    @contextlib.contextmanager
    def writer_lock(self):
        """Hold DIR/.lock while writing: a second sweep into the same folder is refused
        (the OS drops the lock when the process dies, so a killed sweep never blocks)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                raise ConfigError(f"another nanosim sweep is writing {self.root} "
                                  f"({f.read().strip() or 'pid unknown'})") from None
            f.truncate(0)
            f.write(f"pid {os.getpid()}\n")
            f.flush()
            yield

    def _clean_tmp(self) -> None:
        for d in ("points", *TABLES):
            for f in (self.root / d).glob(".tmp-*"):
                f.unlink(missing_ok=True)

    # ------------------------------------------------------------------ writing
    def write_point(self, record: dict, tables: dict) -> None:
        """tables: name -> DataFrame or None. The points row is written last (the commit)."""
        pid = record["point_id"]
        for name, df in tables.items():
            if df is not None:
                t = pa.Table.from_pandas(df.assign(point_id=pid), preserve_index=False)
                _atomic_write(self._file(name, pid), lambda tmp, t=t: pq.write_table(t, tmp))
        row = pa.Table.from_pylist([record], schema=points_schema())
        _atomic_write(self._file("points", pid), lambda tmp: pq.write_table(row, tmp))

    def _file(self, table: str, point_id: str) -> Path:
        return self.root / table / f"{point_id}.parquet"

    # ------------------------------------------------------------------ reading
    def committed_ids(self) -> set[str]:
        """Points with a row (done or failed); cheap: file names only."""
        return {f.stem for f in self._committed_files()}

    def _committed_files(self) -> list[Path]:
        return sorted(f for f in (self.root / "points").glob("*.parquet")
                      if not f.name.startswith("."))

    def points(self, include_stale: bool = False):
        """One row per committed point of the current spec, in spec order (a DataFrame).
        include_stale: also rows of points no longer in the spec (after --force)."""
        ids = self.meta["point_ids"]
        files = self._committed_files()
        if not include_stale:
            files = [self._file("points", i) for i in ids if self._file("points", i).exists()]
        df = _concat(files)
        if df is None:
            raise ConfigError(f"{self.root}: no finished points yet")
        order = {pid: i for i, pid in enumerate(ids)}
        return df.sort_values("point_id", key=lambda s: s.map(order).fillna(len(ids)),
                              kind="stable").reset_index(drop=True)

    def table(self, name: str, point_ids=None, params: tuple | list = ()):
        """A per-point table ("requests", "timeline", "steps") of the given (default: all
        successful) points, with a point_id column and the requested parameter columns."""
        pts = self.points()
        ok = pts[pts["status"] == "ok"]
        ids = list(ok["point_id"]) if point_ids is None else list(point_ids)
        df = _concat([self._file(name, i) for i in ids if self._file(name, i).exists()])
        if df is None:
            raise ConfigError(f"{self.root}: no {name} table for the selected points"
                              + (" (enable it with [output] steps = \"full\")"
                                 if name == "steps" else ""))
        cols = ["point_id", *[c for c in params if c != "point_id"]]
        return df.merge(pts[cols], on="point_id", how="left") if len(cols) > 1 else df

    def requests(self, point_ids=None, params=()):
        return self.table("requests", point_ids, params)

    def timeline(self, point_ids=None, params=()):
        return self.table("timeline", point_ids, params)

    def steps(self, point_ids=None, params=()):
        return self.table("steps", point_ids, params)


def points_schema() -> pa.Schema:
    """Arrow schema of a points row: ids, parameters (Point fields; window_s as a JSON
    string), derived columns, summary figures, run facts. Fixed, so all rows concatenate."""
    base = {"point_id": pa.string(), "status": pa.string(), "error": pa.string()}
    params = {name: _arrow_type(hint) for name, hint in field_types().items()}
    derived = {"gpus": pa.int64(), "source": pa.string()}
    return pa.schema([*base.items(), *params.items(), *derived.items(),
                      *SUMMARY_TYPES.items(), *RUN_TYPES.items()])


def _arrow_type(hint) -> pa.DataType:
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return {bool: pa.bool_(), int: pa.int64(), float: pa.float64()}.get(args[0], pa.string())


def _concat(files):
    files = list(files)
    if not files:
        return None
    tables = [pq.read_table(f) for f in files]
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()


def _atomic_write(path: Path, write) -> None:
    """write(tmp) then rename over path: readers see the old file or the new one."""
    tmp = path.with_name(f".tmp-{path.stem}-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C / SIGTERM mid-write: leave no partial file behind
        tmp.unlink(missing_ok=True)
        raise
