"""Fixtures for every test folder: the shared public trace cuts as a pre-filled trace cache."""
from pathlib import Path

import pytest

SHARED_TRACES = (Path(__file__).resolve().parents[1] / ".." / "shared" / "traces").resolve()


@pytest.fixture
def trace_cache(monkeypatch) -> Path:
    """NANOSIM_TRACE_DIR -> ../shared/traces (the registered cuts, read-only), or skip."""
    if not SHARED_TRACES.is_dir():
        pytest.skip(f"public trace samples not found at {SHARED_TRACES} (expected next to the "
                    "repo as ../shared/traces)")
    monkeypatch.setenv("NANOSIM_TRACE_DIR", str(SHARED_TRACES))
    return SHARED_TRACES
