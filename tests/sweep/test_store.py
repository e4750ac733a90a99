"""The results store: atomic commits, crash leftovers ignored, one row per point."""
import pyarrow.parquet as pq
import pytest

from nanosim.config import ConfigError
from nanosim.sweep import ResultStore
from nanosim.sweep.store import points_schema
from tests.sweep.helpers import TINY, run_text

GRID = TINY + "[grid]\nblock_size_tokens = [16, 32, 64]\n"


def test_points_schema_has_unique_columns():
    names = points_schema().names
    assert len(names) == len(set(names))


def test_crash_leftovers_are_ignored_then_cleaned(tmp_path):
    _, store = run_text(tmp_path, GRID, limit=1)
    done = store.points()["point_id"].iloc[0]
    # A crash mid-commit: a half-written temporary file and a requests table whose
    # points row was never written.
    (store.root / "points" / ".tmp-deadbeef-1.parquet").write_bytes(b"PAR1 half")
    orphan = store.meta["point_ids"][1]
    (store.root / "requests" / f"{orphan}.parquet").write_bytes(b"garbage from a crash")
    assert store.committed_ids() == {done}
    assert set(store.requests()["point_id"]) == {done}  # the orphan is not read
    rep, store = run_text(tmp_path, GRID)
    assert (rep.ok, rep.skipped) == (2, 1)
    assert not list(store.root.glob("*/.tmp-*"))
    table = pq.read_table(store.root / "requests" / f"{orphan}.parquet")  # overwritten
    assert set(table.column("point_id").to_pylist()) == {orphan}
    assert store.requests().groupby("point_id").size().tolist() == [30, 30, 30]


def test_readers_explain_an_empty_or_foreign_folder(tmp_path):
    with pytest.raises(ConfigError, match="not a sweep results folder"):
        ResultStore(tmp_path).points()
    with pytest.raises(ConfigError, match="steps = \"full\""):
        run_text(tmp_path, TINY)[1].steps()


def test_parquet_folders_read_as_datasets(tmp_path):
    _, store = run_text(tmp_path, GRID)
    import pandas as pd

    req = pd.read_parquet(store.root / "requests")  # any Parquet reader works
    assert len(req) == 90 and req["point_id"].nunique() == 3


def test_a_second_writer_is_refused(tmp_path):
    from nanosim.sweep import load_spec, run_sweep
    from tests.sweep.helpers import write_spec

    spec = load_spec(write_spec(tmp_path, GRID))
    store = ResultStore(tmp_path / "out")
    with store.writer_lock():  # as if another `nanosim sweep` were running
        with pytest.raises(ConfigError, match="another nanosim sweep is writing"):
            run_sweep(spec, tmp_path / "out", workers=0, progress=False)
    assert run_sweep(spec, tmp_path / "out", workers=0, progress=False).ok == 3
