"""Profile-driven cost model: bilinear interpolation of measured/fitted ratios over the
grid of a profile (schema in profile_schema.py), fitted roofline terms outside it, and
make_cost_model(), which picks a matching profile or falls back to the roofline.

A step is priced as the runner executes it:
* decode-only: a uniform batch of its CUDA-graph size b at the equivalent context
  max(mean + a(b) * (longest - mean), w(b) * longest), mean = sum / b, where a (how much
  a spread of contexts costs a loaded split-KV kernel) and w (how long a lone long row
  holds it) are fitted to the profile's non-uniform points (skewed, half-long, and padded
  half-long batches: fewer rows than their graph size); on the runner path the shape names
  (StepShape.decode_path: packed, row-dropping edit, or steady edit), which the scheduler
  decided from the previous step, so a price depends on the shape alone;
* prefill chunks (one or several): as a prefill-only step of their token bucket, plus the
  decode-rows grid (what decode rows added in the profile's mixed points);
* swaps: the fitted roofline.
"""
from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import replace

import numpy as np

from nanosim.config import ConfigError, GpuSpec, ModelSpec, get_gpu
from nanosim.core.batch import PACKED, STEADY, SUBSET, StepShape
from nanosim.sim.costmodel import RooflineCostModel
from nanosim.sim.decode_price import DecodePricer, decode_run_list
from nanosim.sim.fit import FitResult, fit_roofline
from nanosim.sim.grid import Grid2D, InverseWeights, median, ratio_grid
from nanosim.sim.profile_read import load_profile, profile_from_dict  # noqa: F401  (re-exported)
from nanosim.sim.profile_schema import (  # noqa: F401  (re-exported: the profile API in one place)
    DEFAULT_DECODE_BATCH_SIZES, DEFAULT_DECODE_CONTEXTS, DEFAULT_PREFILL_CACHED,
    DEFAULT_PREFILL_CHUNKS, DEVICE_KEYS, DTYPE_BYTES, MIXED_FIELDS, MODEL_FIELDS, SCHEMA_VERSION, DecodePoint,
    MixedPoint, PrefillPoint, Profile, ProfileError, build_profile, decode_shape, device_profile,
    prefill_shape, profile_to_dict, save_profile)

# ---------------------------------------------------------------------------------------
# Cost model
# ---------------------------------------------------------------------------------------
def check_profile_matches(profile: Profile, model: ModelSpec, gpu: GpuSpec, tp: int) -> None:
    """Raise ProfileError unless ``profile`` was measured for these shapes, this GPU and tp.
    Model names may differ (a local checkpoint of a preset's shapes); shapes may not."""
    src, pm = profile.source, profile.model
    diffs = [f"{f} {getattr(pm, f)} != {getattr(model, f)}" for f in MODEL_FIELDS
             if getattr(pm, f) != getattr(model, f)]
    if diffs:
        raise ProfileError(f"profile {src} was measured for model {pm.name}, not {model.name} "
                           f"({'; '.join(diffs)})")
    try:
        pg = get_gpu(profile.gpu_name).name
    except ConfigError:
        pg = profile.gpu_name.lower()
    if pg != gpu.name:
        raise ProfileError(f"profile {src} was measured on GPU {profile.gpu_name}, not {gpu.name}")
    if profile.tp != tp:
        raise ProfileError(f"profile {src} was measured at tp={profile.tp}, not tp={tp}")


