"""Every shipped experiment names its trace by registry name and its first point runs from
the pre-filled trace cache (NANOSIM_TRACE_DIR=../shared/traces), as from a clean clone
after `nanosim trace download NAME`."""
import tomllib

import pytest

from nanosim.sweep import ResultStore, load_spec, run_sweep
from nanosim.workload.registry import parse_source, registry
from tests.sweep.helpers import REPO

SPECS = sorted((REPO / "experiments").glob("*.toml"))


def test_experiments_name_registered_traces():
    assert len(SPECS) >= 4
    for path in SPECS:
        data = tomllib.loads(path.read_text())
        traces = [t.get("trace") for t in [data.get("fixed", {}), *data.get("cases", [])]]
        traces += data.get("grid", {}).get("trace", [])
        named = [t for t in traces if t is not None]
        assert named, f"{path.name} names no trace"
        for t in named:
            assert parse_source(t)[0] in registry(), f"{path.name}: {t!r} is not a registered name"
        assert "nanosim trace download" in path.read_text()  # the comment says how to get it


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_first_point_runs_from_the_trace_cache(path, tmp_path, monkeypatch, trace_cache):
    monkeypatch.chdir(tmp_path)  # nothing found relative to the working directory
    spec = load_spec(path)
    rep = run_sweep(spec, tmp_path / "out", workers=0, progress=False, limit=1)
    assert rep.ok == 1 and rep.failed == 0
    pts = ResultStore(tmp_path / "out").points()
    assert pts["finished"].iloc[0] > 1000 and pts["ttft_p50_s"].iloc[0] > 0


def test_window_in_the_name_equals_window_s(tmp_path, trace_cache):
    from nanosim.config import ConfigError
    from nanosim.sweep.worker import build_requests
    from tests.sweep.helpers import write_spec

    head = 'name = "w"\n[fixed]\nmodel = "qwen3-0.6b"\n'
    a = load_spec(write_spec(tmp_path, head + 'trace = "azure2023-conv-20min[60:180]"\n', "a.toml"))
    b = load_spec(write_spec(tmp_path, head + 'trace = "azure2023-conv-20min"\n'
                                              'window_s = [60, 180]\n', "b.toml"))
    pa, pb = a.points[0], b.points[0]
    reqs = build_requests(pa, a.paths[pa.trace])
    assert reqs == build_requests(pb, b.paths[pb.trace]) and 100 < len(reqs) < 1000
    with pytest.raises(ConfigError, match="give it once"):
        load_spec(write_spec(tmp_path, head + 'trace = "azure2023-conv-20min[0:60]"\n'
                                              'window_s = [0, 120]\n', "c.toml"))
