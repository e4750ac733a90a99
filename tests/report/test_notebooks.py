"""The notebooks in analysis/ execute top to bottom on a small sweep (nbclient)."""
from pathlib import Path

import pytest

from tests.sweep.helpers import REPO

nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[test]' (nbformat)")
nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[test]' (nbclient)")
pytest.importorskip("ipykernel", reason="pip install -e '.[test]' (ipykernel)")

NOTEBOOKS = sorted((REPO / "analysis").glob("*.ipynb"))


def test_notebooks_are_shipped_without_outputs():
    assert {p.stem for p in NOTEBOOKS} >= {"sweep_overview", "kv_and_batching",
                                           "capacity_planning"}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path: Path, sweep_store, monkeypatch):
    monkeypatch.setenv("NANOSIM_SWEEP", str(sweep_store.root))  # the kernel inherits it
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError with the cell and traceback
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) >= 2, f"{path.name} drew {len(figures)} plotly figures"
