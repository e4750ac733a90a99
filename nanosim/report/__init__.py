"""Analysis pages and figures: tables.py (SLO goodput, Pareto sets, fewest GPUs),
plots.py (plotly figures read from a sweep's results store), html.py (`nanosim report`),
calibration.py (the `nanosim validate` page)."""
