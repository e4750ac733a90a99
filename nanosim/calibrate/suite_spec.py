"""A validation suite: the runs `nanosim validate --suite SUITE.toml` makes, read from TOML.

    [suite]                      name, description (optional)
    [defaults]                   models (or model), tp, max_model_len, seed: for every trace
    [loads.NAME]                 rate_scale, max_requests, num_kv_blocks (optional)
    [[trace]]                    one per trace; its runs are loads x models x tp
    name = "conv-late"           short name (run folders are NAME-LOAD-MODEL-tpN)
    role = "held_out"            or "tuned": the scorecard groups rows by it
    trace = "azure2023-conv"     a file or registered name ... (or workload = "summarization")
    window = [2400, 3600]        ... with an optional window in seconds
    loads = ["light", "medium"]  default: every load of the suite
    quick = ["light"]            the loads `--quick` runs (default: none of this trace's)
    rate_scale = 1.0             multiplies each load's rate scale (a sparse trace: > 1)
    num_kv_blocks = 160          replaces the KV blocks of the loads that cap them (long prompts)
    models, tp, max_model_len, seed, rate, failed, note: per-trace overrides / extras

The built-in loads are the calibration's (benchmarks/calibrate_loads.sh): light, the first
200 requests as recorded; medium, 400 at 4x the rate; saturated, 600 at 16x with 40 KV
blocks. A bad file is one error line, "FILE:LINE: what", before any run starts.
"""
from __future__ import annotations

import argparse
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from nanosim.config import ConfigError

ROLES = ("held_out", "tuned")


class SuiteError(ConfigError):
    """A suite file that cannot be run; ``str(err)`` is ``"file:line: problem"``."""


@dataclass(frozen=True)
class Load:
    rate_scale: float
    max_requests: int
    num_kv_blocks: int | None = None


DEFAULT_LOADS = {"light": Load(1.0, 200), "medium": Load(4.0, 400),
                 "saturated": Load(16.0, 600, 40)}


@dataclass(frozen=True)
class SuiteRun:
    """One replay pair of the suite: a trace at a load, on one model and tp."""

    name: str  # TRACE-LOAD-MODEL-tpN: its folder under OUT/runs/
    trace_name: str
    role: str  # "held_out" | "tuned"
    load: str
    source: str  # trace file/name with its window, or "workload:NAME"
    model: str
    tp: int
    rate_scale: float  # the load's times the trace's
    max_requests: int
    num_kv_blocks: int | None
    max_model_len: int
    seed: int
    rate: float | None  # req/s of Poisson arrivals (workloads, traces without timestamps)
    failed: str | None  # BurstGPT's failed rows: drop / keep / error
    quick: bool  # in the --quick subset
    line: int  # of its [[trace]] table in the suite file
    note: str = ""

    def workload_args(self) -> argparse.Namespace:
        """The flags `nanosim validate` would take for this run (cli_common.load_requests')."""
        wl = self.source.split(":", 1)[1] if self.source.startswith("workload:") else None
        return argparse.Namespace(
            trace=None if wl else self.source, workload=wl, format=None, rate=self.rate,
            failed=self.failed, seed=self.seed, num_requests=self.max_requests,
            rate_scale=self.rate_scale, max_requests=self.max_requests)


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str
    description: str
    runs: tuple[SuiteRun, ...]

    def select(self, quick: bool = False, only: tuple[str, ...] = (),
               max_requests: int | None = None) -> list[SuiteRun]:
        """The runs to make: the --quick subset, those whose name contains one of ``only``,
        each capped at ``max_requests``."""
        from dataclasses import replace

        out = [r for r in self.runs if (r.quick or not quick)
               and (not only or any(o in r.name for o in only))]
        if max_requests is not None:
            out = [replace(r, max_requests=min(r.max_requests, max_requests)) for r in out]
        return out


_TOP = {"suite", "defaults", "loads", "trace"}
_DEFAULT_KEYS = {"model", "models", "tp", "max_model_len", "seed"}
_LOAD_KEYS = {"rate_scale", "max_requests", "num_kv_blocks"}
_TRACE_KEYS = {"name", "role", "trace", "workload", "window", "loads", "quick", "rate_scale",
               "model", "models", "tp", "max_model_len", "seed", "rate", "failed", "note",
               "num_kv_blocks"}


