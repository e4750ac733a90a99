"""`nanosim report`: one self-contained page, rendered by headless Chromium without
script errors, every figure drawn as plotly SVG; a screenshot is kept."""
import re
import shutil
import subprocess

import pytest

from nanosim.cli import main
from nanosim.report.html import ERROR_SINK
from tests.report.conftest import SCREENSHOTS

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium; .ci/run does)")
FIGURES = ("ttft-cdf", "tpot-cdf", "e2e-cdf", "throughput-latency", "pareto", "timeline",
           "heatmap", "goodput", "capacity")


def chromium(page, tmp_path, *args) -> subprocess.CompletedProcess:
    """Headless, offline, fresh profile; virtual time lets every script finish."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000", *args,
           page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report_page(sweep_store):
    assert main(["report", str(sweep_store.root)]) == 0
    return sweep_store.root / "report.html"


def test_report_is_self_contained(report_page):
    html = report_page.read_text()
    assert not re.search(r"<(script|link)[^>]+(src|href)=[\"']?(https?:)?//", html)
    assert "Plotly.newPlot" in html and len(html) > 3_000_000  # plotly.js inlined
    for name in FIGURES:
        assert f'id="fig-{name}"' in html, name
    assert "fewest GPUs that meet it: <b>" in html and "<h2>points</h2>" in html


def test_failed_points_are_listed(tmp_path):
    from tests.sweep.helpers import TINY, run_text

    _, store = run_text(tmp_path, TINY + "[grid]\nsample_fraction = [0.5, 0.001]\n")
    assert main(["report", str(store.root), "--out", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "failed points (1)" in html and "the workload is empty" in html


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]


@needs_chromium
def test_report_renders_in_headless_chromium(report_page, tmp_path, request):
    run = chromium(report_page, tmp_path / "dom", "--dump-dom")
    dom = run.stdout
    assert "<body" in dom, run.stderr[-2000:]
    assert re.search(r'<pre id="js-errors">\s*</pre>', dom), "script errors in the page"
    assert not console_errors(run.stderr), console_errors(run.stderr)
    for name in FIGURES:  # each figure div holds plotly's SVG with its traces drawn
        chunk = dom.split(f'id="fig-{name}"', 1)[1].split('class="fig"', 1)[0]
        drawn = chunk.count('class="trace scatter') + chunk.count('<g class="hm"')
        assert 'class="main-svg"' in chunk and drawn >= 1, name
    shot = tmp_path / "report.png"
    run = chromium(report_page, tmp_path / "shot", "--hide-scrollbars",
                   "--window-size=1280,5200", f"--screenshot={shot}")
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", run.stderr[-2000:]
    assert shot.stat().st_size > 50_000  # figures drawn, not a blank page
    request.config.stash[SCREENSHOTS].append(str(shot))
    print(f"report screenshot: {shot}")


@needs_chromium
def test_the_error_check_catches_a_broken_script(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(f"<html><head>{ERROR_SINK}</head><body><pre id=\"js-errors\"></pre>"
                    "<script>Plotly.newPlot('x', []);</script></body></html>")
    dom = chromium(page, tmp_path, "--dump-dom").stdout
    assert "Plotly is not defined" in dom


def test_a_sweep_whose_points_all_failed_still_reports(tmp_path):
    from tests.sweep.helpers import TINY, run_text

    _, store = run_text(tmp_path, TINY + "sample_fraction = 0.001\n")
    assert main(["report", str(store.root)]) == 0
    assert "failed points (1)" in (store.root / "report.html").read_text()
