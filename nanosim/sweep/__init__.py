"""What-if sweeps: TOML specs -> points run in a process pool or on Ray -> a results store.

    spec.py       parse and validate experiments/*.toml into Points (point.py)
    runner.py     run the points missing from the store, with a progress bar
    executors.py  local process pool, inline, Ray
    worker.py     one point: workload -> run_simulation -> tables + summary row
    store.py      the Parquet results store (write once per point, atomic; readers)
"""
from nanosim.sweep.point import Point
from nanosim.sweep.runner import SweepReport, run_sweep
from nanosim.sweep.spec import Slo, Spec, SpecError, load_spec
from nanosim.sweep.store import ResultStore

__all__ = ["Point", "ResultStore", "Slo", "Spec", "SpecError", "SweepReport", "load_spec",
           "run_sweep"]
