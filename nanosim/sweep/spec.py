"""Experiment specs: a TOML file -> a validated list of points. Nothing runs here.

    name = "block-size"                 # required: letters, digits, - _ .
    description = "..."                 # optional, shown in the report

    [fixed]                             # one value per key, for every point
    model = "qwen3-8b"
    trace = "azure2023-conv-20min"      # registered name (nanosim trace list) or a file
    window_s = [0, 600]                 # or: trace = "azure2023-conv-20min[0:600]"

    [grid]                              # each key a LIST of values: cartesian product
    block_size_tokens = [16, 32, 64, 128, 256, 512]
    rate_scale = [1.0, 2.0]

    [[cases]]                           # optional explicit points (any keys), each one
    tp = 1                              # crossed with the grid: points = cases x grid
    replicas = 4

    [slo]                               # optional: goodput / capacity analysis
    ttft_s = 0.5                        # a request meets the SLO if TTFT <= ttft_s and
    tpot_s = 0.05                       # TPOT <= tpot_s; a point meets it if at least
    attainment = 0.99                   # this fraction of its requests do

    [output]                            # optional: what is stored per point
    steps = "binned"                    # binned (default) | full | none
    step_bins = 400                     # time bins of the binned step table

Keys of [fixed], [grid] and [[cases]] are the fields of ``nanosim.sweep.point.Point``
(run ``nanosim sweep --keys``). A key may appear in only one of [fixed] and [grid]; a case
may override a fixed key. Relative ``trace`` and ``profile`` paths are looked up in the
current directory, then the spec's folder, then the folder above it (so a spec in
experiments/ can say ``traces/x.csv`` relative to the repository); a ``trace`` that is no
file is a registered trace name, read from the trace cache (``nanosim trace download``).

Any problem -- an unknown key (with a suggestion), a value of the wrong type or out of
range, a missing trace, an impossible combination, a duplicate point -- raises
``SpecError`` naming the file, the key and the reason, before anything runs.
"""
from __future__ import annotations

import difflib
import itertools
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from nanosim.config import ConfigError
from nanosim.sweep.point import Point, check_field, coerce, field_types

TOP_KEYS = ("name", "description", "fixed", "grid", "cases", "slo", "output")
STEP_MODES = ("binned", "full", "none")


class SpecError(ConfigError):
    """A spec problem; the message starts with 'file: where: '."""


@dataclass(frozen=True)
class Slo:
    ttft_s: float  # time to first token bound, s
    tpot_s: float  # time per output token bound, s
    attainment: float = 0.99  # fraction of requests that must meet both bounds

    def __post_init__(self) -> None:
        if not (self.ttft_s > 0 and self.tpot_s > 0 and 0 < self.attainment <= 1):
            raise ConfigError("needs ttft_s > 0, tpot_s > 0 and 0 < attainment <= 1")


@dataclass(frozen=True)
class Output:
    steps: str = "binned"  # binned: step_bins time bins per replica; full: every step too
    step_bins: int = 400

    def __post_init__(self) -> None:
        if self.steps not in STEP_MODES:
            raise ConfigError(f"steps {self.steps!r} is not one of {', '.join(STEP_MODES)}")
        if self.step_bins < 1:
            raise ConfigError("step_bins must be >= 1")


@dataclass(frozen=True)
class Spec:
    name: str
    description: str
    path: str  # the spec file
    text: str  # its TOML source (stored with the results)
    points: tuple[Point, ...]
    paths: dict  # trace/profile string as written -> resolved absolute path
    slo: Slo | None = None
    output: Output = Output()
    axes: tuple[str, ...] = ()  # grid keys, then case keys, in the order written

    @property
    def point_ids(self) -> list[str]:
        return [p.point_id for p in self.points]

    def varying(self) -> list[str]:
        """Point fields that take more than one value: grid/case keys in the order written,
        then any other (e.g. a fixed key that a case overrides)."""
        names = list(dict.fromkeys([*self.axes, *(f.name for f in fields(Point))]))
        return [k for k in names if len({repr(getattr(p, k)) for p in self.points}) > 1]


def load_spec(path: str | Path) -> Spec:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: invalid TOML: {e}") from None
    return parse_spec(data, path, text)


def parse_spec(data: dict, path: Path, text: str = "") -> Spec:
    where = str(path)
    _known(data, TOP_KEYS, where, "top level")
    name = data.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise SpecError(f"{where}: name: required, letters/digits/-_. only (got {name!r})")
    fixed = _params(_table(data, "fixed", where), where, "[fixed]")
    grid = _grid(_table(data, "grid", where), where)
    overlap = sorted(set(fixed) & set(grid))
    if overlap:
        raise SpecError(f"{where}: {overlap[0]}: in both [fixed] and [grid]; keep one")
    cases = _cases(data.get("cases", []), where)
    points = _expand(fixed, grid, cases, where)
    paths = _resolve_paths(points, path, where)
    axes = tuple(dict.fromkeys([*grid, *(k for c in cases for k in c)]))
    return Spec(name, str(data.get("description", "")), str(path), text, tuple(points), paths,
                _sub(Slo, data, "slo", where), _sub(Output, data, "output", where) or Output(),
                axes)


def _known(table: dict, allowed, where: str, ctx: str) -> None:
    for key in table:
        if key not in allowed:
            near = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; known: {', '.join(allowed)}"
            raise SpecError(f"{where}: {ctx}: unknown key {key!r}{hint}")


