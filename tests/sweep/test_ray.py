"""`nanosim sweep --ray ADDRESS` against a local Ray cluster started by this test."""
import subprocess
import sys

import pandas as pd
import pytest

from nanosim.sweep import ResultStore
from tests.sweep.helpers import TINY, comparable, run_text, write_spec

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'nanosim[sweep]'")

SPEC = TINY + "[grid]\nblock_size_tokens = [16, 64]\nreplicas = [1, 2]\n"


@pytest.fixture(scope="module")
def ray_address():
    ctx = ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR",
                   log_to_driver=False)
    try:
        yield ctx.address_info["gcs_address"]
    finally:
        ray.shutdown()


def test_sweep_on_ray_matches_local_run(tmp_path, ray_address):
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "ray"
    cmd = [sys.executable, "-m", "nanosim.cli", "sweep", str(spec), "--out", str(out),
           "--ray", ray_address, "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "4 ok, 0 failed" in done.stdout and "on 2 slots" in done.stdout
    ray_store = ResultStore(out)
    assert ray_store.points()["worker"].str.contains(":").all()
    _, local = run_text(tmp_path, SPEC, "local")
    pd.testing.assert_frame_equal(comparable(ray_store), comparable(local))
