"""One sweep point: every knob of one simulated replay, flat, frozen and validated.

A point names its workload (a trace file or a synthetic suite plus transforms), the
hardware (model, GPU, TP, replicas behind a router) and the engine limits (the fields of
``EngineConfig``). Its ``point_id`` is a hash of all its parameters (defaults included),
so the same point always lands on the same row of a results store, whatever spec or
order produced it.

Randomness: every random choice of a point (synthetic arrivals and lengths, sampling,
priority classes, system-prompt groups) comes from its ``seed``, and nothing reads a
clock, so a point's results are reproducible bit for bit. Points that differ only in
engine or hardware knobs share their seed and therefore see the SAME requests (common
random numbers): differences between them come from the knob, not from the draw.
"""
from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, make_dataclass

from nanosim.config import GPUS, MODELS, ConfigError, EngineConfig, check_tp, get_gpu, get_model
from nanosim.sim.router import ROUTERS, RouterConfig
from nanosim.workload.synthetic import SUITES

_R = RouterConfig()  # defaults of the router thresholds
# the engine keys: every EngineConfig field (its default, its order) but tp, a hardware key
_ENGINE = [f for f in fields(EngineConfig) if f.name != "tp"]


def _engine_rule(kind: str) -> tuple[str, ...]:
    """EngineConfig fields whose CLI metadata has this kind (config._flag)."""
    return tuple(f.name for f in fields(EngineConfig) if f.metadata.get("kind") == kind)


# Allowed values and lower bounds of single fields (checked before cross-field rules); the
# engine fields' rules follow their metadata kinds (count, count0, fraction, choice)
_CHOICES = {"model": tuple(MODELS), "gpu": tuple(GPUS), "router": ROUTERS, "workload": tuple(SUITES),
            **{f.name: f.metadata["choices"] for f in fields(EngineConfig)
               if f.metadata.get("kind") == "choice"}}
_AT_LEAST_1 = ("replicas", "num_requests", "max_requests", "system_prompt_groups", *_engine_rule("count"))
_POSITIVE = ("rate_rps", "duration_s", "rate_scale", "router_balance_rel_threshold")
_NON_NEGATIVE = ("system_prompt_tokens", "swap_space_bytes", "router_balance_abs_threshold",
                 *_engine_rule("count0"))
_FRACTIONS = ("sample_fraction", *_engine_rule("fraction"))  # in (0, 1]


