"""Shared fixtures: the public trace cuts live in <repo>/../shared/traces (never copied here)."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_TRACES = (REPO / ".." / "shared" / "traces").resolve()


@pytest.fixture(scope="session")
def shared_traces() -> Path:
    if not SHARED_TRACES.is_dir():
        pytest.skip(f"public trace samples not found at {SHARED_TRACES} (expected next to the "
                    "repo as ../shared/traces)")
    return SHARED_TRACES


@pytest.fixture
def write(tmp_path):
    """write(name, text) -> path of a new file in tmp_path."""
    def _write(name: str, text: str) -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p
    return _write
