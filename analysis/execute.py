"""Make the committed outputs of analysis/*.ipynb from the shipped experiments' results.

    nanosim trace download azure2023-conv-20min     # or NANOSIM_TRACE_DIR=<a folder with it>
    pip install kaleido                             # PNG copies of the figures (needs Chromium)
    python analysis/execute.py                      # from the repository root

Runs (or resumes) the sweep each notebook reads into out/, then executes every notebook
in place with NANOSIM_FIGURE_PNG=1, so each plotly figure also carries a PNG (shown where
the notebook is only viewed, e.g. on GitHub). The tests execute the notebooks too, on a
small sweep and in memory: they never write these files.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbclient
import nbformat

REPO = Path(__file__).resolve().parents[1]
# notebook -> the experiment whose results it shows (its default NANOSIM_SWEEP)
NOTEBOOKS = {"sweep_overview": ("experiments/block_size.toml", "out/block-size"),
             "kv_and_batching": ("experiments/batch_limits.toml", "out/batch-limits"),
             "capacity_planning": ("experiments/capacity_planning.toml", "out/capacity-planning")}


def main(names: list[str]) -> int:
    for name in names or NOTEBOOKS:
        spec, out = NOTEBOOKS[name]
        subprocess.run([sys.executable, "-m", "nanosim", "sweep", spec, "--out", out],
                       cwd=REPO, check=True)
        path = REPO / "analysis" / f"{name}.ipynb"
        nb = nbformat.read(path, as_version=4)
        os.environ["NANOSIM_FIGURE_PNG"] = "1"
        os.environ.pop("NANOSIM_SWEEP", None)  # the notebook's default: ../out/<experiment>
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", record_timing=False,
                                resources={"metadata": {"path": str(path.parent)}}).execute()
        nbformat.write(nb, path)
        pngs = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)
        print(f"{path.relative_to(REPO)}: executed, {pngs} figures with a PNG copy")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
