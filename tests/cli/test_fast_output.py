"""The simulate command's pandas-free path: Arrow-written tables are the files pandas
writes (byte for byte), the Azure loader's Arrow/numpy path gives the checking path's
requests, and the command imports no pandas."""
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from nanosim.arrow_tables import write_parquet
from nanosim.config import EngineConfig, get_gpu, get_model
from nanosim.core.request import Request
from nanosim.sim.job import run_simulation
from nanosim.workload import azure, load_trace

TRACES = Path(__file__).resolve().parents[3] / "shared" / "traces"
CFG = EngineConfig(block_size_tokens=16, max_num_seqs=8, max_num_batched_tokens=256,
                   max_model_len=300, num_kv_blocks=64)


def _requests():  # one too long for max_model_len: a rejected row with a reason (str column)
    return [Request(i, 0.01 * i, 40 + 7 * i, 20 + i) for i in range(30)] + [Request(30, 0.5, 290, 50)]


@pytest.mark.parametrize("replicas", [1, 3])
def test_arrow_parquet_is_pandas_parquet(tmp_path, replicas):
    args = (_requests(), get_model("qwen3-0.6b"), get_gpu("h100"), CFG, None)
    kw = dict(replicas=replicas, router="least_tokens")
    cols = run_simulation(*args, frames=False, **kw)
    frames = run_simulation(*args, **kw)
    assert isinstance(cols[0], dict) and "é" not in cols[0]["rejected"]
    assert any(cols[0]["rejected"]) and cols[2]["steps"] == frames[2]["steps"] > 50
    for a, b in ((cols[0], frames[0]), (cols[1], frames[1])):
        write_parquet(a, tmp_path / "arrow.parquet")
        b.to_parquet(tmp_path / "pandas.parquet", index=False)
        assert (tmp_path / "arrow.parquet").read_bytes() == (tmp_path / "pandas.parquet").read_bytes()
    drop = ("wall_s", "sim_speed_x")
    assert {k: v for k, v in cols[2].items() if k not in drop} == \
        {k: v for k, v in frames[2].items() if k not in drop}