class ProfileCostModel:
    """CostModel from a measured profile (see module doc for the method)."""

    name = "profile"

    def __init__(self, profile: Profile, model: ModelSpec, gpu: GpuSpec, tp: int = 1, *,
                 prior: RooflineCostModel | None = None, ridge: float = 1e-3) -> None:
        check_profile_matches(profile, model, gpu, tp)
        self.profile, self.model, self.gpu, self.tp = profile, model, gpu, tp
        self._graph_sizes: dict[int, int] = {}  # rows -> decode graph size (memo)
        self._fixed_decode: dict[int, float] = {}  # graph size -> roofline's fixed seconds (memo)
        # decode path -> graph size -> its DecodePricer; graph size -> tail weights (a, w)
        self._pricers: dict[str, dict[int, DecodePricer]] = {PACKED: {}, SUBSET: {}, STEADY: {}}
        self._tails: dict[int, tuple[float, float]] = {}
        self._buckets: dict[int, int] = {}  # tokens of a step with a prefill -> its bucket
        self._pair_at: dict[int, float] = {}  # bucket -> seconds per attention pair (_pair_costs)
        if prior is None:
            prior = RooflineCostModel(model, gpu, tp, profile.dtype_bytes)
        shapes, durs = zip(*profile.points())
        self.fit: FitResult = fit_roofline(prior, [self._padded(s) for s in shapes], durs, ridge=ridge)
        self.roofline = self.fit.model
        sizes = set(profile.decode_graph_sizes)
        # the grid: uniform batches of graph sizes (all sizes when the runner had no graphs)
        uniform = [p for p in profile.decode
                   if not p.max_context_tokens and (not sizes or p.batch_size in sizes)]
        self._decode = ratio_grid([((p.batch_size, p.context_tokens), p.duration_s, self._padded(p.shape))
                                    for p in uniform], self.roofline)
        # decode steps that pack their inputs anew (the first after a step with a prefill):
        # the profile's packed_duration_s, where measured (older profiles: the one grid)
        packed = [p for p in uniform if "packed_duration_s" in p.extra]
        self._decode_packed = ratio_grid([((p.batch_size, p.context_tokens), float(p.extra["packed_duration_s"]),
                                            self._padded(p.shape)) for p in packed], self.roofline)
        # decode steps right after a decode step with more rows (a sequence finished: the
        # runner drops its row from the edited inputs): subset_duration_s, where measured
        sub = [p for p in uniform if "subset_duration_s" in p.extra]
        self._decode_subset = ratio_grid([((p.batch_size, p.context_tokens), float(p.extra["subset_duration_s"]),
                                            self._padded(p.shape)) for p in sub], self.roofline)
        # the decode grid of each StepShape.decode_path (a path the profile did not measure:
        # the steady grid)
        self._path_grids = {PACKED: self._decode_packed or self._decode,
                            SUBSET: self._decode_subset or self._decode, STEADY: self._decode}
        self._spread, self._longest = self._tail_weights(
            [p for p in profile.decode if p.max_context_tokens or (sizes and p.batch_size not in sizes)])
        self._prefill = ratio_grid([((self._padded(p.shape).prefill_tokens, p.cached_tokens), p.duration_s,
                                      self._padded(p.shape)) for p in profile.prefill], self.roofline)
        self._pair_T, self._pair_s = self._pair_costs(profile.prefill)
        self._decode_rows, self._rows_w = self._decode_rows_grid(profile.mixed)
        self.total_steps = 0
        self.extrapolated_steps = 0
        self.description = (
            f"profile {profile.source} ({model.name} on {gpu.name}, tp={tp}, "
            f"{profile.attention_backend} attention; {profile.num_points} points, fit rms "
            f"{self.fit.rel_rms:.1%}; interpolated inside the grid, fitted roofline outside)")

    def reset_counts(self) -> None:
        self.total_steps = self.extrapolated_steps = 0

    def _padded(self, shape: StepShape) -> StepShape:
        """The step as the runner executes it. A decode-only batch: padded to its CUDA-graph
        size (padding rows attend to one token: the context total stays). A step with a
        prefill: its T tokens padded to the mixed-graph bucket >= T, as extra prefill tokens
        that every linear layer computes and no attention reads (pairs and KV stay)."""
        b, q = shape.num_decode_seqs, shape.prefill_tokens
        s = shape  # positional StepShape(...) below: dataclasses.replace costs ~7 us a step
        if q or shape.num_prefill_seqs:
            buckets, t = self.profile.mixed_token_buckets, q + b
            i = bisect_left(buckets, t)
            return shape if i == len(buckets) else StepShape(
                s.num_prefill_seqs, q + buckets[i] - t, s.prefill_attn_pairs, s.prefill_kv_tokens,
                b, s.decode_context_tokens, s.swap_blocks, s.decode_max_context_tokens, s.decode_path)
        if shape.swap_blocks or b < 1:
            return shape
        g = self._graph_size(b)
        return shape if g == b else StepShape(
            s.num_prefill_seqs, q, s.prefill_attn_pairs, s.prefill_kv_tokens, g,
            s.decode_context_tokens, s.swap_blocks, s.decode_max_context_tokens, s.decode_path)

    def _graph_size(self, rows: int) -> int:
        """The decode CUDA-graph size a batch of ``rows`` decodes runs at (rows itself when
        the profile has no graphs or the batch is larger than all)."""
        g = self._graph_sizes.get(rows)
        if g is None:
            sizes = self.profile.decode_graph_sizes
            i = bisect_left(sizes, rows)
            g = self._graph_sizes[rows] = rows if i == len(sizes) else sizes[i]
        return g

    # ---- decode steps: a uniform batch of the graph's size at an equivalent context ----
    def _pricer(self, path: str, b: int) -> DecodePricer:
        """The decode price of graph size b on the grid of ``path``: the fitted roofline
        times the measured ratio (decode_price.uniform_decode_s), from tables built once."""
        pr = self._pricers[path].get(b)
        if pr is None:
            fixed = self._fixed_decode.get(b)
            if fixed is None:  # the same float _fixed_s gives, once per graph size
                fixed = self._fixed_decode[b] = self.roofline._fixed_s(0, 0, 0.0, 0, b, 0)
            pr = self._pricers[path][b] = DecodePricer(self._path_grids[path], self.roofline, b, fixed)
        return pr

    def _equivalent_context(self, b: int, duration_s: float, lo: float, hi: float) -> float:
        """The context at which a uniform batch of graph size b takes duration_s, clamped to
        [lo, hi] (bisection on the decode grid's price)."""
        price = self._pricer(STEADY, b).scalar  # the decode grid's price, from its tables
        if price(lo)[0] >= duration_s:
            return lo
        if price(hi)[0] <= duration_s:
            return hi
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            if price(mid)[0] < duration_s:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    def _tail_weights(self, points) -> tuple[InverseWeights, InverseWeights]:
        """(a, w) per graph size from the non-uniform decode points: each point's equivalent
        context c_eq (the uniform batch of its graph size b that takes as long), then the
        (a, w) in [0, 1]^2 whose c = max(mean + a (longest - mean), w longest) is nearest
        c_eq over that size's points (least squares of the relative error, grid search; ties
        go to the smaller a, then w). w alone is a latency-bound kernel waiting for its
        longest row's programs (one long row among short ones measures it); a is the tail
        a spread of long rows adds to a loaded kernel (half-long and padded batches)."""
        by_b: dict[int, list[tuple[float, float, float]]] = {}
        for p in points:
            if self._decode is None:
                break
            b = self._padded(p.shape).num_decode_seqs
            mean, m = p.shape.decode_context_tokens / b, float(p.shape.decode_max_context_tokens)
            if m <= mean:
                continue
            c_eq = self._equivalent_context(b, p.duration_s, mean, m)
            by_b.setdefault(b, []).append((mean, m, c_eq))
        grid = np.linspace(0.0, 1.0, 101)
        A, W = np.meshgrid(grid, grid, indexing="ij")  # (a, w) candidates
        bs, a_s, w_s = sorted(by_b), [], []
        for b in bs:
            err = np.zeros_like(A)
            for mean, m, c_eq in by_b[b]:
                c = np.maximum(mean + A * (m - mean), W * m)
                err += ((c - c_eq) / c_eq) ** 2
            i, j = np.unravel_index(int(np.argmin(err)), err.shape)  # first minimum: small a, w
            a_s.append(float(grid[i]))
            w_s.append(float(grid[j]))
        xs = [float(b) for b in bs]  # none: a = w = 0, every row at the mean
        return InverseWeights(xs, a_s), InverseWeights(xs, w_s)

    def _tail_pair(self, b: int) -> tuple[float, float]:
        """(a, w) of graph size b (see _tail_weights), remembered: the equivalent context of
        a decode batch is max(mean + a * max(longest - mean, 0), w * longest)."""
        aw = self._tails[b] = (self._spread(b), self._longest(b))
        return aw

    def _decode_s(self, shape: StepShape) -> tuple[float, bool]:
        """A decode-only step (no swaps) as a uniform batch of its graph size b at the
        equivalent context of _tail_pair: the padding rows attend nothing, and the
        longest row holds the step up by the weights its size measured."""
        b = self._graph_sizes.get(shape.num_decode_seqs) or self._graph_size(shape.num_decode_seqs)
        pr = self._pricers[shape.decode_path].get(b) or self._pricer(shape.decode_path, b)
        c = shape.decode_context_tokens / b
        if shape.decode_max_context_tokens:  # the equivalent context (_tail_pair)
            a, w = self._tails.get(b) or self._tail_pair(b)
            longest = float(shape.decode_max_context_tokens)
            c = max(c + a * max(longest - c, 0.0), w * longest)
        return pr.scalar(c)

    # ---- steps with prefill chunks and decode rows -------------------------------------
    def _chunks_s(self, shape: StepShape, padded: StepShape) -> tuple[float, bool]:
        """The prefill chunks of a step, in its bucket of T padded tokens. One chunk: the
        fitted roofline of the chunk at T tokens times the prefill grid's measured ratio at T
        and its cached prefix (exact at the grid's nodes). Several chunks run in one bucketed
        graph like one: priced as one chunk of their tokens, whose attention pairs are then
        moved to the chunks' own at the per-pair cost the grid's cached-prefix axis measures
        at T (_pair_costs, interpolated between chunk sizes). The ratio alone would carry the
        single chunk's attention over to chunks that do not have it: on our H100's replays
        such steps were priced 4-7% over (README, Calibration). Several chunks count as
        extrapolated (the grid measured single chunks). Decode rows are not in it."""
        return self._chunks_at(shape, padded.prefill_tokens + padded.num_decode_seqs)

    def _bucket(self, t: int) -> int:
        """The tokens a step with a prefill and t computed tokens runs at: its mixed-graph
        bucket (t beyond them all), = _padded(shape)'s prefill tokens + decode rows."""
        buckets, i = self.profile.mixed_token_buckets, bisect_left(self.profile.mixed_token_buckets, t)
        bucket = self._buckets[t] = t if i == len(buckets) else buckets[i]
        return bucket

    def _chunks_at(self, shape: StepShape, tokens: int) -> tuple[float, bool]:  # its bucket given
        n, q = shape.num_prefill_seqs, shape.prefill_tokens
        if n == 1:
            return self._one_chunk_s(tokens, q, shape.prefill_kv_tokens - q, shape)
        one, _ = self._one_chunk_s(tokens, q, 0.0)
        pair_s = self._pair_at.get(tokens)  # per bucket, not an np.interp per step
        if pair_s is None:
            pair_s = self._pair_at[tokens] = (float(np.interp(tokens, self._pair_T, self._pair_s))
                                              if self._pair_T else 0.0)
        return one + pair_s * (shape.prefill_attn_pairs - q * (q + 1) / 2), False

    def _one_chunk_s(self, tokens: int, q: int, cached: float,
                     shape: StepShape | None = None) -> tuple[float, bool]:
        """(seconds, inside the grid) of one chunk of q tokens after ``cached`` ones, run at
        ``tokens`` (its bucket): the fitted roofline times the prefill grid's ratio there
        (``shape``: the chunk's own attention pairs and KV; else a chunk of q tokens after
        ``cached``)."""
        pairs = shape.prefill_attn_pairs if shape else q * cached + q * (q + 1) / 2
        kv = shape.prefill_kv_tokens if shape else q + cached
        r, inside = self._prefill.at(tokens, cached)
        # the roofline's price of StepShape(1, tokens, pairs, kv): no decode rows
        return self.roofline._fixed_s(1, tokens, pairs, kv, 0, 0) * r, inside

    @staticmethod
    def _pair_costs(points) -> tuple[list[float], list[float]]:
        """Seconds per attention pair (query x key) at each chunk size T measured both
        without and with a cached prefix C: (median duration at C - at 0) / (T x C), the
        C x T pairs the prefix adds (the largest C measured at T). -> (Ts, seconds), sorted;
        empty when no chunk size has both."""
        by: dict[tuple[int, int], list[float]] = {}
        for p in points:
            by.setdefault((p.chunk_tokens, p.cached_tokens), []).append(p.duration_s)
        med = {k: median(v) for k, v in by.items()}
        out = []
        for t in sorted({t for t, _ in med}):
            cs = [c for u, c in med if u == t and c > 0]
            if (t, 0) in med and cs:
                c = max(cs)
                out.append((float(t), max(0.0, (med[t, c] - med[t, 0]) / (t * c))))
        return [t for t, _ in out], [k for _, k in out]

    def _decode_rows_grid(self, points) -> tuple[Grid2D | None, InverseWeights]:
        """Seconds the decode rows add to a step with one prefill chunk (their attention, a
        split-KV launch that waits for its longest row and reads every row's KV, and their
        sampling), from the profile's mixed points with one chunk: measured minus
        _chunks_s, on a (decode rows, context per row) grid. Bilinear interpolation is
        exact for the bytes term (rows x context)."""
        if self._prefill is None:
            return None, InverseWeights([], [])
        ones = [p for p in points if p.shape.num_prefill_seqs == 1 and p.shape.num_decode_seqs
                and not p.shape.swap_blocks]
        if not ones:
            return None, InverseWeights([], [])
        # one series: the chunk size with the most points (other chunks' residuals carry
        # the prefill grid's own error at their bucket, not the rows')
        counts = Counter(p.shape.prefill_tokens for p in ones)
        chunk = max(sorted(counts), key=counts.__getitem__)
        nodes: dict[tuple[float, float], list[float]] = {}
        for p in ones:
            s = p.shape
            if s.prefill_tokens != chunk:
                continue
            nd = s.num_decode_seqs
            key = (float(nd), s.decode_context_tokens / nd)
            nodes.setdefault(key, []).append(p.duration_s - self._chunks_s(s, self._padded(s))[0])
        values = {k: median(v) for k, v in nodes.items()}
        grid = Grid2D(sorted({k[0] for k in values}), sorted({k[1] for k in values}), values)
        # weight of the longest row at each row count n: the launch has a fixed split count,
        # so its time per token of context is max(bytes per row x n, L) where L, the slope
        # of the fewest rows, is the longest row's; w(n) = L / slope(n) (1: latency-bound)
        span = grid.ys[-1] - grid.ys[0]
        slopes = (grid.V[:, -1] - grid.V[:, 0]) / span if span > 0 else np.zeros(len(grid.xs))
        lat = slopes[0]
        ws = [min(1.0, max(0.0, lat / sl)) if sl > 0 and lat > 0 else 0.0 for sl in slopes]
        return grid, InverseWeights(grid.xs, ws)

    def _mixed_s(self, shape: StepShape, padded: StepShape | None = None) -> tuple[float, bool]:
        """Prefill chunks plus decode rows: the chunks as _chunks_s prices them, plus
        what decode rows of that count and (equivalent) context added in the profile's mixed
        points (none measured: what they add to the fitted roofline; extrapolated)."""
        nd, q = shape.num_decode_seqs, shape.prefill_tokens
        tokens = self._buckets.get(q + nd) or self._bucket(q + nd)
        if shape.num_prefill_seqs == 1:  # _one_chunk_s of _chunks_at, inlined (most steps)
            r, inside = self._prefill.at(tokens, shape.prefill_kv_tokens - q)
            t = self.roofline._fixed_s(1, tokens, shape.prefill_attn_pairs, shape.prefill_kv_tokens, 0, 0) * r
        else:
            t, inside = self._chunks_at(shape, tokens)
        if nd and self._decode_rows is not None:
            c = shape.decode_context_tokens / nd
            if shape.decode_max_context_tokens:
                w = self._rows_w(nd)
                c = max(c, w * shape.decode_max_context_tokens)
            t += self._decode_rows.row_at(nd).at(c)[0]
        elif nd:
            padded = padded or self._padded(shape)
            rf, no_rows = self.roofline, replace(padded, num_decode_seqs=0, decode_context_tokens=0,
                                                 decode_max_context_tokens=0)
            t, inside = t + rf.step_time_s(padded) - rf.step_time_s(no_rows), False
        return t, inside

    def step_time_s(self, shape: StepShape) -> float:
        """The step's price, from its shape alone (a decode-only step on the grid of its
        decode_path): the same whoever asks, in any order."""
        if (shape.num_decode_seqs > 0 and shape.prefill_tokens == 0 and shape.num_prefill_seqs == 0
                and shape.swap_blocks == 0 and self._decode is not None):  # decode-only
            t, inside = self._decode_s(shape)
        elif (shape.num_prefill_seqs >= 1 and shape.prefill_tokens > 0 and shape.swap_blocks == 0
              and self._prefill is not None):
            t, inside = self._mixed_s(shape)
        else:  # swaps: the fitted roofline alone
            t, inside = self.roofline.step_time_s(self._padded(shape)), False
        self.total_steps += 1
        if not inside:
            self.extrapolated_steps += 1
        return t

    def decode_run_s(self, num_seqs: int, context_tokens: int, num_steps: int,
                     max_context_tokens: int = 0, first_path: str = PACKED) -> np.ndarray:
        """Step times of a run of decode-only steps (context grows num_seqs per step, the
        longest row's by 1); the same values step_time_s gives each step's shape, the first
        on ``first_path``, the others steady."""
        if num_steps == 0 or num_seqs <= 0 or self._decode is None:
            base = self.roofline.decode_run_s(num_seqs, context_tokens, num_steps)
            self.total_steps += num_steps
            self.extrapolated_steps += num_steps
            return base * 1.0
        self.total_steps += num_steps
        b = self._graph_sizes.get(num_seqs) or self._graph_size(num_seqs)
        # contexts context_tokens + i * num_seqs (int64, exact), longest max + i (exact floats)
        c = np.arange(context_tokens, context_tokens + num_steps * num_seqs, num_seqs,
                      dtype=np.int64) / b
        if max_context_tokens:  # the equivalent context (_tail_pair)
            a, w = self._tails.get(b) or self._tail_pair(b)
            longest = np.arange(max_context_tokens, max_context_tokens + num_steps, dtype=np.float64)
            c = np.maximum(c + a * np.maximum(longest - c, 0.0), w * longest)
        t, inside = (self._pricers[STEADY].get(b) or self._pricer(STEADY, b)).vector(c)
        if self._path_grids[first_path] is not self._decode:
            t[0] = (self._pricers[first_path].get(b) or self._pricer(first_path, b)).scalar(float(c[0]))[0]
        self.extrapolated_steps += num_steps - inside
        return t

    decode_run_list = decode_run_list  # decode_s's values as a list (decode_price.py)

    def __repr__(self) -> str:
        return f"ProfileCostModel<{self.description}>"
