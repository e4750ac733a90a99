"""Interpolation over a profile's measured grid: bilinear ratios on a (possibly incomplete)
rectangular grid, and weights interpolated in 1/rows (profile.py uses both)."""
from __future__ import annotations

import math
from bisect import bisect_right

import numpy as np

from nanosim.core.batch import StepShape
from nanosim.sim.costmodel import RooflineCostModel


class Grid2D:
    """Bilinear interpolation of values at measured nodes of a (possibly incomplete)
    rectangular grid; coordinates are clamped to the grid outside it.

    The scalar ``at`` and vector ``at_y`` paths do the same float operations in the same
    order, so they agree bit for bit (decode_run_s relies on it).
    """

    def __init__(self, xs: list[float], ys: list[float], values: dict[tuple[float, float], float]):
        self.xs, self.ys = xs, ys
        self.ys_a = np.array(ys, dtype=np.float64)
        nx, ny = len(xs), len(ys)
        measured = np.zeros((nx, ny), dtype=bool)
        V = np.zeros((nx, ny))
        for (x, y), v in values.items():
            i, j = xs.index(x), ys.index(y)
            measured[i, j], V[i, j] = True, v
        # Unmeasured nodes take the value of the nearest measured node (index distance), so
        # interpolation is defined everywhere; cells touching them count as not inside.
        mi, mj = np.nonzero(measured)
        for i in range(nx):
            for j in range(ny):
                if not measured[i, j]:
                    k = int(np.argmin(np.abs(mi - i) + np.abs(mj - j)))
                    V[i, j] = V[mi[k], mj[k]]
        self.V, self.Vl = V, V.tolist()
        ci, cj = max(nx - 1, 1), max(ny - 1, 1)
        ok = np.zeros((ci, cj), dtype=bool)
        for i in range(ci):
            for j in range(cj):
                i1, j1 = min(i + 1, nx - 1), min(j + 1, ny - 1)
                ok[i, j] = measured[i, j] & measured[i1, j] & measured[i, j1] & measured[i1, j1]
        self.cell_ok, self.cell_okl = ok, ok.tolist()
        self._rows: dict[float, tuple[np.ndarray, np.ndarray]] = {}  # at_y's per-x rows
        self._row_at: dict[float, GridRow] = {}  # row_at's per-x rows
        self._memo: dict[tuple[float, float], tuple[float, bool]] = {}  # at's results

    @staticmethod
    def _locate(axis: list[float], v: float) -> tuple[int, int, float]:
        vc = min(max(v, axis[0]), axis[-1])
        n = len(axis)
        if n == 1:
            return 0, 0, 0.0
        i = min(max(bisect_right(axis, vc) - 1, 0), n - 2)
        return i, i + 1, (vc - axis[i]) / (axis[i + 1] - axis[i])

    def at(self, x: float, y: float) -> tuple[float, bool]:
        key = (x, y)
        hit = self._memo.get(key)  # steps repeat (bucket, cached) and (rows, context) pairs
        if hit is not None:
            return hit
        i, i1, tx = self._locate(self.xs, x)
        j, j1, ty = self._locate(self.ys, y)
        V = self.Vl
        r = ((V[i][j] * (1.0 - tx) + V[i1][j] * tx) * (1.0 - ty)
             + (V[i][j1] * (1.0 - tx) + V[i1][j1] * tx) * ty)
        inside = (self.xs[0] <= x <= self.xs[-1] and self.ys[0] <= y <= self.ys[-1]
                  and self.cell_okl[i][j])
        if len(self._memo) >= 1 << 16:  # bounded: contexts are many
            self._memo.clear()
        self._memo[key] = (r, inside)
        return r, inside

    def at_y(self, x: float, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values at (x, y[k]) for a vector y (x fixed). The x interpolation of a row is
        done once per x (_row: the same products and sums ``at`` does for each node pair)."""
        row, ok_row = self._row(x)
        ys, ny = self.ys_a, len(self.ys)
        yc = np.minimum(np.maximum(y, ys[0]), ys[-1])
        if ny == 1:
            j = j1 = np.zeros(len(y), dtype=np.intp)
            ty = np.zeros(len(y))
        else:  # yc >= ys[0], so the search never lands left of the grid
            j = np.minimum(np.searchsorted(ys, yc, side="right") - 1, ny - 2)
            j1 = j + 1
            lo = ys[j]
            ty = (yc - lo) / (ys[j1] - lo)
        r = row[j] * (1.0 - ty) + row[j1] * ty
        inside = (y >= ys[0]) & (y <= ys[-1]) & ok_row[j]
        return r, inside

    def _row(self, x: float) -> tuple[np.ndarray, np.ndarray]:
        """(values interpolated along x at every y node, cells inside at x), cached per x
        (a simulation asks for a handful of graph sizes, thousands of times each)."""
        hit = self._rows.get(x)
        if hit is None:
            i, i1, tx = self._locate(self.xs, x)
            row = self.V[i] * (1.0 - tx) + self.V[i1] * tx
            x_in = self.xs[0] <= x <= self.xs[-1]
            hit = self._rows[x] = (row, self.cell_ok[i] & x_in)
        return hit


    def row_at(self, x: float) -> "GridRow":
        """The grid at a fixed x, for scalar lookups along y (built once per x)."""
        hit = self._row_at.get(x)
        if hit is None:
            hit = self._row_at[x] = GridRow(self, x)
        return hit


class GridRow:
    """A Grid2D at one x: ``at(y)`` equals ``Grid2D.at(x, y)`` bit for bit (the row is the
    x interpolation ``at`` does per node pair, done once), without a memo key per call."""

    def __init__(self, grid: Grid2D, x: float) -> None:
        row, ok_row = grid._row(x)
        self.row, self.ok = row.tolist(), ok_row.tolist()
        self.ys = grid.ys

    def at(self, y: float) -> tuple[float, bool]:
        ys, row = self.ys, self.row
        n = len(ys)
        if n == 1:
            j = j1 = 0
            ty = 0.0
        else:
            # min(max(y, ys[0]), ys[-1]) and min(max(i, 0), n - 2) as conditionals (the
            # same picks, ties included; no NaN here), without four builtin calls a lookup
            lo, hi = ys[0], ys[-1]
            vc = y if y >= lo else lo
            vc = hi if hi < vc else vc
            j = bisect_right(ys, vc) - 1
            j = 0 if j < 0 else (n - 2 if j > n - 2 else j)
            j1 = j + 1
            ty = (vc - ys[j]) / (ys[j1] - ys[j])
        return row[j] * (1.0 - ty) + row[j1] * ty, ys[0] <= y <= ys[-1] and self.ok[j]


def ratio_grid(keys_durations: list[tuple[tuple[int, int], float, StepShape]],
                fitted: RooflineCostModel) -> Grid2D | None:
    """Grid of measured / fitted ratios; duplicate nodes use the median duration."""
    if not keys_durations:
        return None
    by_node: dict[tuple[float, float], list[float]] = {}
    shapes: dict[tuple[float, float], StepShape] = {}
    for (x, y), dur, shape in keys_durations:
        k = (float(x), float(y))
        by_node.setdefault(k, []).append(dur)
        shapes[k] = shape
    values = {k: median(v) / fitted.step_time_s(shapes[k]) for k, v in by_node.items()}
    xs = sorted({k[0] for k in values})
    ys = sorted({k[1] for k in values})
    return Grid2D(xs, ys, values)


def median(values: list[float]) -> float:
    """float(np.median(values)) for finite numbers (the middle one, or the mean of the two
    middle ones as np.mean sums and halves them), without np.median's import of numpy.ma
    (~12 ms at start-up)."""
    v = sorted(values)
    n, k = len(v), len(values) // 2
    if n == 0 or not all(map(math.isfinite, v)):
        return float(np.median(values))
    return float(v[k]) if n % 2 else float((v[k - 1] + v[k]) / 2)


class InverseWeights:
    """Weight at row count n, linear in 1/n between measured counts ``xs`` (ascending) and
    clamped outside; 0 when nothing was measured. Where bytes set a step, the longest
    row's weight is (rows at the crossover) / n, which this reproduces exactly; where
    latency does, it is flat at 1. The 1/n axis is built once (priced every step)."""

    def __init__(self, xs: list[float], ws: list[float]) -> None:
        self.xs, self.ws = list(xs), list(ws)
        self._inv = np.array([1.0 / x for x in reversed(self.xs)])
        self._w = np.array(list(reversed(self.ws)))
        self._memo: dict[float, float] = {}  # n -> weight (a run asks for a few row counts)

    def __call__(self, n: float) -> float:
        w = self._memo.get(n)
        if w is None:
            w = self._memo[n] = float(np.interp(1.0 / n, self._inv, self._w)) if self.xs else 0.0
        return w