@dataclass(frozen=True)
class _Knobs:
    """The hardware and workload keys of a Point, and its methods (Point adds the engine's)."""

    # hardware
    model: str = "qwen3-8b"
    gpu: str = "h100"
    tp: int = 1  # tensor-parallel ranks per replica
    replicas: int = 1  # engines behind the router; GPUs used = tp * replicas
    router: str = "round_robin"
    router_balance_abs_threshold: int = _R.balance_abs_threshold  # prefix router (sim/router.py)
    router_balance_rel_threshold: float = _R.balance_rel_threshold
    router_cache_threshold: float = _R.cache_threshold
    # measured profile JSON/folder; "auto" (default, as `nanosim simulate`): the shipped
    # profile matching model/GPU/tp, else the roofline; "none" (or None): the roofline
    profile: str | None = "auto"
    # workload: a trace file, or a synthetic suite at rate_rps
    trace: str | None = None  # path or registered name[start_s:end_s], as written in the spec
    trace_format: str | None = None  # force a trace format (default: sniffed)
    window_s: tuple[float, float] | None = None  # [start_s, end_s) of the trace, rebased
    workload: str | None = None  # synthetic suite: chatbot, rag, code, summarization
    rate_rps: float = 2.0  # synthetic Poisson rate, requests/s
    num_requests: int | None = None  # synthetic size (or duration_s)
    duration_s: float | None = None  # synthetic span, s
    sample_fraction: float | None = None  # keep a seeded random fraction of the requests
    max_requests: int | None = None  # keep the first N requests
    rate_scale: float = 1.0  # multiply the arrival rate (divide arrival times)
    system_prompt_tokens: int = 0  # > 0: prepend shared system prompts (prefix reuse)
    system_prompt_groups: int = 1  # distinct system prompts
    high_priority_fraction: float = 0.0  # share of requests in priority class 0 (rest: 1)

    def __post_init__(self) -> None:
        for f in fields(self):
            check_field(f.name, getattr(self, f.name))
        if (self.trace is None) == (self.workload is None):
            raise ConfigError("give exactly one of trace and workload")
        if self.workload is not None and self.num_requests is None and self.duration_s is None:
            raise ConfigError(f"workload {self.workload!r} needs num_requests or duration_s")
        if self.window_s is not None and self.trace is None:
            raise ConfigError("window_s applies to a trace, not to a synthetic workload")
        if self.window_s is not None and self.trace_window() != self.window_s:
            raise ConfigError(f"trace {self.trace!r} has a window already; give it once "
                              "(in trace or in window_s)")
        check_tp(get_model(self.model), self.tp)
        self.engine_config()  # EngineConfig's own cross-field rules
        self.router_config()

    def router_config(self) -> RouterConfig:
        return RouterConfig(self.router, self.router_balance_abs_threshold,
                            self.router_balance_rel_threshold, self.router_cache_threshold)

    def engine_config(self) -> EngineConfig:
        return EngineConfig(**{f.name: getattr(self, f.name) for f in fields(EngineConfig)
                               if f.name != "tp"}, tp=self.tp)

    def trace_window(self) -> tuple[float, float | None] | None:
        """window_s, or the ``[start_s:end_s]`` at the end of ``trace`` (None: all of it)."""
        from nanosim.workload.registry import RegistryError, parse_source

        if self.trace is None:
            return None
        try:
            window = parse_source(self.trace)[1]
        except RegistryError as e:
            raise ConfigError(str(e)) from None
        return window if window is not None else self.window_s

    @property
    def gpus(self) -> int:
        return self.tp * self.replicas

    def params(self) -> dict:
        """JSON-able parameters (window_s as a list)."""
        d = asdict(self)
        if d["window_s"] is not None:
            d["window_s"] = list(d["window_s"])
        return d

    @property
    def point_id(self) -> str:
        """12 hex digits of sha256 over the sorted parameters: stable across specs."""
        blob = json.dumps(self.params(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def source_label(self) -> str:
        """Short workload name for tables and legends."""
        if self.workload is not None:
            return f"{self.workload}@{self.rate_rps:g}rps"
        return self.trace.replace("\\", "/").rsplit("/", 1)[-1]


# A sweep point: the keys above, then the engine's (EngineConfig's fields but tp, with their
# defaults and in their order), derived from EngineConfig: a new engine field is a sweep key
# with no edit here. The point id hashes the parameters by name (sorted), so ids stay the same.
_HINTS = typing.get_type_hints(EngineConfig)
Point = make_dataclass(
    "Point", [(f.name, _HINTS[f.name], field(default=f.default) if f.default is not MISSING
               else field(default_factory=f.default_factory)) for f in _ENGINE],
    bases=(_Knobs,), frozen=True, namespace={"__module__": __name__, "__doc__": (
        "One sweep point: the hardware and workload keys (_Knobs), then the engine's.")})


def check_field(name: str, value) -> None:
    """Range and choice rules of one field alone; raises ConfigError naming the rule."""
    if value is None:
        return
    if name in _CHOICES:
        if name == "gpu":
            get_gpu(value)  # accepts aliases, raises with the known names
        elif name == "model":
            get_model(value)
        elif value not in _CHOICES[name]:
            raise ConfigError(f"{value!r} is not one of {', '.join(_CHOICES[name])}")
    elif name in _AT_LEAST_1 and value < 1:
        raise ConfigError(f"must be >= 1 (got {value})")
    elif name in _POSITIVE and not value > 0:
        raise ConfigError(f"must be > 0 (got {value})")
    elif name in _NON_NEGATIVE and value < 0:
        raise ConfigError(f"must be >= 0 (got {value})")
    elif name in _FRACTIONS and not 0 < value <= 1:
        raise ConfigError(f"must be in (0, 1] (got {value})")
    elif name in ("high_priority_fraction", "router_cache_threshold") and not 0 <= value <= 1:
        raise ConfigError(f"must be in [0, 1] (got {value})")
    elif name == "window_s" and not 0 <= value[0] < value[1]:
        raise ConfigError(f"needs 0 <= start_s < end_s (got {list(value)})")


def field_types() -> dict[str, object]:
    """Field name -> its type hint (for parsing spec values)."""
    return typing.get_type_hints(Point)


def coerce(name: str, value, hint) -> object:
    """A TOML value as the field's type (int for float ok, bool for int not); ConfigError."""
    args = typing.get_args(hint)
    if type(None) in args:  # X | None: TOML has no null, so the value is an X
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"must be true or false (got {value!r})")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"must be an integer (got {value!r})")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"must be a number (got {value!r})")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"must be a string (got {value!r})")
    # tuple[float, float]: window_s
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        return (float(value[0]), float(value[1]))
    raise ConfigError(f"must be [start_s, end_s] (got {value!r})")
