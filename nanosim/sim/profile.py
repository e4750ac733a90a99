"""Measured step-time profiles: JSON schema, loading, and the profile-driven cost model.

A profile holds wall times of whole engine steps measured on one GPU for one model and TP
degree, over a grid of

* decode points:  ``batch_size`` sequences, each attending ``context_tokens`` tokens
  (including the token computed this step), one token each;
* prefill points: one sequence computing ``chunk_tokens`` tokens after ``cached_tokens``
  tokens already in its KV cache (prefix hit or earlier chunks);
* mixed points (optional): any StepShape, given field by field.

Schema (version 1), one JSON object::

    {"schema_version": 1,
     "model": {"name", "hidden_size", "num_layers", "num_q_heads", "num_kv_heads", "head_dim",
               "intermediate_size", "vocab_size", "tie_word_embeddings"},
     "gpu": {"name": "h100", "device_name": "NVIDIA H100 80GB HBM3" | null},
     "tp": 1, "dtype": "bfloat16", "attention_backend": "flash",
     "versions": {"torch": str|null, "driver": str|null, "nanosim": str|null, ...},
     "created_utc": str (optional), "notes": str (optional),
     "decode":  [{"batch_size": int>=1, "context_tokens": int>=1, "duration_s": float>0}, ...],
     "prefill": [{"chunk_tokens": int>=1, "cached_tokens": int>=0, "duration_s": float>0}, ...],
     "mixed":   [{"num_prefill_seqs", "prefill_tokens", "prefill_attn_pairs",
                  "prefill_kv_tokens", "num_decode_seqs", "decode_context_tokens",
                  "duration_s"}, ...]}

Points may carry extra keys (``repeats``, ``std_s``...), which are kept but unused.

ProfileCostModel predicts a step as ``fitted_roofline(shape) * ratio`` where the roofline's
coefficients are fitted to all profile points (fit.py) and ``ratio`` = measured / fitted,
interpolated bilinearly (linear in batch and context, or in chunk and cached tokens) over
the measured grid nodes, so measured points are reproduced exactly. Outside the grid the
ratio is clamped to the nearest edge (continuous at the boundary) and the fitted roofline
terms carry the scaling. A step counts as *interpolated* when it is of a measured kind
(decode-only, or single-sequence prefill-only, no swaps) and falls in a grid cell whose four
corners were measured; every other step counts in ``extrapolated_steps``.
"""
from __future__ import annotations

import json
import math
import os
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from nanosim.config import ConfigError, GpuSpec, ModelSpec, get_gpu
from nanosim.core.batch import StepShape
from nanosim.sim.costmodel import RooflineCostModel
from nanosim.sim.fit import FitResult, fit_roofline

SCHEMA_VERSION = 1
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "float8": 1}
MODEL_FIELDS = ("hidden_size", "num_layers", "num_q_heads", "num_kv_heads", "head_dim",
                "intermediate_size", "vocab_size", "tie_word_embeddings")
MIXED_FIELDS = ("num_prefill_seqs", "prefill_tokens", "prefill_attn_pairs", "prefill_kv_tokens",
                "num_decode_seqs", "decode_context_tokens")

