"""Spec parsing: grid expansion, stable point ids, and errors that name key and reason."""
from pathlib import Path

import pytest

from nanosim.cli import main
from nanosim.sweep import SpecError, load_spec
from tests.sweep.helpers import REPO, TINY, write_spec


def spec_error(tmp_path, text: str) -> str:
    with pytest.raises(SpecError) as e:
        load_spec(write_spec(tmp_path, text))
    return str(e.value)


def test_grid_times_cases_in_written_order(tmp_path):
    spec = load_spec(write_spec(tmp_path, TINY + """
[grid]
policy = ["fcfs", "sjf"]
block_size_tokens = [16, 32, 64]
[[cases]]
max_num_seqs = 8
[[cases]]
max_num_seqs = 16
max_num_batched_tokens = 512
"""))
    assert len(spec.points) == 2 * 2 * 3
    assert spec.varying() == ["policy", "block_size_tokens", "max_num_seqs",
                              "max_num_batched_tokens"]
    first = spec.points[:3]  # last grid key varies fastest, cases outermost
    assert [p.block_size_tokens for p in first] == [16, 32, 64]
    assert {p.max_num_seqs for p in spec.points[:6]} == {8}
    assert spec.points[0].rate_rps == 20.0 and isinstance(spec.points[0].rate_rps, float)


def test_point_ids_are_stable_and_distinct(tmp_path):
    text = TINY + "[grid]\nseed = [0, 1, 2]\nrate_scale = [1, 2.0]\n"
    a = load_spec(write_spec(tmp_path, text, "a.toml"))
    b = load_spec(write_spec(tmp_path, text.replace("rate_scale = [1, 2.0]",
                                                    "rate_scale = [1.0, 2]"), "b.toml"))
    assert a.point_ids == b.point_ids  # 1 and 1.0 are the same point
    assert len(set(a.point_ids)) == 6


def test_unknown_top_level_key(tmp_path):
    msg = spec_error(tmp_path, 'descripton = "x"\n' + TINY)
    assert "top level: unknown key 'descripton'; did you mean 'description'?" in msg


@pytest.mark.parametrize("extra, expected", [
    ("[grid]\nblock_size = [16]\n", ["[grid]", "'block_size'", "did you mean 'block_size_tokens'"]),
    ("[[cases]]\nmodle = 'qwen3-8b'\n", ["[[cases]] #1", "'modle'", "did you mean 'model'"]),
    ("[slo]\nttft = 1.0\n", ["[slo]", "'ttft'", "did you mean 'ttft_s'"]),
    ("[output]\nsteps = 'all'\n", ["[output]", "steps 'all' is not one of binned, full, none"]),
])
def test_unknown_keys_are_named_with_a_suggestion(tmp_path, extra, expected):
    msg = spec_error(tmp_path, TINY + extra)
    assert str(tmp_path / "spec.toml") in msg
    for part in expected:
        assert part in msg


@pytest.mark.parametrize("extra, expected", [
    ("[grid]\nblock_size_tokens = [16, 0]\n",
     "[grid] block_size_tokens = 0 (item 2): must be >= 1"),
    ("[grid]\npolicy = ['fcfs', 'lifo']\n", "policy = 'lifo' (item 2): 'lifo' is not one of fcfs"),
    ("[grid]\ntp = [1.5]\n", "tp = 1.5 (item 1): must be an integer"),
    ("[grid]\nchunked_prefill = [1]\n", "chunked_prefill = 1 (item 1): must be true or false"),
    ("[grid]\nmax_num_seqs = 64\n", "[grid] max_num_seqs: must be a non-empty list"),
    ("[grid]\nmodel = ['qwen3-0.6b', 'qwen3-8b']\n", "model: in both [fixed] and [grid]"),
    ("[grid]\nmax_num_seqs = [64, 9000]\n",
     "max_num_batched_tokens (8192) must be >= max_num_seqs"),
    ("[grid]\ntp = [1, 3]\n", "tp=3 does not divide qwen3-0.6b's heads"),
    ("[grid]\ngpu = ['h100', 'tpu']\n", "unknown gpu 'tpu'"),
    ("[grid]\nseed = [1, 1]\n", "[grid] seed: repeated value"),
    ("[[cases]]\nseed = 1\n[[cases]]\nseed = 1\n", "points #1 and #2 are identical"),
    ("[slo]\nttft_s = 'fast'\ntpot_s = 0.1\n", "[slo] ttft_s = 'fast': must be a float"),
    ("[slo]\nttft_s = 1.0\ntpot_s = 0.1\nattainment = 2.0\n", "0 < attainment <= 1"),
])
def test_bad_values_are_named_with_the_reason(tmp_path, extra, expected):
    assert expected in spec_error(tmp_path, TINY + extra)


def test_workload_errors(tmp_path):
    no_size = TINY.replace("num_requests = 30\n", "")
    assert "needs num_requests or duration_s" in spec_error(tmp_path, no_size)
    both = TINY + 'trace = "x.csv"\n'
    assert "exactly one of trace and workload" in spec_error(tmp_path, both)
    missing = TINY.replace('workload = "chatbot"', 'trace = "nope/trace.csv"')
    msg = spec_error(tmp_path, missing)
    assert "trace = 'nope/trace.csv': not found (tried" in msg
    window = TINY + "window_s = [10, 5]\n"
    assert "window_s = [10, 5]: needs 0 <= start_s < end_s" in spec_error(tmp_path, window)


def test_invalid_toml_and_missing_file(tmp_path):
    assert "invalid TOML" in spec_error(tmp_path, TINY + "[grid\n")
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "missing.toml")


def test_cli_rejects_a_bad_spec_before_running(tmp_path, capsys):
    path = write_spec(tmp_path, TINY + "[grid]\nblock_size = [16]\n")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "nanosim sweep: error:" in err and "did you mean 'block_size_tokens'" in err
    assert not out.exists()


def test_cli_keys_lists_every_parameter(capsys):
    assert main(["sweep", "--keys"]) == 0
    out = capsys.readouterr().out
    for key in ("block_size_tokens", "rate_scale", "replicas", "router", "window_s", "seed"):
        assert key in out


SHIPPED = sorted((REPO / "experiments").glob("*.toml"))


def test_the_four_studies_are_shipped():
    names = {p.stem for p in SHIPPED}
    assert {"block_size", "batch_limits", "scheduling_policy", "capacity_planning"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_specs_validate_and_dry_run(path, tmp_path, capsys, monkeypatch, trace_cache):
    monkeypatch.chdir(tmp_path)  # trace paths resolve from the spec's folder too
    spec = load_spec(path)
    assert len(spec.points) >= 10 and spec.varying()
    # trace/profile files resolved; "auto" (the default profile) means the shipped ones
    assert all(Path(v).is_file() for k, v in spec.paths.items() if k not in ("auto", "none"))
    assert main(["sweep", str(path), "--dry-run", "--out", str(tmp_path / "o")]) == 0
    assert f"{len(spec.points)} to run" in capsys.readouterr().out
