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

import math
from bisect import bisect_right
from operator import mul

import numpy as np

from nanosim.core.batch import PACKED, STEADY
from nanosim.sim.costmodel import RooflineCostModel
from nanosim.sim.grid import Grid2D

# Runs of up to this many steps are priced in Python floats (DecodePricer.run, ~0.4 us a
# step); longer ones by numpy (vector, ~12 us a call whatever its length, on the dev VM),
# unless the next event cuts them within about this many steps
PYTHON_RUN_STEPS = 24


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
        # Python floats (exact conversions of the fit's numpy scalars): the same IEEE products
        # and sums, at a fraction of numpy scalar arithmetic's cost per operation
        self.b, self.fixed = b, float(fixed_s)
        kvb = float(rf.kv_bytes_per_token_per_rank)
        # the attention term's coefficients, as _decode_attn_s multiplies them
        self.kvb, self.afp = kvb, float(rf._attn_flops_pair)
        self.ua, self.ub = float(rf._u_attn), float(rf._u_bytes)
        self.psb = b * (kvb + float(rf._qo_bytes_tok))
        self.overlap = rf.overlap
        # max(compute, memory) is memory for every context >= 0 when memory's slope beats
        # compute's by more than the rounding of either product (3 and 2 roundings of
        # 2**-53; 1e-9 is far beyond them): then np.maximum always returns the memory term
        self.mem_only = bool(self.overlap and kvb * self.ub > self.afp * self.ua * (1.0 + 1e-9))
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

    # ---- a short run, in Python floats -------------------------------------------------
    def run(self, ctx0: int, ns: int, m: int, max0: int, a: float, w: float,
            first: "DecodePricer | None" = None, factors: list[float] | None = None,
            start_s: float = 0.0, until_s: float = math.inf) -> tuple[list[float], int] | None:
        """vector() of the m contexts run_context(k, ...) gives (k = 0..m-1), as a list of
        Python floats: the same float operations in the same order (np.maximum(p, q) is
        ``p if p >= q else q``; no NaN here), so the same values, bit for bit. For a run of
        a few steps this costs less than numpy's per-call overhead on small arrays.
        None unless every context lies in one cell of the grid (vector()'s no-gather case,
        the common one); then the caller takes vector(). ``first``: step 0's price is
        first.scalar's (another decode path's grid); ``factors``: each step's price times
        factors[k] (one multiplication, as the caller's would be). The list stops after the
        first step that starts at or after ``until_s``, the steps' starts summed left to
        right from ``start_s`` (the caller's sums): the steps after it are not priced. The
        count of steps inside the grid is the whole run's (m or 0)."""
        ys, n = self.ys, len(self.ys)
        lo = run_context(0, ctx0, ns, self.b, max0, a, w) * (1.0 - 1e-12)
        hi = run_context(m - 1, ctx0, ns, self.b, max0, a, w) * (1.0 + 1e-12)
        if not (n > 1 and ys[0] <= lo and hi <= ys[-1]):
            return None
        j = min(bisect_right(ys, lo) - 1, n - 2)
        if j != min(bisect_right(ys, hi) - 1, n - 2):
            return None
        b, kvb, psb, ub, afp, ua, fixed = self.b, self.kvb, self.psb, self.ub, self.afp, self.ua, self.fixed
        mem_only, overlap = self.mem_only, self.overlap
        y0, r0, r1 = ys[j], self.row[j], self.row[j + 1]
        dy = ys[j + 1] - y0
        f = factors if factors is not None else [1.0] * m  # x * 1.0 is x, bit for bit
        out, t, k0 = [], start_s, 0
        if first is not None:  # step 0 on another path's grid
            p = first.scalar(run_context(0, ctx0, ns, b, max0, a, w))[0] * f[0]
            out.append(p)
            if t >= until_s or m == 1:
                return out, (m if self.ok[j] else 0)
            t, k0 = t + p, 1
        if mem_only and max0:  # the common case (H100 profiles): the loop below, fewer branches
            for k in range(k0, m):
                c = (ctx0 + k * ns) / b
                lg = float(max0 + k)
                d = lg - c
                c = c + a * (d if d >= 0.0 else 0.0)
                d = w * lg
                c = c if c >= d else d
                ty = (c - y0) / dy
                p = ((1.0 - ty) * r0 + ty * r1) * (((b * c) * kvb + psb) * ub + fixed) * f[k]
                out.append(p)
                if t >= until_s:  # step k starts at t: the first one at or after until_s
                    break
                t += p
            return out, (m if self.ok[j] else 0)
        for k in range(k0, m):
            c = (ctx0 + k * ns) / b  # int / int: one rounding, as numpy's int64 / b
            if max0:  # run_context, inlined
                lg = float(max0 + k)
                d = lg - c
                c = c + a * (d if d >= 0.0 else 0.0)
                d = w * lg
                c = c if c >= d else d
            ctx = b * c
            mm = (ctx * kvb + psb) * ub
            if not mem_only:
                cc = ctx * afp * ua
                mm = (cc if cc >= mm else mm) if overlap else cc + mm
            ty = (c - y0) / dy
            p = ((1.0 - ty) * r0 + ty * r1) * (mm + fixed) * f[k]
            out.append(p)
            if t >= until_s:
                break
            t += p
        return out, (m if self.ok[j] else 0)


