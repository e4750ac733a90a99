"""Where registered traces live on disk, whether a cached file is whole, and turning a trace
source (a path, a registered name, either with an optional ``[start_s:end_s]`` window)
into a file to load.

The cache directory is ``$NANOSIM_TRACE_DIR``, else the platform's user cache directory
(platformdirs: ``~/.cache/nanosim/traces`` on Linux). A registered file is used only when
it passes its check (registry.py: sha256, git blob id, or the sha256 recorded at its first
download); resolving a name never downloads: a missing file raises ``TraceNotCached``
naming the command that fetches it and the file to put there by hand.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from nanosim.workload.registry import TraceEntry

ENV_DIR = "NANOSIM_TRACE_DIR"
_CHUNK = 1 << 20  # bytes read per hash update


class TraceNotCached(FileNotFoundError):
    """A registered trace that is not (or not whole) in the cache directory."""


def cache_dir(directory: str | os.PathLike | None = None) -> Path:
    """``directory``, else $NANOSIM_TRACE_DIR, else the user cache dir + /traces."""
    if directory is not None:
        return Path(directory).expanduser()
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    import platformdirs

    return platformdirs.user_cache_path("nanosim") / "traces"


def file_sha256(path: str | os.PathLike) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def git_blob_id(path: str | os.PathLike) -> str:
    """git's object id of the file's bytes: sha1(b"blob <size>\\0" + bytes)."""
    import hashlib

    h = hashlib.sha1(b"blob %d\0" % os.path.getsize(path))
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def recorded_path(path: Path) -> Path:
    """Sidecar holding the sha256 recorded at first download (entries with no checksum)."""
    return path.with_name(path.name + ".sha256")


def problem(entry: TraceEntry, path: Path) -> str | None:
    """Why the cached ``path`` must not be used for ``entry``, or None when it is whole."""
    if not path.is_file():
        return "missing"
    if entry.bytes is not None and path.stat().st_size != entry.bytes:
        return f"{path.stat().st_size} bytes, expected {entry.bytes} (a partial or changed file)"
    if entry.sha256:
        got = file_sha256(path)
        return None if got == entry.sha256 else f"sha256 {got[:12]}..., expected {entry.sha256[:12]}..."
    if entry.git_blob:
        got = git_blob_id(path)
        return None if got == entry.git_blob else f"git blob {got[:12]}..., expected {entry.git_blob[:12]}..."
    rec = recorded_path(path)
    if rec.is_file():
        want = rec.read_text().split()[0]
        got = file_sha256(path)
        return None if got == want else f"sha256 {got[:12]}..., recorded {want[:12]}..."
    return None  # nothing to check against: record_checksum() on first use


def record_checksum(path: Path) -> str | None:
    """Write the sidecar of a file with no published checksum; None in a read-only folder."""
    digest = file_sha256(path)
    try:
        recorded_path(path).write_text(f"{digest}  {path.name}\n")
    except OSError:
        return None
    return digest


def cached_path(entry: TraceEntry, directory: str | os.PathLike | None = None) -> Path:
    """The verified cached file of ``entry``; TraceNotCached (one line) otherwise."""
    folder = cache_dir(directory)
    path = folder / entry.file
    why = problem(entry, path)
    if why is None:
        if entry.check == "recorded" and not recorded_path(path).is_file():
            record_checksum(path)
        return path
    check = (f"sha256 {entry.sha256}" if entry.sha256 else
             f"git blob {entry.git_blob}" if entry.git_blob else "no published checksum")
    state = "is not in" if why == "missing" else f"is damaged in ({why})"
    raise TraceNotCached(f"trace {entry.name!r} {state} the trace cache {folder}: run "
                         f"`nanosim trace download {entry.name}`, or put {entry.file} ({check}) "
                         f"there by hand ({ENV_DIR} selects another folder)")


def is_cached(entry: TraceEntry, directory: str | os.PathLike | None = None) -> bool:
    return problem(entry, cache_dir(directory) / entry.file) is None


@dataclass(frozen=True)
class TraceSource:
    """What a trace argument names: a file, and the window of it to keep (seconds)."""

    path: Path
    window_s: tuple[float, float | None] | None = None
    entry: TraceEntry | None = None  # set when given by registered name

    @property
    def format(self) -> str | None:
        return None if self.entry is None else self.entry.format


def resolve_trace(source: str | os.PathLike, directory: str | os.PathLike | None = None,
                  base: Path | None = None) -> TraceSource:
    """A path (relative ones: from the current directory, then ``base``) or a registered
    name, each with an optional ``[start_s:end_s]`` window. An existing file named exactly
    ``source`` wins over a window suffix and over a registered name. (The registry, its
    TOML and its names' checks, is imported only past an existing file: ~5 ms.)"""
    if not isinstance(source, str):
        return TraceSource(Path(source))
    for folder in (Path.cwd(), base):
        if folder is not None and (folder / source).expanduser().is_file():
            return TraceSource((folder / source).expanduser())
    from nanosim.workload.registry import RegistryError, parse_source, registry

    name, window = parse_source(source)
    for folder in (Path.cwd(), base):
        if window is not None and folder is not None and (folder / name).expanduser().is_file():
            return TraceSource((folder / name).expanduser(), window)
    reg = registry()
    if name in reg:
        entry = reg.get(name)
        return TraceSource(cached_path(entry, directory), window, entry)
    if not Path(name).suffix and "/" not in name and os.sep not in name:  # meant as a name
        try:
            reg.get(name)
        except RegistryError as e:
            raise FileNotFoundError(f"trace {source!r}: no such file, and {e}") from None
    raise FileNotFoundError(f"trace {source!r}: no such file (nor a registered trace name: "
                            "nanosim trace list)")