class _Where:
    """Line numbers of tables and keys in the suite's text (tomllib gives none)."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.lines = path, text.splitlines()

    def table(self, header: str, index: int = 0) -> int:
        pat = re.compile(r"^\s*" + re.escape(header) + r"\s*(#.*)?$")
        hits = [i + 1 for i, s in enumerate(self.lines) if pat.match(s)]
        return hits[index] if index < len(hits) else 1

    def key(self, start: int, key: str) -> int:
        """The line of ``key = ...`` in the table that starts at line ``start``."""
        pat = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        for i in range(start, len(self.lines)):
            if i > start and self.lines[i].lstrip().startswith("["):
                break
            if pat.match(self.lines[i]):
                return i + 1
        return start

    def error(self, line: int, what: str) -> SuiteError:
        return SuiteError(f"{self.path}:{line}: {what}")


def _check_keys(where: _Where, line: int, table: dict, known: set, what: str) -> None:
    for k in table:
        if k not in known:
            raise where.error(where.key(line, k) if line else 1,
                              f"{what}: unknown key {k!r} (known: {', '.join(sorted(known))})")


def _number(where, line, table, key, what, kind, low, default=None):
    """table[key] as ``kind`` (int/float) >= low (> 0 for floats when low is 0)."""
    if key not in table:
        return default
    v = table[key]
    ok = (isinstance(v, (int, float)) and not isinstance(v, bool)
          and (kind is float or isinstance(v, int)) and v >= low and (kind is int or v > 0))
    if not ok:
        need = f"an integer >= {low}" if kind is int else "a number > 0"
        raise where.error(where.key(line, key), f"{what}: {key} must be {need} (got {v!r})")
    return kind(v)


def _names(where, line, table, key, what, default) -> list:
    """A string or list of strings (models = "a" or ["a", "b"])."""
    v = table.get(key, default)
    vs = [v] if isinstance(v, (str, int)) and not isinstance(v, bool) else v
    if not isinstance(vs, list) or not vs:
        raise where.error(where.key(line, key), f"{what}: {key} must be a value or a non-empty list")
    return vs


def load_suite(path: str | Path, models: list[str] | None = None) -> Suite:
    """Read and check a suite file (module doc); raise SuiteError naming file:line.
    ``models``: run every trace on these models instead of the file's."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SuiteError(f"{path}: cannot read the suite file ({e})") from None
    where = _Where(path, text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise where.error(int(m.group(1)) if m else 1, f"not valid TOML ({e})") from None
    for k in doc:
        if k not in _TOP:
            raise where.error(where.table(f"[{k}]") if isinstance(doc[k], dict) else where.key(0, k),
                              f"unknown table {k!r} (known: {', '.join(sorted(_TOP))})")
    head = doc.get("suite", {})
    defaults = doc.get("defaults", {})
    dline = where.table("[defaults]") if "defaults" in doc else 0
    _check_keys(where, dline, defaults, _DEFAULT_KEYS, "[defaults]")
    loads = dict(DEFAULT_LOADS)
    for name, t in doc.get("loads", {}).items():
        line = where.table(f"[loads.{name}]")
        what = f"load {name!r}"
        if not isinstance(t, dict):
            raise where.error(line, f"{what} must be a table")
        _check_keys(where, line, t, _LOAD_KEYS, what)
        base = loads.get(name, Load(1.0, 200))
        loads[name] = Load(_number(where, line, t, "rate_scale", what, float, 0, base.rate_scale),
                           _number(where, line, t, "max_requests", what, int, 1, base.max_requests),
                           _number(where, line, t, "num_kv_blocks", what, int, 1, base.num_kv_blocks))
    traces = doc.get("trace", [])
    if not isinstance(traces, list) or not traces:
        raise where.error(1, "no [[trace]] tables: a suite needs at least one trace")
    runs, names = [], set()
    for i, t in enumerate(traces):
        line = where.table("[[trace]]", i)
        if models:
            t = {**{k: v for k, v in t.items() if k not in ("model", "models")}, "models": list(models)}
        runs += _trace_runs(where, line, t, defaults, loads, names)
    seen = set()
    for r in runs:
        if r.name in seen:
            raise where.error(r.line, f"two runs named {r.name!r}")
        seen.add(r.name)
    return Suite(path, str(head.get("name", path.stem)), str(head.get("description", "")), tuple(runs))


def _trace_runs(where: _Where, line: int, t: dict, defaults: dict, loads: dict,
                names: set) -> list[SuiteRun]:
    name = t.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)*", name or "-"):
        raise where.error(where.key(line, "name"), "[[trace]]: name must be a word of letters, digits, "
                          f"'_', '.', '-' (got {name!r})")
    what = f"trace {name!r}"
    if name in names:
        raise where.error(line, f"{what}: a trace of that name is already in the suite")
    names.add(name)
    _check_keys(where, line, t, _TRACE_KEYS, what)
    role = t.get("role")
    if role not in ROLES:
        raise where.error(where.key(line, "role"), f"{what}: role must be one of {', '.join(ROLES)} "
                          f"(got {role!r}); say whether the cost model was tuned on it")
    if ("trace" in t) == ("workload" in t):
        raise where.error(line, f"{what}: give exactly one of trace = FILE|NAME or workload = SUITE")
    if "workload" in t:
        from nanosim.workload.synthetic import SUITES

        if t["workload"] not in SUITES:
            raise where.error(where.key(line, "workload"), f"{what}: unknown workload "
                              f"{t['workload']!r} (known: {', '.join(sorted(SUITES))})")
        source = f"workload:{t['workload']}"
    else:
        source = str(t["trace"])
    if "window" in t:
        w = t["window"]
        if ("workload" in t or not isinstance(w, list) or len(w) != 2
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 for x in w)
                or not w[0] < w[1]):
            raise where.error(where.key(line, "window"), f"{what}: window must be [start_s, end_s] "
                              f"with 0 <= start_s < end_s, on a trace (got {w!r})")
        source = f"{source}[{w[0]:g}:{w[1]:g}]"
    run_loads = _names(where, line, t, "loads", what, list(loads))
    quick = _names(where, line, t, "quick", what, []) if "quick" in t else []
    for key, ls in (("loads", run_loads), ("quick", quick)):
        bad = [x for x in ls if x not in loads]
        if bad or (key == "quick" and not set(quick) <= set(run_loads)):
            raise where.error(where.key(line, key), f"{what}: {key} names {bad or quick} "
                              f"not among {'the suite loads ' + str(list(loads)) if bad else 'its loads'}")
    scale = _number(where, line, t, "rate_scale", what, float, 0, 1.0)
    models = _names(where, line, t, "models" if "models" in t else "model",
                    what, t.get("model", defaults.get("models", defaults.get("model", "qwen3-0.6b"))))
    tps = _names(where, line, t, "tp", what, defaults.get("tp", 1))
    if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in tps):
        raise where.error(where.key(line, "tp"), f"{what}: tp must be integers >= 1 (got {tps!r})")
    merged = {**defaults, **t}
    max_len = _number(where, line if "max_model_len" in t else 0, merged, "max_model_len", what, int, 16, 4096)
    seed = _number(where, line, merged, "seed", what, int, 0, 0)
    rate = _number(where, line, t, "rate", what, float, 0, None)
    blocks = _number(where, line, t, "num_kv_blocks", what, int, 1, None)  # for loads that cap KV
    failed = t.get("failed")
    if failed not in (None, "drop", "keep", "error"):
        raise where.error(where.key(line, "failed"), f"{what}: failed must be drop, keep or error")
    runs = []
    for model in models:
        short = Path(str(model)).name  # a local checkpoint folder: its last part
        for tp in tps:
            for ld in run_loads:
                spec = loads[ld]
                runs.append(SuiteRun(
                    f"{name}-{ld}-{short}-tp{tp}", name, role, ld, source, str(model), tp,
                    spec.rate_scale * scale, spec.max_requests,
                    blocks if blocks and spec.num_kv_blocks else spec.num_kv_blocks, max_len, seed,
                    rate, failed, ld in quick, line, str(t.get("note", ""))))
    return runs
