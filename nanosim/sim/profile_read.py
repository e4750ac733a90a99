"""Reading a profile file: every field checked, every problem one ProfileError that names
the file and the field (the schema itself is in profile_schema.py)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from nanosim.config import ConfigError, ModelSpec
from nanosim.core.batch import StepShape
from nanosim.sim.profile_schema import (
    DEVICE_KEYS, DTYPE_BYTES, MIXED_FIELDS, MODEL_FIELDS, SCHEMA_VERSION, DecodePoint, MixedPoint,
    PrefillPoint, Profile, ProfileError)


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
        self.device_times(obj, where)
        return v

    def device_times(self, obj: dict, where: str) -> None:
        """The optional device times (DEVICE_KEYS): positive seconds, at most their wall time."""
        for wall, key in DEVICE_KEYS.items():
            if key not in obj:
                continue
            v = self.get(obj, key, where, "number")
            if wall not in obj:
                raise self.fail(f"{where}.{key}", f"is a device time without its wall time {wall}")
            w = self.get(obj, wall, where, "number")
            if not 0 < v <= w * (1 + 1e-9):
                raise self.fail(f"{where}.{key}", f"must be a positive number of seconds <= "
                                f"{wall} ({w!r}), got {v!r}")


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
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as e:
        raise ProfileError(f"profile {src}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ProfileError(f"profile {src}: not a JSON profile (not UTF-8 text: byte "
                           f"{e.object[e.start]:#04x} at offset {e.start})") from None
    try:
        d = json.loads(text)
    except (json.JSONDecodeError, ValueError) as e:
        raise ProfileError(f"profile {src}: not valid JSON: {e}") from None
    return profile_from_dict(d, source=src)
