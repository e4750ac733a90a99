"""Run tables as Arrow tables and Parquet files without pandas (its import alone costs a
simulate run ~0.25 s).

A table is a dict {column: int64/float64 numpy array, or a list of str}. The files are the
ones ``DataFrame.to_parquet(path, index=False)`` writes for the same columns, byte for byte:
the same Arrow types and the same ``pandas`` schema metadata, so pandas reads them back
with the same dtypes (tests/cli/test_golden.py compares the bytes).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _pandas_version() -> str:
    """The installed pandas' version, as ``importlib.metadata.version("pandas")`` reads it:
    the ``Version:`` header of the METADATA in the pandas-*.dist-info beside the package,
    without importing importlib.metadata and its email parser (~10 ms of a simulate run) or
    pandas. Anything unusual (no or several dist-infos, no header): importlib.metadata."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("pandas")
    site = os.path.dirname(os.path.dirname(spec.origin)) if spec is not None and spec.origin else None
    infos = [e for e in os.listdir(site) if e.startswith("pandas-") and e.endswith(".dist-info")] if site else []
    if len(infos) == 1:
        with open(os.path.join(site, infos[0], "METADATA"), encoding="utf-8") as f:
            for line in f:
                if line.startswith("Version:"):
                    return line[len("Version:"):].strip()
                if not line.strip():  # the headers end at the first blank line
                    break
    from importlib.metadata import version

    return version("pandas")


def to_arrow(columns: dict):
    """The Arrow table of a column dict, with the metadata pandas would attach."""
    import pyarrow as pa

    pandas_version = _pandas_version()
    new_str = int(pandas_version.split(".")[0]) >= 3  # pandas 3: str dtype -> large_string
    arrays, meta = [], []
    for name, v in columns.items():
        if isinstance(v, np.ndarray):
            v = np.ascontiguousarray(v)
            valid = None  # pandas writes NaN as null (Arrow's from_pandas conversion)
            if v.dtype.kind == "f" and np.isnan(v).any():
                valid = pa.py_buffer(np.packbits(~np.isnan(v), bitorder="little"))
            arrays.append(pa.Array.from_buffers(pa.from_numpy_dtype(v.dtype), len(v),
                                                [valid, pa.py_buffer(v)]))
            kind = v.dtype.name
            meta.append((name, kind, kind))
        else:  # a str column
            arrays.append(_strings(pa, v, new_str))
            meta.append((name, "object", "str") if new_str else (name, "unicode", "object"))
    pandas_meta = {
        "index_columns": [], "column_indexes": [],
        "columns": [{"name": n, "field_name": n, "pandas_type": pt, "numpy_type": nt,
                     "metadata": None} for n, pt, nt in meta],
        "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": pandas_version}
    schema = pa.schema([pa.field(n, a.type) for n, a in zip(columns, arrays)],
                       metadata={b"pandas": json.dumps(pandas_meta).encode()})
    return pa.Table.from_arrays(arrays, schema=schema)


def _strings(pa, values: list[str], large: bool):
    """A (large_)string array from its offsets and UTF-8 bytes. (pa.array on a list or an
    ndarray would import pandas: pyarrow asks whether the object is a pandas one.)"""
    enc = [s.encode() for s in values]
    offsets = np.zeros(len(enc) + 1, dtype=np.int64 if large else np.int32)
    np.cumsum([len(e) for e in enc], out=offsets[1:])
    return pa.Array.from_buffers(pa.large_string() if large else pa.string(), len(enc),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(enc))])


def write_parquet(columns: dict, path: str | Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(to_arrow(columns), str(path), compression="snappy")