def run_context(k: int, ctx0: int, ns: int, b: int, max0: int, a: float, w: float) -> float:
    """The context per row ProfileCostModel.decode_run_s prices step k of a run at: the summed
    context ctx0 + k ns over the graph size b, or with the longest row's context max0 + k
    known, the equivalent context max(c + a max(longest - c, 0), w longest) (tail weights a,
    w), in numpy's float operations on the run's arrays."""
    c = (ctx0 + k * ns) / b
    if max0:
        lg = float(max0 + k)
        d = lg - c
        c = c + a * (d if d >= 0.0 else 0.0)
        d = w * lg
        c = c if c >= d else d
    return c


def decode_run_list(cm, num_seqs: int, context_tokens: int, num_steps: int,
                    max_context_tokens: int = 0, first_path: str = PACKED,
                    factors: list[float] | None = None, start_s: float = 0.0,
                    until_s: float = math.inf) -> list[float]:
    """ProfileCostModel.decode_run_list: decode_run_s's values as a list of floats, counters
    included (the whole run's), each times factors[k] when given. A run of up to
    PYTHON_RUN_STEPS steps, or one that ``until_s`` cuts within about that many, whose
    contexts stay in one cell of the grid (most runs: contexts grow a few tokens a step)
    is priced by DecodePricer.run's Python floats and may stop after the first step that
    starts at or after until_s (starts summed from start_s); the rest by decode_run_s, whole."""
    if 0 < num_steps and num_seqs > 0 and cm._decode is not None:
        b = cm._graph_sizes.get(num_seqs) or cm._graph_size(num_seqs)
        a, w = (cm._tails.get(b) or cm._tail_pair(b)) if max_context_tokens else (0.0, 0.0)
        pricer = cm._pricers[STEADY].get(b) or cm._pricer(STEADY, b)
        short = num_steps <= PYTHON_RUN_STEPS
        if not short and until_s < math.inf:  # steps before until_s, by the first step's price
            p = pricer.scalar(run_context(0, context_tokens, num_seqs, b, max_context_tokens, a, w))[0]
            short = p > 0.0 and until_s - start_s < PYTHON_RUN_STEPS * p
        if short:
            first = (None if cm._path_grids[first_path] is cm._decode  # decode_run_s's first step
                     else cm._pricers[first_path].get(b) or cm._pricer(first_path, b))
            got = pricer.run(context_tokens, num_seqs, num_steps, max_context_tokens, a, w,
                             first, factors, start_s, until_s)
            if got is not None:
                t, inside = got
                cm.total_steps += num_steps
                cm.extrapolated_steps += num_steps - inside
                return t
    t = cm.decode_run_s(num_seqs, context_tokens, num_steps, max_context_tokens, first_path).tolist()
    return t if factors is None else list(map(mul, t, factors))  # x * f, step by step