def test_unicode_strings_round_trip(tmp_path):
    import numpy as np

    write_parquet({"a": np.arange(3, dtype=np.int64), "s": ["", "é ü", "x"]}, tmp_path / "t.parquet")
    df = pd.read_parquet(tmp_path / "t.parquet")
    assert df["s"].tolist() == ["", "é ü", "x"] and df["a"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("crlf", [False, True])
def test_azure_fast_path_equals_checking_path(tmp_path, monkeypatch, crlf):
    src = TRACES / "azure2023_conv_first20min.csv"
    if not src.exists():
        pytest.skip("shared traces not present")
    text = src.read_text().replace("\r\n", "\n")
    path = tmp_path / "t.csv"
    path.write_bytes((text.replace("\n", "\r\n") if crlf else text).encode())
    assert azure._read_fast(path) is not None
    fast = load_trace(path)
    monkeypatch.setattr(azure, "_read_fast", lambda p: None)
    assert load_trace(path) == fast and len(fast) == 5985


@pytest.mark.parametrize("body", [
    "2023-11-16 18:17:03.9799600,1,1\n\n2023-11-16 18:17:04.0,1,1\n",  # blank line inside
    "2023-11-16 18:17:03.9799600,1,1\n2023-13-16 18:17:04.0,1,1\n",  # month 13
    "2024-05-10 00:00:00.1+00:00,1,1\n",  # zoned: the checking path parses those
    "2023-11-16 18:17:03.9799600,1,\n",  # empty cell
    "2023-11-16 18:17:03.9799600,1.5,1\n",  # not an integer
])
def test_azure_fast_path_leaves_odd_files_to_the_checking_path(tmp_path, body):
    path = tmp_path / "t.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + body)
    assert azure._read_fast(path) is None


def test_simulate_imports_no_pandas(tmp_path):
    src = TRACES / "azure2023_conv_first20min.csv"
    if not src.exists():
        pytest.skip("shared traces not present")
    code = ("import sys; from nanosim.cli import main; "
            f"assert main(['simulate', '--trace', {str(src)!r}, '--max-requests', '200', '--out', "
            f"{str(tmp_path)!r}, '--no-progress']) == 0; print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_canonical_csv_fast_path_equals_checking_path(tmp_path, monkeypatch):
    from nanosim.workload import canonical_csv, write_canonical
    from nanosim.workload.synthetic import make_sessions, with_priorities

    reqs = with_priorities(make_sessions(1.0, num_sessions=30, seed=2, system_prompt_tokens=300),
                           {0: 0.3, 1: 0.7})
    path = tmp_path / "t.csv"
    write_canonical(reqs, path)
    assert canonical_csv._read_fast(path) is not None
    fast = load_trace(path)
    monkeypatch.setattr(canonical_csv, "_read_fast", lambda p: None)
    assert load_trace(path) == fast == reqs


@pytest.mark.parametrize("body", [
    "0,5,5\n\n1,5,5\n",  # blank line inside
    "0,5,5\n1,,5\n",  # empty cell
    "0,5,5\n1,5.5,5\n",  # not an integer
    "0,5,5\n-1,5,5\n",  # negative time, unsorted
    "0,5,5\ninf,5,5\n",
])
def test_canonical_fast_path_leaves_odd_files_to_the_checking_path(tmp_path, body):
    from nanosim.workload import canonical_csv

    path = tmp_path / "t.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n" + body)
    assert canonical_csv._read_fast(path) is None


def test_pandas_version_without_importlib_metadata():
    """The pandas version the files' metadata carries is importlib.metadata's, read without it."""
    from importlib.metadata import version

    from nanosim.arrow_tables import _pandas_version

    assert _pandas_version() == version("pandas") == pd.__version__


def test_command_exit_writes_and_flushes(tmp_path):
    """`python -m nanosim simulate` (cli.run: no interpreter teardown) leaves the three files
    and its whole summary on a pipe, exit code 0, and equal files to main() in-process; an
    error still exits 2 with its message."""
    from nanosim.cli import main

    args = ["simulate", "--workload", "chatbot", "--num-requests", "60", "--no-progress"]
    out = subprocess.run([sys.executable, "-m", "nanosim", *args, "--out", str(tmp_path / "a")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1].startswith("wrote ") and "TTFT" in out.stdout
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    for name in ("requests.parquet", "steps.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    bad = subprocess.run([sys.executable, "-m", "nanosim", "simulate", "--trace", str(tmp_path / "none.csv"),
                          "--out", str(tmp_path / "c")], capture_output=True, text=True)
    assert bad.returncode == 2 and "no such file" in bad.stderr


@pytest.mark.parametrize("user", [None, "jemalloc"])
def test_simulate_runs_arrow_on_the_system_allocator_unless_the_user_chose(user):
    """`nanosim simulate` as a command defaults Arrow's memory pool to the C library's malloc
    (pyarrow's mimalloc costs a replay ~0.08 s of system CPU) and BLAS to one thread; a
    user's setting stays. main() is replaced: the defaults are set before it runs."""
    code = ("import sys, os, nanosim.cli as c\n"
            "def main(argv, whole_process):\n"
            "    import pyarrow as pa\n"
            "    print(pa.default_memory_pool().backend_name, os.environ['OPENBLAS_NUM_THREADS'])\n"
            "    return 0\n"
            "c.main = main\nsys.argv = ['nanosim', 'simulate']\nc.run()\n")
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("ARROW_DEFAULT_MEMORY_POOL", "OPENBLAS_NUM_THREADS")}
    if user:
        import pyarrow as pa

        if user not in pa.supported_memory_backends():
            pytest.skip(f"this pyarrow has no {user}")
        env["ARROW_DEFAULT_MEMORY_POOL"] = user
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.split() == [user or "system", "1"]
