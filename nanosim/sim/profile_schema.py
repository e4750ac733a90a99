"""Measured step-time profiles: JSON schema, loading, and the profile-driven cost model.

A profile holds wall times of whole engine steps measured on one GPU for one model and TP
degree, over a grid of

* decode points:  ``batch_size`` sequences, each attending ``context_tokens`` tokens
  (including the token computed this step), one token each; a *skewed* decode point has
  ``max_context_tokens`` too: ``long_rows`` (default 1) of its rows attend that many;
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
     "step_jitter": [float, ...] (optional: quantiles of run / median over all timed runs),
     "decode":  [{"batch_size": int>=1, "context_tokens": int>=1, "duration_s": float>0,
                  "max_context_tokens": int (optional: long_rows rows attend this many),
                  "long_rows": int (optional, default 1; 1 <= long_rows < batch_size)}, ...],
     "prefill": [{"chunk_tokens": int>=1, "cached_tokens": int>=0, "duration_s": float>0}, ...],
     "mixed":   [{"num_prefill_seqs", "prefill_tokens", "prefill_attn_pairs",
                  "prefill_kv_tokens", "num_decode_seqs", "decode_context_tokens",
                  "duration_s"}, ...]}

Points may carry extra keys, which are kept: decode points' ``packed_duration_s`` (the
runner's packed step) and ``subset_duration_s`` (the edit that drops a finished row) are
read by the cost model as the time of those paths; others (``repeats``...) are unused.

ProfileCostModel (profile.py, which documents the decode-path, longest-row and decode-row
terms) predicts a step as ``fitted_roofline(shape) * ratio`` where the roofline's
coefficients are fitted to the profile points (fit.py) and ``ratio`` = measured / fitted,
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from nanosim.config import ConfigError, ModelSpec
from nanosim.core.batch import StepShape

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
def decode_shape(batch_size: int, context_tokens: int, max_context_tokens: int = 0,
                 long_rows: int = 1) -> StepShape:
    """A decode-only step: ``batch_size`` sequences each attending ``context_tokens``; with
    ``max_context_tokens``, ``long_rows`` of them attend that many instead (a skewed batch)."""
    if max_context_tokens:
        k = long_rows
        return StepShape(num_decode_seqs=batch_size,
                         decode_context_tokens=(batch_size - k) * context_tokens + k * max_context_tokens,
                         decode_max_context_tokens=max_context_tokens)
    return StepShape(num_decode_seqs=batch_size, decode_context_tokens=batch_size * context_tokens,
                     decode_max_context_tokens=context_tokens)


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
    # 0: every row attends context_tokens (the grid); else long_rows rows attend this many
    # (a skewed point: how much the longest rows set the step, see ProfileCostModel)
    max_context_tokens: int = 0
    long_rows: int = 1

    @property
    def shape(self) -> StepShape:
        return decode_shape(self.batch_size, self.context_tokens, self.max_context_tokens,
                            self.long_rows)


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
    # decode batch sizes the runner has CUDA graphs for: a batch of B runs padded to the
    # smallest size >= B (empty: no padding, e.g. eager runs)
    decode_graph_sizes: tuple[int, ...] = ()
    # token buckets of the runner's mixed CUDA graphs: a step with a prefill computing T
    # tokens (prefill + decode rows) runs padded to the smallest bucket >= T; past the last
    # bucket it runs eagerly (empty: no padding)
    mixed_token_buckets: tuple[int, ...] = ()
    # quantiles of (a timed run's duration / its point's median) over every timed run of the
    # profile, at evenly spaced probabilities 0..1: the step-time jitter a simulation draws
    # from (nanosim/sim/jitter.py; empty: none recorded, steps take the medians)
    step_jitter: tuple[float, ...] = ()
    source: str = "<memory>"  # file it was loaded from (not serialised)

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def num_points(self) -> int:
        return len(self.decode) + len(self.prefill) + len(self.mixed)

    def points(self) -> list[tuple[StepShape, float]]:
        """(shape, seconds) of the points the roofline terms are fitted to: all but the
        skewed decode points (their longest row is a term the roofline does not have)."""
        return ([(p.shape, p.duration_s) for p in self.decode if not p.max_context_tokens]
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
    if p.decode_graph_sizes:
        d["decode_graph_sizes"] = list(p.decode_graph_sizes)
    if p.mixed_token_buckets:
        d["mixed_token_buckets"] = list(p.mixed_token_buckets)
    if p.step_jitter:
        d["step_jitter"] = [round(float(x), 6) for x in p.step_jitter]
    d["decode"] = [{**x.extra, "batch_size": x.batch_size, "context_tokens": x.context_tokens,
                    **({"max_context_tokens": x.max_context_tokens} if x.max_context_tokens else {}),
                    **({"long_rows": x.long_rows} if x.long_rows != 1 else {}),
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
    model, gd = _model(r, d), r.get(d, "gpu", "", "dict")
    dtype = r.get(d, "dtype", "", "str")
    if dtype not in DTYPE_BYTES:
        raise r.fail("dtype", f"{dtype!r} is not one of {sorted(DTYPE_BYTES)}")
    decode, prefill, mixed = _decode_points(r, d), _prefill_points(r, d), _mixed_points(r, d)
    if not decode and not prefill and not mixed:
        raise r.fail("decode/prefill", "no measured points")
    return Profile(model=model, gpu_name=r.get(gd, "name", "gpu", "str"),
                   tp=r.get(d, "tp", "", "int", 1), dtype=dtype,
                   attention_backend=r.get(d, "attention_backend", "", "str"),
                   versions=_versions(r, d), decode=decode, prefill=prefill, mixed=mixed,
                   gpu_device_name=r.get(gd, "device_name", "gpu", "str", optional=True),
                   created_utc=r.get(d, "created_utc", "", "str", optional=True),
                   notes=r.get(d, "notes", "", "str", optional=True),
                   decode_graph_sizes=_sizes(r, d, "decode_graph_sizes"),
                   mixed_token_buckets=_sizes(r, d, "mixed_token_buckets"),
                   step_jitter=_jitter(r, d), source=source)


def _model(r: _Reader, d: dict) -> ModelSpec:
    md = r.get(d, "model", "", "dict")
    name = r.get(md, "name", "model", "str")
    kw = {f: r.get(md, f, "model", "bool" if f == "tie_word_embeddings" else "int",
                   None if f == "tie_word_embeddings" else 1) for f in MODEL_FIELDS}
    try:
        return ModelSpec(name, **kw)
    except ConfigError as e:
        raise r.fail("model", str(e)) from None


def _versions(r: _Reader, d: dict) -> dict:
    versions = r.get(d, "versions", "", "dict")
    for k in ("torch", "driver", "nanosim"):
        if k not in versions:
            raise r.fail(f"versions.{k}", "missing (use null when unknown)")
    for k, v in versions.items():
        if v is not None and not isinstance(v, str):
            raise r.fail(f"versions.{k}", f"must be a string or null, got {v!r}")
    return dict(versions)


def _decode_points(r: _Reader, d: dict) -> tuple[DecodePoint, ...]:
    out = []
    for i, x in enumerate(r.get(d, "decode", "", "list")):
        w = f"decode[{i}]"
        b, c = r.get(x, "batch_size", w, "int", 1), r.get(x, "context_tokens", w, "int", 1)
        m = r.get(x, "max_context_tokens", w, "int", 1, optional=True) or 0
        if m and (b < 2 or m <= c):
            raise r.fail(f"{w}.max_context_tokens", f"a skewed point needs batch_size >= 2 and "
                         f"max_context_tokens > context_tokens, got {b}, {c}, {m}")
        k = r.get(x, "long_rows", w, "int", 1, optional=True) or 1
        if k != 1 and (not m or k >= b):
            raise r.fail(f"{w}.long_rows", f"needs max_context_tokens and long_rows < batch_size, "
                         f"got long_rows {k}, batch_size {b}")
        out.append(DecodePoint(b, c, r.duration(x, w), _extra(
            x, ("batch_size", "context_tokens", "max_context_tokens", "long_rows", "duration_s")), m, k))
    return tuple(out)


def _prefill_points(r: _Reader, d: dict) -> tuple[PrefillPoint, ...]:
    return tuple(PrefillPoint(r.get(x, "chunk_tokens", f"prefill[{i}]", "int", 1),
                              r.get(x, "cached_tokens", f"prefill[{i}]", "int", 0),
                              r.duration(x, f"prefill[{i}]"),
                              _extra(x, ("chunk_tokens", "cached_tokens", "duration_s")))
                 for i, x in enumerate(r.get(d, "prefill", "", "list")))


def _mixed_points(r: _Reader, d: dict) -> tuple[MixedPoint, ...]:
    out = []
    for i, x in enumerate(r.get(d, "mixed", "", "list", optional=True) or []):
        w = f"mixed[{i}]"
        vals = {f: r.get(x, f, w, "number" if f == "prefill_attn_pairs" else "int", 0)
                for f in MIXED_FIELDS}
        if vals["prefill_tokens"] + vals["num_decode_seqs"] == 0:
            raise r.fail(w, "computes no tokens")
        out.append(MixedPoint(StepShape(**vals), r.duration(x, w), _extra(x, MIXED_FIELDS + ("duration_s",))))
    return tuple(out)


def _sizes(r: _Reader, d: dict, field_name: str) -> tuple[int, ...]:
    vals = r.get(d, field_name, "", "list", optional=True) or []
    if not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in vals):
        raise r.fail(field_name, "must be a list of positive integers")
    return tuple(sorted(set(vals)))


def _jitter(r: _Reader, d: dict) -> tuple[float, ...]:
    q = r.get(d, "step_jitter", "", "list", optional=True) or []
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0
                  for x in q)
    if q and (len(q) < 2 or not numbers or any(b < a for a, b in zip(q, q[1:]))):
        raise r.fail("step_jitter", "must be >= 2 positive, non-decreasing numbers (quantiles)")
    return tuple(float(x) for x in q)


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
                  created_utc: str | None = None,
                  decode_graph_sizes: Iterable[int] = (),
                  mixed_token_buckets: Iterable[int] = ()) -> Profile:
    """Measure ``measure(shape) -> seconds`` over the grids and return a Profile.

    ``decode_grid`` holds (batch_size, context_tokens) pairs or (batch_size, context_tokens,
    max_context_tokens[, long_rows]) skewed points, ``prefill_grid`` (chunk_tokens,
    cached_tokens) pairs. The GPU profiler passes a function that times real steps; tests
    pass a synthetic one.
    """
    v = {"torch": None, "driver": None, "nanosim": None, **(versions or {})}
    return Profile(
        model=model, gpu_name=gpu_name, tp=tp, dtype=dtype, attention_backend=attention_backend,
        versions=v, gpu_device_name=gpu_device_name, notes=notes, created_utc=created_utc,
        decode_graph_sizes=tuple(sorted(set(decode_graph_sizes))),
        mixed_token_buckets=tuple(sorted(set(mixed_token_buckets))),
        decode=tuple(DecodePoint(b, c, float(measure(decode_shape(b, c, m, k))), max_context_tokens=m,
                                 long_rows=k)
                     for b, c, m, k in (tuple(x) + (0, 1)[len(x) - 2:] for x in decode_grid)),
        prefill=tuple(PrefillPoint(q, p, float(measure(prefill_shape(q, p))))
                      for q, p in prefill_grid),
        mixed=tuple(MixedPoint(s, float(measure(s))) for s in mixed_shapes))
