"""The notebooks in analysis/: shipped with their outputs (figures as PNG too, for viewers
that run no JavaScript), and executing top to bottom on a small sweep (nbclient, in
memory: the committed files are never rewritten)."""
import hashlib
import re
from pathlib import Path

import pytest

from tests.sweep.helpers import REPO

nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[test]' (nbformat)")
nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[test]' (nbclient)")
pytest.importorskip("ipykernel", reason="pip install -e '.[test]' (ipykernel)")

NOTEBOOKS = sorted((REPO / "analysis").glob("*.ipynb"))


def outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_shipped_with_its_figures(path: Path):
    nb = nbformat.read(path, as_version=4)
    intro = nb.cells[0]
    assert intro.cell_type == "markdown" and intro.source.startswith("# ")
    assert "**Question.**" in intro.source and "**Figures.**" in intro.source
    assert all(c.cell_type == "markdown" or c.execution_count for c in nb.cells)  # all ran
    outs = outputs(nb)
    assert not [o for o in outs if o.output_type == "error"]
    pngs = [o for o in outs if "image/png" in o.get("data", {})]
    assert len(pngs) >= 2 and all("application/vnd.plotly.v1+json" in o.data for o in pngs)
    text = nbformat.writes(nb)
    assert str(REPO) not in text and not re.search(r"/tmp/|/home/|/root/", text)  # no local paths
    assert not re.search(r"(?<!\d)0 points", text) and "'failed'" not in text  # made from a complete sweep


def test_every_notebook_is_covered():
    assert {p.stem for p in NOTEBOOKS} >= {"sweep_overview", "kv_and_batching",
                                           "capacity_planning"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path: Path, sweep_store, monkeypatch):
    monkeypatch.setenv("NANOSIM_SWEEP", str(sweep_store.root))  # the kernel inherits it
    monkeypatch.delenv("NANOSIM_FIGURE_PNG", raising=False)  # interactive figures only
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError with the cell and traceback
    outs = outputs(nb)
    assert not [o for o in outs if o.output_type == "error"]
    figures = [o for o in outs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) >= 2, f"{path.name} drew {len(figures)} plotly figures"
    assert not [o for o in figures if "image/png" in o.data]  # no PNG (no Chromium) needed
    assert "tiny" in str(outs[0].get("text", ""))  # it read the small sweep
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # the file is untouched
