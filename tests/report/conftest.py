"""One small sweep (4 points: block size x replicas, with an SLO) for the report tests."""
import pytest

from tests.sweep.helpers import REPORT_SPEC, run_text

SCREENSHOTS = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def sweep_store(tmp_path_factory):
    rep, store = run_text(tmp_path_factory.mktemp("report-sweep"), REPORT_SPEC)
    assert rep.ok == 4
    return store


def pytest_configure(config):
    config.stash[SCREENSHOTS] = []


def pytest_terminal_summary(terminalreporter, config):
    for path in config.stash.get(SCREENSHOTS, []):
        terminalreporter.write_line(f"report screenshot (headless Chromium): {path}")
