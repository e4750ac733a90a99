"""The profile cost model's decode price at one CUDA-graph size on one decode grid, as a
precomputed table: the fitted roofline's fixed seconds and decode-attention coefficients
at that size, and the grid's row interpolated at that size (Grid2D._row). A simulation
prices a handful of graph sizes tens of thousands of times each (every decode step, every
fast-forwarded run), so the per-call work is the context lookup alone.

Every price is the same float operations, in the same order, as the general form
(uniform_decode_s: fixed + RooflineCostModel._decode_attn_s(b, b * c), times Grid2D.at or
at_y), so the results are equal bit for bit (tests/sim/test_decode_price.py checks it).
"""
from __future__ import annotations

from bisect import bisect_right

import numpy as np

from nanosim.sim.costmodel import RooflineCostModel
from nanosim.sim.grid import Grid2D


def uniform_decode_s(rf: RooflineCostModel, grid: Grid2D, b: int, c):
    """(seconds, inside) of a decode step of ``b`` rows that each attend ``c`` tokens (float,
    or a float ndarray), the general form: the fitted roofline ``rf`` times the measured
    ratio on ``grid``."""
    base = rf._fixed_s(0, 0, 0.0, 0, b, 0) + rf._decode_attn_s(b, b * c)
    r, inside = grid.at_y(b, c) if isinstance(c, np.ndarray) else grid.at(b, c)
    return base * r, inside


class DecodePricer:
    """Decode steps of graph size ``b`` priced on ``grid`` with the fitted ``rf``."""

    def __init__(self, grid: Grid2D, rf: RooflineCostModel, b: int, fixed_s: float) -> None:
        self.b, self.fixed = b, fixed_s
        kvb = rf.kv_bytes_per_token_per_rank
        # the attention term's coefficients, as _decode_attn_s multiplies them
        self.kvb, self.afp, self.ua, self.ub = kvb, rf._attn_flops_pair, rf._u_attn, rf._u_bytes
        self.psb = b * (kvb + rf._qo_bytes_tok)
        self.overlap = rf.overlap
        # max(compute, memory) is memory for every context >= 0 when memory's slope beats
        # compute's by more than the rounding of either product (3 and 2 roundings of
        # 2**-53; 1e-9 is far beyond them): then np.maximum always returns the memory term
        self.mem_only = self.overlap and kvb * self.ub > self.afp * self.ua * (1.0 + 1e-9)
        self.grid, self.grid_row = grid, grid.row_at(b)
        self.row, self.ok, self.ys = self.grid_row.row, self.grid_row.ok, grid.ys

    # ---- one step ----------------------------------------------------------------------
    def scalar(self, c: float) -> tuple[float, bool]:
        """(seconds, inside the grid) of one decode step whose rows attend ``c`` tokens each
        (float): as uniform_decode_s with Grid2D.at."""
        ctx = self.b * c
        cc = ctx * self.afp * self.ua
        m = (ctx * self.kvb + self.psb) * self.ub
        attn = (cc if cc > m else m) if self.overlap else cc + m
        r, inside = self.grid_row.at(c)
        return (self.fixed + attn) * r, inside

    # ---- a run of steps ----------------------------------------------------------------
    def vector(self, c: np.ndarray) -> tuple[np.ndarray, int]:
        """(seconds, how many inside the grid) of decode steps whose rows attend c[k]
        tokens each: as uniform_decode_s with Grid2D.at_y. ``c``: a float ndarray (len
        >= 1) of a run's contexts, non-decreasing but for a few roundings (each c[k] is a
        monotone formula of the step index computed in a few float operations, so
        c[0] (1 - 1e-12) <= c[k] <= c[-1] (1 + 1e-12)). When that range lies in one cell
        of the grid (contexts grow a few tokens a step), the cell is looked up once."""
        # in place where a new array is not needed (IEEE + and * commute exactly)
        ctx = self.b * c
        m = ctx * self.kvb
        m += self.psb
        m *= self.ub
        if not self.mem_only:
            cc = ctx * self.afp * self.ua
            m = np.maximum(cc, m) if self.overlap else cc + m
        base = m
        base += self.fixed
        ys, n = self.ys, len(self.ys)
        lo, hi = float(c[0]) * (1.0 - 1e-12), float(c[-1]) * (1.0 + 1e-12)
        if n > 1 and ys[0] <= lo and hi <= ys[-1]:
            j = min(bisect_right(ys, lo) - 1, n - 2)
            if j == min(bisect_right(ys, hi) - 1, n - 2):  # one cell: no clamp, no gather
                y0 = ys[j]
                ty = c - y0
                ty /= ys[j + 1] - y0
                r = 1.0 - ty
                r *= self.row[j]
                ty *= self.row[j + 1]
                r += ty
                r *= base
                return r, len(c) if self.ok[j] else 0
        r, inside = self.grid.at_y(float(self.b), c)
        return base * r, int(np.count_nonzero(inside))