# A grid a GPU profiler can start from (log-spaced; CUDA-graph batch sizes).
DEFAULT_DECODE_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
DEFAULT_DECODE_CONTEXTS = (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
DEFAULT_PREFILL_CHUNKS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
DEFAULT_PREFILL_CACHED = (0, 512, 2048, 8192, 32768)


class ProfileError(ConfigError):
    """A profile file that cannot be used; the message names the file and the problem."""


# ---------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------
def decode_shape(batch_size: int, context_tokens: int) -> StepShape:
    """A decode-only step: ``batch_size`` sequences each attending ``context_tokens``."""
    return StepShape(num_decode_seqs=batch_size, decode_context_tokens=batch_size * context_tokens)


def prefill_shape(chunk_tokens: int, cached_tokens: int) -> StepShape:
    """One sequence computing ``chunk_tokens`` after ``cached_tokens`` cached ones."""
    q, p = chunk_tokens, cached_tokens
    return StepShape(num_prefill_seqs=1, prefill_tokens=q, prefill_attn_pairs=q * (p + (q + 1) / 2),
                     prefill_kv_tokens=p + q)


@dataclass(frozen=True)
class DecodePoint:
    batch_size: int
    context_tokens: int
    duration_s: float
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def shape(self) -> StepShape:
        return decode_shape(self.batch_size, self.context_tokens)


@dataclass(frozen=True)
class PrefillPoint:
    chunk_tokens: int
    cached_tokens: int
    duration_s: float
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def shape(self) -> StepShape:
        return prefill_shape(self.chunk_tokens, self.cached_tokens)


@dataclass(frozen=True)
class MixedPoint:
    shape: StepShape
    duration_s: float
    extra: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Profile:
    model: ModelSpec
    gpu_name: str
    tp: int
    dtype: str
    attention_backend: str
    versions: dict
    decode: tuple[DecodePoint, ...] = ()
    prefill: tuple[PrefillPoint, ...] = ()
    mixed: tuple[MixedPoint, ...] = ()
    gpu_device_name: str | None = None
    created_utc: str | None = None
    notes: str | None = None
    source: str = "<memory>"  # file it was loaded from (not serialised)

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def num_points(self) -> int:
        return len(self.decode) + len(self.prefill) + len(self.mixed)

    def points(self) -> list[tuple[StepShape, float]]:
        return ([(p.shape, p.duration_s) for p in self.decode]
                + [(p.shape, p.duration_s) for p in self.prefill]
                + [(p.shape, p.duration_s) for p in self.mixed])


def profile_to_dict(p: Profile) -> dict:
    m = p.model
    d: dict = {
        "schema_version": SCHEMA_VERSION,
        "model": {"name": m.name, **{f: getattr(m, f) for f in MODEL_FIELDS}},
        "gpu": {"name": p.gpu_name, "device_name": p.gpu_device_name},
        "tp": p.tp, "dtype": p.dtype, "attention_backend": p.attention_backend,
        "versions": dict(p.versions),
    }
    if p.created_utc is not None:
        d["created_utc"] = p.created_utc
    if p.notes is not None:
        d["notes"] = p.notes
    d["decode"] = [{**x.extra, "batch_size": x.batch_size, "context_tokens": x.context_tokens,
                    "duration_s": x.duration_s} for x in p.decode]
    d["prefill"] = [{**x.extra, "chunk_tokens": x.chunk_tokens, "cached_tokens": x.cached_tokens,
                     "duration_s": x.duration_s} for x in p.prefill]
    if p.mixed:
        d["mixed"] = [{**x.extra, **{f: getattr(x.shape, f) for f in MIXED_FIELDS},
                       "duration_s": x.duration_s} for x in p.mixed]
    return d


def save_profile(p: Profile, path: str | os.PathLike) -> None:
    Path(path).write_text(json.dumps(profile_to_dict(p), indent=1) + "\n")


class _Reader:
    """Field access with errors that say which file and which field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, msg: str) -> ProfileError:
        return ProfileError(f"profile {self.source}: {where}: {msg}")

    def get(self, obj: dict, key: str, where: str, kind: str, minimum=None, optional=False):
        if not isinstance(obj, dict):
            raise self.fail(where, "must be a JSON object")
        path = f"{where}.{key}" if where else key
        if key not in obj or (optional and obj[key] is None):
            if optional:
                return None
            raise self.fail(path, "missing")
        v = obj[key]
        if kind == "int":
            if isinstance(v, bool) or not isinstance(v, int):
                raise self.fail(path, f"must be an integer, got {v!r}")
        elif kind == "number":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise self.fail(path, f"must be a finite number, got {v!r}")
            v = float(v)
        elif kind == "str":
            if not isinstance(v, str) or not v:
                raise self.fail(path, f"must be a non-empty string, got {v!r}")
        elif kind == "bool":
            if not isinstance(v, bool):
                raise self.fail(path, f"must be true or false, got {v!r}")
        elif kind == "list":
            if not isinstance(v, list):
                raise self.fail(path, f"must be a list, got {type(v).__name__}")
        elif kind == "dict":
            if not isinstance(v, dict):
                raise self.fail(path, f"must be an object, got {type(v).__name__}")
        if minimum is not None and v < minimum:
            raise self.fail(path, f"must be >= {minimum}, got {v!r}")
        return v

    def duration(self, obj: dict, where: str) -> float:
        v = self.get(obj, "duration_s", where, "number")
        if not v > 0:
            raise self.fail(f"{where}.duration_s", f"must be a positive number of seconds, got {v!r}")
        return v


def profile_from_dict(d, source: str = "<dict>") -> Profile:
    """Validate a parsed profile; raise ProfileError naming ``source`` and the problem."""
    r = _Reader(source)
    if not isinstance(d, dict):
        raise r.fail("top level", "must be a JSON object")
    ver = r.get(d, "schema_version", "", "int")
    if ver != SCHEMA_VERSION:
        newer = " (written by a newer nanosim?)" if ver > SCHEMA_VERSION else ""
        raise r.fail("schema_version", f"is {ver}, this nanosim reads version {SCHEMA_VERSION}{newer}")
    md = r.get(d, "model", "", "dict")
    name = r.get(md, "name", "model", "str")
    kw = {f: r.get(md, f, "model", "bool" if f == "tie_word_embeddings" else "int",
                   None if f == "tie_word_embeddings" else 1) for f in MODEL_FIELDS}
    try:
        model = ModelSpec(name, **kw)
    except ConfigError as e:
        raise r.fail("model", str(e)) from None
    gd = r.get(d, "gpu", "", "dict")
    gpu_name = r.get(gd, "name", "gpu", "str")
    gpu_device = r.get(gd, "device_name", "gpu", "str", optional=True)
    tp = r.get(d, "tp", "", "int", 1)
    dtype = r.get(d, "dtype", "", "str")
    if dtype not in DTYPE_BYTES:
        raise r.fail("dtype", f"{dtype!r} is not one of {sorted(DTYPE_BYTES)}")
    backend = r.get(d, "attention_backend", "", "str")
    versions = r.get(d, "versions", "", "dict")
    for k in ("torch", "driver", "nanosim"):
        if k not in versions:
            raise r.fail(f"versions.{k}", "missing (use null when unknown)")
    for k, v in versions.items():
        if v is not None and not isinstance(v, str):
            raise r.fail(f"versions.{k}", f"must be a string or null, got {v!r}")
    decode, prefill, mixed = [], [], []
    for i, x in enumerate(r.get(d, "decode", "", "list")):
        w = f"decode[{i}]"
        decode.append(DecodePoint(r.get(x, "batch_size", w, "int", 1),
                                  r.get(x, "context_tokens", w, "int", 1), r.duration(x, w),
                                  _extra(x, ("batch_size", "context_tokens", "duration_s"))))
    for i, x in enumerate(r.get(d, "prefill", "", "list")):
        w = f"prefill[{i}]"
        prefill.append(PrefillPoint(r.get(x, "chunk_tokens", w, "int", 1),
                                    r.get(x, "cached_tokens", w, "int", 0), r.duration(x, w),
                                    _extra(x, ("chunk_tokens", "cached_tokens", "duration_s"))))
    for i, x in enumerate(r.get(d, "mixed", "", "list", optional=True) or []):
        w = f"mixed[{i}]"
        vals = {f: r.get(x, f, w, "number" if f == "prefill_attn_pairs" else "int", 0)
                for f in MIXED_FIELDS}
        if vals["prefill_tokens"] + vals["num_decode_seqs"] == 0:
            raise r.fail(w, "computes no tokens")
        mixed.append(MixedPoint(StepShape(**vals), r.duration(x, w),
                                _extra(x, MIXED_FIELDS + ("duration_s",))))
    if not decode and not prefill and not mixed:
        raise r.fail("decode/prefill", "no measured points")
    return Profile(model=model, gpu_name=gpu_name, tp=tp, dtype=dtype, attention_backend=backend,
                   versions=dict(versions), decode=tuple(decode), prefill=tuple(prefill),
                   mixed=tuple(mixed), gpu_device_name=gpu_device,
                   created_utc=r.get(d, "created_utc", "", "str", optional=True),
                   notes=r.get(d, "notes", "", "str", optional=True), source=source)


def _extra(x: dict, known: tuple[str, ...]) -> dict:
    return {k: v for k, v in x.items() if k not in known}


def load_profile(path: str | os.PathLike) -> Profile:
    """Read and validate a profile file; every problem raises one ProfileError."""
    src = str(path)
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ProfileError(f"profile {src}: cannot read: {e.strerror or e}") from None
    try:
        d = json.loads(text)
    except (json.JSONDecodeError, ValueError) as e:
        raise ProfileError(f"profile {src}: not valid JSON: {e}") from None
    return profile_from_dict(d, source=src)


def build_profile(model: ModelSpec, gpu_name: str, tp: int, measure: Callable[[StepShape], float],
                  decode_grid: Iterable[tuple[int, int]] = (),
                  prefill_grid: Iterable[tuple[int, int]] = (),
                  mixed_shapes: Iterable[StepShape] = (), *, dtype: str = "bfloat16",
                  attention_backend: str = "unknown", versions: dict | None = None,
                  gpu_device_name: str | None = None, notes: str | None = None,
                  created_utc: str | None = None) -> Profile:
    """Measure ``measure(shape) -> seconds`` over the grids and return a Profile.

    ``decode_grid`` holds (batch_size, context_tokens) pairs, ``prefill_grid`` (chunk_tokens,
    cached_tokens) pairs. The GPU profiler passes a function that times real steps; tests
    pass a synthetic one.
    """
    v = {"torch": None, "driver": None, "nanosim": None, **(versions or {})}
    return Profile(
        model=model, gpu_name=gpu_name, tp=tp, dtype=dtype, attention_backend=attention_backend,
        versions=v, gpu_device_name=gpu_device_name, notes=notes, created_utc=created_utc,
        decode=tuple(DecodePoint(b, c, float(measure(decode_shape(b, c)))) for b, c in decode_grid),
        prefill=tuple(PrefillPoint(q, p, float(measure(prefill_shape(q, p))))
                      for q, p in prefill_grid),
        mixed=tuple(MixedPoint(s, float(measure(s))) for s in mixed_shapes))


# ---------------------------------------------------------------------------------------
# Interpolation grid
# ---------------------------------------------------------------------------------------
class _Grid2D:
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

    @staticmethod
    def _locate(axis: list[float], v: float) -> tuple[int, int, float]:
        vc = min(max(v, axis[0]), axis[-1])
        n = len(axis)
        if n == 1:
            return 0, 0, 0.0
        i = min(max(bisect_right(axis, vc) - 1, 0), n - 2)
        return i, i + 1, (vc - axis[i]) / (axis[i + 1] - axis[i])

    def at(self, x: float, y: float) -> tuple[float, bool]:
        i, i1, tx = self._locate(self.xs, x)
        j, j1, ty = self._locate(self.ys, y)
        V = self.Vl
        r = ((V[i][j] * (1.0 - tx) + V[i1][j] * tx) * (1.0 - ty)
             + (V[i][j1] * (1.0 - tx) + V[i1][j1] * tx) * ty)
        inside = (self.xs[0] <= x <= self.xs[-1] and self.ys[0] <= y <= self.ys[-1]
                  and self.cell_okl[i][j])
        return r, inside

    def at_y(self, x: float, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values at (x, y[k]) for a vector y (x fixed)."""
        i, i1, tx = self._locate(self.xs, x)
        ys, ny = self.ys_a, len(self.ys)
        yc = np.clip(y, ys[0], ys[-1])
        if ny == 1:
            j = j1 = np.zeros(len(y), dtype=np.intp)
            ty = np.zeros(len(y))
        else:
            j = np.clip(np.searchsorted(ys, yc, side="right") - 1, 0, ny - 2)
            j1 = j + 1
            ty = (yc - ys[j]) / (ys[j1] - ys[j])
        V = self.V
        r = ((V[i, j] * (1.0 - tx) + V[i1, j] * tx) * (1.0 - ty)
             + (V[i, j1] * (1.0 - tx) + V[i1, j1] * tx) * ty)
        x_in = self.xs[0] <= x <= self.xs[-1]
        inside = (y >= ys[0]) & (y <= ys[-1]) & self.cell_ok[i, j] & x_in
        return r, inside


def _ratio_grid(keys_durations: list[tuple[tuple[int, int], float, StepShape]],
                fitted: RooflineCostModel) -> _Grid2D | None:
    """Grid of measured / fitted ratios; duplicate nodes use the median duration."""
    if not keys_durations:
        return None
    by_node: dict[tuple[float, float], list[float]] = {}
    shapes: dict[tuple[float, float], StepShape] = {}
    for (x, y), dur, shape in keys_durations:
        k = (float(x), float(y))
        by_node.setdefault(k, []).append(dur)
        shapes[k] = shape
    values = {k: float(np.median(v)) / fitted.step_time_s(shapes[k]) for k, v in by_node.items()}
    xs = sorted({k[0] for k in values})
    ys = sorted({k[1] for k in values})
    return _Grid2D(xs, ys, values)


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
        if prior is None:
            prior = RooflineCostModel(model, gpu, tp, profile.dtype_bytes)
        shapes, durs = zip(*profile.points())
        self.fit: FitResult = fit_roofline(prior, list(shapes), durs, ridge=ridge)
        self.roofline = self.fit.model
        self._decode = _ratio_grid([((p.batch_size, p.context_tokens), p.duration_s, p.shape)
                                    for p in profile.decode], self.roofline)
        self._prefill = _ratio_grid([((p.chunk_tokens, p.cached_tokens), p.duration_s, p.shape)
                                     for p in profile.prefill], self.roofline)
        self.total_steps = 0
        self.extrapolated_steps = 0
        self.description = (
            f"profile {profile.source} ({model.name} on {gpu.name}, tp={tp}, "
            f"{profile.attention_backend} attention; {profile.num_points} points, fit rms "
            f"{self.fit.rel_rms:.1%}; interpolated inside the grid, fitted roofline outside)")

    def reset_counts(self) -> None:
        self.total_steps = self.extrapolated_steps = 0

    def _ratio(self, shape: StepShape) -> tuple[float, bool]:
        if shape.swap_blocks == 0:
            nd, npf = shape.num_decode_seqs, shape.num_prefill_seqs
            if shape.prefill_tokens == 0 and nd > 0 and npf == 0 and self._decode is not None:
                return self._decode.at(nd, shape.decode_context_tokens / nd)
            if nd == 0 and npf == 1 and shape.prefill_tokens > 0 and self._prefill is not None:
                q = shape.prefill_tokens
                return self._prefill.at(q, shape.prefill_kv_tokens - q)
        return 1.0, False

    def step_time_s(self, shape: StepShape) -> float:
        r, inside = self._ratio(shape)
        self.total_steps += 1
        if not inside:
            self.extrapolated_steps += 1
        return self.roofline.step_time_s(shape) * r

    def decode_run_s(self, num_seqs: int, context_tokens: int, num_steps: int) -> np.ndarray:
        base = self.roofline.decode_run_s(num_seqs, context_tokens, num_steps)
        if num_steps == 0:
            return base
        self.total_steps += num_steps
        if num_seqs <= 0 or self._decode is None:
            self.extrapolated_steps += num_steps
            return base * 1.0
        ctx = context_tokens + np.arange(num_steps, dtype=np.int64) * num_seqs
        r, inside = self._decode.at_y(num_seqs, ctx / num_seqs)
        self.extrapolated_steps += int(num_steps - np.count_nonzero(inside))
        return base * r

    def __repr__(self) -> str:
        return f"ProfileCostModel<{self.description}>"


def make_cost_model(model: ModelSpec, gpu: GpuSpec, tp: int = 1,
                    profile_path: str | os.PathLike | None = None, **roofline_kwargs):
    """The cost model for a simulation, with a ``.description`` saying which it is.

    * ``profile_path`` None: the roofline model ("roofline (no profile)").
    * a file: that profile; it must match model/GPU/tp, else ProfileError.
    * a directory: the first ``*.json`` profile in it (sorted by name) that matches; the
      roofline model when none does. Files that fail to load raise ProfileError.
    ``roofline_kwargs`` go to RooflineCostModel (the roofline, or the prior of the fit).
    """
    def roofline(why: str) -> RooflineCostModel:
        cm = RooflineCostModel(model, gpu, tp, **roofline_kwargs)
        cm.description = f"roofline ({why})"
        return cm

    if profile_path is None:
        return roofline("no profile")
    path = Path(profile_path)
    candidates = sorted(path.glob("*.json")) if path.is_dir() else [path]
    for f in candidates:
        prof = load_profile(f)
        if path.is_dir():
            try:
                check_profile_matches(prof, model, gpu, tp)
            except ProfileError:
                continue
        prior = RooflineCostModel(model, gpu, tp, **{"dtype_bytes": prof.dtype_bytes,
                                                     **roofline_kwargs})
        return ProfileCostModel(prof, model, gpu, tp, prior=prior)
    return roofline(f"no profile for {model.name} on {gpu.name} tp={tp} in {path}")
