"""The public traces nanosim knows by name: the data of ``traces.toml`` as frozen entries.

    from nanosim.workload.registry import get_entry, parse_source
    get_entry("azure2023-conv").url
    parse_source("azure2023-conv[0:1200]")    # -> ("azure2023-conv", (0.0, 1200.0))

An entry is an upstream file (``url``) or a cut of one (``parent`` + ``cut``: the first
lines of the parent, byte for byte). How a file is checked (``check``):

    sha256    a published sha256 (or Git LFS object id) of the exact bytes
    git-blob  only the git object id is known: sha1(b"blob <size>\\0" + bytes)
    recorded  nothing published: the first download's sha256 is recorded beside the file
"""
from __future__ import annotations

import difflib
import functools
import math
import re
from dataclasses import dataclass, field
from importlib import resources

_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*")
# NAME[start:end] with seconds; either bound may be empty ([600:] = from 600 s to the end)
_WINDOW = re.compile(r"^(?P<base>.+?)\[(?P<a>[^\[\]:]*):(?P<b>[^\[\]:]*)\]$")


class RegistryError(ValueError):
    """A bad registry entry or an unknown trace name."""


@dataclass(frozen=True)
class Cut:
    """The first lines of the parent file (its header line, if any, always kept)."""

    rows: int | None = None  # keep this many data rows, or
    seconds: float | None = None  # keep the rows whose time is < seconds ...
    field: str | None = None  # ... read from this CSV column / JSON key
    unit_s: float = 1.0  # seconds per unit of a numeric time (Mooncake: 0.001, ms)
    from_first: bool = False  # time counted from the first row's (else absolute)

    def __post_init__(self) -> None:
        if (self.rows is None) == (self.seconds is None) or (self.seconds is not None
                                                             and not self.field):
            raise RegistryError(f"a cut needs rows, or seconds and field (got {self})")


@dataclass(frozen=True)
class TraceEntry:
    name: str
    title: str
    file: str  # file name in the cache directory
    format: str  # nanosim.workload format NAME (azure, burstgpt, mooncake, vidur, sharegpt)
    url: str | None = None  # upstream download (None for a cut)
    parent: str | None = None  # a cut's source entry
    cut: Cut | None = None
    bytes: int | None = None
    sha256: str | None = None
    git_blob: str | None = None
    rows: int | None = None  # data rows (approximate where the upstream gives thousands)
    license: str = ""
    citation: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise RegistryError(f"trace name {self.name!r}: lower-case letters, digits, - and .")
        if (self.url is None) == (self.parent is None) or (self.parent is None) != (self.cut is None):
            raise RegistryError(f"trace {self.name}: give url, or parent and cut")
        if self.parent is not None and self.sha256 is None:
            raise RegistryError(f"trace {self.name}: a cut needs its sha256")

    @property
    def check(self) -> str:
        return "sha256" if self.sha256 else "git-blob" if self.git_blob else "recorded"

    def size_label(self) -> str:
        if self.bytes is None:
            return "?"
        mib = self.bytes / 2**20
        return f"{self.bytes / 1024:.0f} KiB" if mib < 1 else f"{mib:.1f} MiB"


@dataclass(frozen=True)
class Registry:
    entries: tuple[TraceEntry, ...]
    _by_name: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for e in self.entries:
            if e.name in self._by_name:
                raise RegistryError(f"trace {e.name}: listed twice")
            self._by_name[e.name] = e
        for e in self.entries:
            if e.parent is not None and e.parent not in self._by_name:
                raise RegistryError(f"trace {e.name}: unknown parent {e.parent!r}")

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def get(self, name: str) -> TraceEntry:
        if name not in self._by_name:
            near = difflib.get_close_matches(name, self.names, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else " (nanosim trace list)"
            raise RegistryError(f"{name!r} is not a registered trace name{hint}")
        return self._by_name[name]

    def parent_of(self, entry: TraceEntry) -> TraceEntry | None:
        return None if entry.parent is None else self._by_name[entry.parent]

    def root_of(self, entry: TraceEntry) -> TraceEntry:
        """The upstream entry a cut is made from (the entry itself if it is upstream)."""
        while entry.parent is not None:
            entry = self._by_name[entry.parent]
        return entry


def parse_registry(data: dict) -> Registry:
    out = []
    for i, raw in enumerate(data.get("trace", [])):
        raw = dict(raw)
        try:
            if "cut" in raw:
                raw["cut"] = Cut(**raw["cut"])
            entry = TraceEntry(**raw)
        except TypeError as e:
            raise RegistryError(f"[[trace]] #{i + 1} ({raw.get('name')}): {e}") from None
        out.append(entry)
    reg = Registry(tuple(out))
    for e in reg.entries:  # a cut says what its parent does not
        p = reg.root_of(e)
        if e.parent is not None:
            object.__setattr__(e, "license", e.license or p.license)
            object.__setattr__(e, "citation", e.citation or p.citation)
    return reg


@functools.cache
def registry() -> Registry:
    """The packaged registry (nanosim/workload/traces.toml), read once."""
    import tomllib  # here: a trace given as a file path needs no registry

    text = resources.files("nanosim.workload").joinpath("traces.toml").read_text()
    return parse_registry(tomllib.loads(text))


def get_entry(name: str) -> TraceEntry:
    return registry().get(name)


def parse_source(source: str) -> tuple[str, tuple[float, float | None] | None]:
    """``"name[a:b]"`` -> (name, (a, b)) in seconds; no brackets -> (source, None).
    An empty start is 0, an empty end is None (to the end of the trace)."""
    m = _WINDOW.match(source)
    if m is None:
        return source, None
    try:
        a = float(m["a"]) if m["a"].strip() else 0.0
        b = float(m["b"]) if m["b"].strip() else None
    except ValueError:
        raise RegistryError(f"{source!r}: the window must be [start_s:end_s] in seconds, "
                            "e.g. azure2023-conv[0:1200]") from None
    if not (math.isfinite(a) and a >= 0 and (b is None or (math.isfinite(b) and b > a))):
        raise RegistryError(f"{source!r}: the window needs 0 <= start_s < end_s")
    return m["base"], (a, b)