def _table(data: dict, key: str, where: str) -> dict:
    t = data.get(key, {})
    if not isinstance(t, dict):
        raise SpecError(f"{where}: {key}: must be a table ([{key}])")
    return t


def _value(key: str, value, where: str, ctx: str, item: str = ""):
    """One parameter value, typed and range-checked, or SpecError naming it."""
    try:
        v = coerce(key, value, field_types()[key])
        check_field(key, v)
        return v
    except ConfigError as e:
        raise SpecError(f"{where}: {ctx} {key} = {value!r}{item}: {e}") from None


def _params(table: dict, where: str, ctx: str) -> dict:
    _known(table, [f.name for f in fields(Point)], where, ctx)
    return {k: _value(k, v, where, ctx) for k, v in table.items()}


def _grid(table: dict, where: str) -> dict:
    _known(table, [f.name for f in fields(Point)], where, "[grid]")
    out = {}
    for key, values in table.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"{where}: [grid] {key}: must be a non-empty list of values "
                            "(put a single value in [fixed])")
        out[key] = [_value(key, v, where, "[grid]", f" (item {i + 1})")
                    for i, v in enumerate(values)]
        if len(set(map(repr, out[key]))) != len(out[key]):
            raise SpecError(f"{where}: [grid] {key}: repeated value in {values}")
    return out


def _cases(cases, where: str) -> list[dict]:
    if not isinstance(cases, list) or not all(isinstance(c, dict) for c in cases):
        raise SpecError(f"{where}: cases: must be an array of tables ([[cases]])")
    return [_params(c, where, f"[[cases]] #{i + 1}") for i, c in enumerate(cases)]


def _expand(fixed: dict, grid: dict, cases: list[dict], where: str) -> list[Point]:
    """cases (outer) x grid (last key fastest) over fixed; each combination validated."""
    points, seen = [], {}
    keys = list(grid)
    for case in cases or [{}]:
        for combo in itertools.product(*(grid[k] for k in keys)):
            params = {**fixed, **case, **dict(zip(keys, combo))}
            p = _point(params, where)
            if p.point_id in seen:
                raise SpecError(f"{where}: points #{seen[p.point_id] + 1} and #{len(points) + 1}"
                                f" are identical ({_describe(params)}); remove the duplicate")
            seen[p.point_id] = len(points)
            points.append(p)
    return points


def _point(params: dict, where: str) -> Point:
    try:
        return Point(**params)
    except ConfigError as e:
        raise SpecError(f"{where}: point {{{_describe(params)}}}: {e}") from None


def _describe(params: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


def _resolve_paths(points: list[Point], spec_path: Path, where: str) -> dict:
    """Every distinct trace/profile path -> an existing absolute path (SpecError if none)."""
    out = {}
    for p in points:
        for key in ("trace", "profile"):
            given = getattr(p, key)
            if key == "profile" and given == "auto":
                out[given] = "auto"  # the package's shipped profiles (cost_select.make_cost_model)
            elif key == "profile" and given == "none":
                out[given] = None  # the roofline
            elif given is not None and given not in out:
                if key == "trace":
                    out[given] = _find_trace(given, spec_path, where)
                    _sniff(out[given], p.trace_format, where)
                else:
                    out[given] = _find(given, spec_path, where, key)
    return out


def _find(given: str, spec_path: Path, where: str, key: str) -> str:
    p = Path(given).expanduser()
    tried = [p] if p.is_absolute() else [Path.cwd() / p, spec_path.parent / p,
                                         spec_path.parent.parent / p]
    for t in tried:
        if t.exists():
            return str(t.resolve())
    raise SpecError(f"{where}: {key} = {given!r}: not found (tried {', '.join(map(str, tried))})")


def _find_trace(given: str, spec_path: Path, where: str) -> str:
    """A trace file (as _find, window suffix allowed) or a registered name's cached file."""
    from nanosim.workload.cache import TraceNotCached, resolve_trace

    for base in (spec_path.parent, spec_path.parent.parent):
        try:
            return str(resolve_trace(given, base=base).path.resolve())
        except TraceNotCached as e:
            raise SpecError(f"{where}: trace = {given!r}: {e}") from None
        except FileNotFoundError as e:
            last = e
    try:
        return _find(given, spec_path, where, "trace")
    except SpecError as e:
        raise SpecError(f"{e}; {str(last).split(': ', 1)[-1]}") from None


def _sniff(path: str, fmt: str | None, where: str) -> None:
    """The trace's format is recognised (reads its first lines only)."""
    from nanosim.workload import FORMAT_NAMES, detect_format

    try:
        if fmt is None:
            detect_format(path)
        elif fmt not in FORMAT_NAMES:
            raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMAT_NAMES)}")
    except ValueError as e:
        raise SpecError(f"{where}: trace {path}: {e}") from None


def _sub(cls, data: dict, key: str, where: str):
    """[slo] / [output] table -> cls, or None when absent."""
    if key not in data:
        return None
    table = _table(data, key, where)
    _known(table, [f.name for f in fields(cls)], where, f"[{key}]")
    for f in fields(cls):
        v = table.get(f.name)
        want = {"float": (int, float), "int": (int,), "str": (str,)}[f.type]
        if v is not None and (isinstance(v, bool) or not isinstance(v, want)):
            raise SpecError(f"{where}: [{key}] {f.name} = {v!r}: must be a {f.type}")
    try:
        return cls(**table)
    except ConfigError as e:
        raise SpecError(f"{where}: [{key}]: {e}") from None
