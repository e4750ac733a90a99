"""Measured step-time profiles: the JSON schema, its dataclasses, writing and building one
(reading and checking a file: profile_read.py; the cost model: profile.py).

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

Device time (optional, DEVICE_KEYS): ``gpu_duration_s`` beside a point's ``duration_s``,
and ``packed_gpu_duration_s`` / ``subset_gpu_duration_s`` beside the decode paths' wall
times: the median device time of the same runs (the runner's CUDA events from the input
upload to the sampled tokens' copy back, as the replays record StepResult.gpu_s), each a
positive number of seconds <= its wall time. Wall - device is the step's host time. When
every point carries them (device_profile), `--profile-from` scales only the device part
(nanosim/sim/cross_gpu.py); ProfileCostModel prices wall times and ignores them.

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
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable

from nanosim.config import ConfigError, ModelSpec
from nanosim.core.batch import StepShape

SCHEMA_VERSION = 1
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "float8": 1}
MODEL_FIELDS = ("hidden_size", "num_layers", "num_q_heads", "num_kv_heads", "head_dim",
                "intermediate_size", "vocab_size", "tie_word_embeddings")
MIXED_FIELDS = ("num_prefill_seqs", "prefill_tokens", "prefill_attn_pairs", "prefill_kv_tokens",
                "num_decode_seqs", "decode_context_tokens")

# wall-time field -> the field of its device time (optional, see the module doc)
DEVICE_KEYS = {"duration_s": "gpu_duration_s", "packed_duration_s": "packed_gpu_duration_s",
               "subset_duration_s": "subset_gpu_duration_s"}

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


def device_profile(p: Profile) -> Profile | None:
    """``p`` with each point's (and decode path's) wall time replaced by its device time
    (DEVICE_KEYS), or None unless every point and path that has a wall time has one."""
    from dataclasses import replace

    def swap(x):
        wall = {"duration_s": x.duration_s, **x.extra}
        if any(w in wall and d not in x.extra for w, d in DEVICE_KEYS.items()):
            raise LookupError
        extra = {w: float(x.extra[d]) for w, d in DEVICE_KEYS.items() if w != "duration_s" and w in wall}
        return replace(x, duration_s=float(x.extra["gpu_duration_s"]), extra=extra)
    try:
        return replace(p, decode=tuple(map(swap, p.decode)), prefill=tuple(map(swap, p.prefill)),
                       mixed=tuple(map(swap, p.mixed)))
    except LookupError:
        return None


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
    from nanosim.output import atomic_file

    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(profile_to_dict(p), indent=1) + "\n")


def build_profile(model: ModelSpec, gpu_name: str, tp: int, measure: Callable[[StepShape], float],
                  decode_grid: Iterable[tuple[int, int]] = (),
                  prefill_grid: Iterable[tuple[int, int]] = (),
                  mixed_shapes: Iterable[StepShape] = (), *, dtype: str = "bfloat16",
                  attention_backend: str = "unknown", versions: dict | None = None,
                  gpu_device_name: str | None = None, notes: str | None = None,
                  created_utc: str | None = None,
                  decode_graph_sizes: Iterable[int] = (),
                  mixed_token_buckets: Iterable[int] = (),
                  measure_device: Callable[[StepShape], float] | None = None) -> Profile:
    """Measure ``measure(shape) -> seconds`` over the grids and return a Profile
    (``measure_device(shape) -> seconds``, when given: each point's gpu_duration_s).

    ``decode_grid`` holds (batch_size, context_tokens) pairs or (batch_size, context_tokens,
    max_context_tokens[, long_rows]) skewed points, ``prefill_grid`` (chunk_tokens,
    cached_tokens) pairs. The GPU profiler passes a function that times real steps; tests
    pass a synthetic one.
    """
    v = {"torch": None, "driver": None, "nanosim": None, **(versions or {})}

    def dev(shape: StepShape) -> dict:
        return {} if measure_device is None else {"gpu_duration_s": float(measure_device(shape))}
    return Profile(
        model=model, gpu_name=gpu_name, tp=tp, dtype=dtype, attention_backend=attention_backend,
        versions=v, gpu_device_name=gpu_device_name, notes=notes, created_utc=created_utc,
        decode_graph_sizes=tuple(sorted(set(decode_graph_sizes))),
        mixed_token_buckets=tuple(sorted(set(mixed_token_buckets))),
        decode=tuple(DecodePoint(b, c, float(measure(decode_shape(b, c, m, k))),
                                 dev(decode_shape(b, c, m, k)), max_context_tokens=m, long_rows=k)
                     for b, c, m, k in (tuple(x) + (0, 1)[len(x) - 2:] for x in decode_grid)),
        prefill=tuple(PrefillPoint(q, p, float(measure(prefill_shape(q, p))), dev(prefill_shape(q, p)))
                      for q, p in prefill_grid),
        mixed=tuple(MixedPoint(s, float(measure(s)), dev(s)) for s in mixed_shapes))
