"""``nanosim trace download``: fetch registered traces into the cache directory.

pooch does the fetch-verify-move: the file is written under a temporary name in the cache
directory, its hash is checked, and only then is it moved to its final name, so a partial
or corrupt download is never found under the trace's file name. pooch has no resume, so
its downloader here is ``ResumableDownloader``: it streams into ``<file>.part`` and, when
that exists from an interrupted run, asks only for the rest (HTTP ``Range``; ``file://``
URLs read from the same offset). Data that then fails the check is discarded, never resumed.

Files with only a git blob id are checked against it after pooch moves them (and removed
if they fail); files with no published checksum get their sha256 recorded beside them.
A cut (registry.Cut) is taken from a mirror when one holds it, else made from its
verified parent; either way it must match its own sha256.
"""
from __future__ import annotations

import csv
import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from nanosim.workload.cache import (cache_dir, git_blob_id, problem, record_checksum,
                                    recorded_path)
from nanosim.workload.registry import Cut, Registry, TraceEntry, registry

ENV_MIRROR = "NANOSIM_TRACE_MIRROR"
_CHUNK = 1 << 16  # bytes per read / write


class DownloadError(RuntimeError):
    """One line: what could not be fetched, why, and what to do."""


class ResumableDownloader:
    """A pooch downloader (called as ``(url, output_file, pooch)``) that resumes."""

    def __init__(self, part: Path, progress: bool = True, timeout_s: float = 60.0) -> None:
        self.part, self.progress, self.timeout_s = part, progress, timeout_s

    def __call__(self, url: str, output_file, pooch=None) -> None:
        offset = self.part.stat().st_size if self.part.is_file() else 0
        if urlparse(url).scheme == "file":
            self._copy(Path(url2pathname(urlparse(url).path)), offset)
        else:
            self._http(url, offset)
        os.replace(self.part, output_file)  # complete: pooch checks it and moves it in place

    def _bar(self, total: int | None, offset: int):
        from tqdm import tqdm

        return tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=self.part.name.removesuffix(".part"), disable=not self.progress,
                    file=sys.stderr, leave=False)

    def _copy(self, src: Path, offset: int) -> None:
        size = src.stat().st_size
        if offset > size:
            offset = 0  # not a prefix of this file: start again
        with open(src, "rb") as fin, open(self.part, "ab" if offset else "wb") as fout, \
                self._bar(size, offset) as bar:
            fin.seek(offset)
            while chunk := fin.read(_CHUNK):
                fout.write(chunk)
                bar.update(len(chunk))

    def _http(self, url: str, offset: int) -> None:
        import requests  # pooch's own HTTP client

        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout_s) as r:
            if offset and r.status_code == 416:  # nothing after offset: the .part is whole
                return
            r.raise_for_status()
            if offset and r.status_code != 206:
                offset = 0  # the server ignored the Range header: start again
            length = r.headers.get("Content-Length")
            total = int(length) + offset if length is not None else None
            with open(self.part, "ab" if offset else "wb") as f, self._bar(total, offset) as bar:
                for chunk in r.iter_content(_CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))


def source_url(entry: TraceEntry, mirror: str | None) -> str:
    """The entry's upstream URL, or ``<mirror>/<file>`` (mirror: argument, else $NANOSIM_TRACE_MIRROR)."""
    mirror = mirror or os.environ.get(ENV_MIRROR)
    return f"{mirror.rstrip('/')}/{entry.file}" if mirror else entry.url


def download(name: str, directory=None, *, mirror: str | None = None, progress: bool = True,
             timeout_s: float = 60.0, log=print, reg: Registry | None = None) -> Path:
    """Fetch ``name`` (a cut: its parent first) into the cache; the verified path.
    ``reg``: another registry than the packaged one (tests, private mirrors)."""
    reg = reg or registry()
    entry = reg.get(name)
    folder = cache_dir(directory)
    path = folder / entry.file
    why = problem(entry, path)
    if why is None:
        log(f"{name}: already in {path}")
        return path
    if why != "missing":
        log(f"{name}: {path} failed its check ({why}); fetching it again")
        path.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    if entry.parent is not None and (mirror or os.environ.get(ENV_MIRROR)):
        try:  # a mirror may hold the cut itself (e.g. a folder of the shared samples)
            _fetch(entry, folder, source_url(entry, mirror), progress, timeout_s)
            log(f"{name}: sha256 verified -> {path}")
            return path
        except DownloadError:
            pass  # not there: make it from the parent
    if entry.parent is not None:
        try:
            parent = download(entry.parent, folder, mirror=mirror, progress=progress,
                              timeout_s=timeout_s, log=log, reg=reg)
        except DownloadError as e:  # say what the parent was for, and the shortcut
            raise DownloadError(f"{e} (needed to make {name}; or put {entry.file}, sha256 "
                                f"{entry.sha256}, into {folder} by hand)") from None
        make_cut(entry, parent, path)
        log(f"{name}: cut from {parent.name}, sha256 verified -> {path}")
        return path
    _fetch(entry, folder, source_url(entry, mirror), progress, timeout_s)
    if entry.check == "git-blob" and git_blob_id(path) != entry.git_blob:
        got = git_blob_id(path)
        path.unlink()
        raise DownloadError(f"{name}: the download's git blob id {got} is not the registered "
                            f"{entry.git_blob}; it was discarded (the upstream file changed?)")
    if entry.check == "recorded":
        digest = record_checksum(path)
        log(f"{name}: no published checksum; recorded sha256 {digest} in "
            f"{recorded_path(path).name}")
    log(f"{name}: {entry.check} verified -> {path}")
    return path


def _fetch(entry: TraceEntry, folder: Path, url: str, progress: bool, timeout_s: float) -> None:
    import pooch
    import requests

    pooch.get_logger().setLevel("WARNING")  # our own lines say what happens
    part = folder / (entry.file + ".part")
    known = f"sha256:{entry.sha256}" if entry.sha256 else None
    try:
        pooch.retrieve(url, known_hash=known, fname=entry.file, path=folder,
                       downloader=ResumableDownloader(part, progress, timeout_s))
    except requests.RequestException as e:
        kept = f"; {part.stat().st_size} bytes kept in {part.name}, the next download resumes" \
            if part.is_file() and part.stat().st_size else ""
        raise DownloadError(f"{entry.name}: could not download {url}: {_reason(e)}{kept}; or put "
                            f"{entry.file} into {folder} by hand") from None
    except OSError as e:
        raise DownloadError(f"{entry.name}: could not read or write {url} -> {folder}: {e}") from None
    except ValueError as e:  # pooch: hash mismatch (the file was not kept)
        raise DownloadError(f"{entry.name}: the download from {url} does not match the registered "
                            f"sha256 {entry.sha256}; it was discarded ({_first_line(e)})") from None
    if entry.bytes is not None and (folder / entry.file).stat().st_size != entry.bytes:
        (folder / entry.file).unlink()  # only possible without a sha256
        raise DownloadError(f"{entry.name}: the download is not {entry.bytes} bytes; discarded")


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _reason(e: Exception) -> str:
    import requests

    if isinstance(e, requests.ConnectionError):
        return "no connection (offline?)"
    if isinstance(e, requests.Timeout):
        return "timed out"
    if isinstance(e, requests.exceptions.ChunkedEncodingError):
        return "the connection dropped mid-file"
    if isinstance(e, requests.HTTPError) and e.response is not None:
        return f"HTTP {e.response.status_code}"
    return _first_line(e)


# ----------------------------------------------------------------------------- cuts


def make_cut(entry: TraceEntry, parent: Path, out: Path) -> None:
    """Write the first lines of ``parent`` that ``entry.cut`` keeps to ``out``, byte for
    byte, and check them against ``entry.sha256`` (DownloadError, nothing written, if not)."""
    from nanosim.workload.cache import file_sha256

    tmp = out.with_name(out.name + ".cut")
    with open(parent, "rb") as fin, open(tmp, "wb") as fout:
        for line in _kept_lines(entry.cut, fin, header=entry.file.endswith(".csv")):
            fout.write(line)
    got = file_sha256(tmp)
    if got != entry.sha256:
        tmp.unlink()
        raise DownloadError(f"{entry.name}: the cut of {parent.name} has sha256 {got}, not the "
                            f"registered {entry.sha256}; not written (the upstream file changed?)")
    os.replace(tmp, out)


def _kept_lines(cut: Cut, lines, header: bool):
    columns = None
    if header:
        first = next(lines, b"")
        yield first
        columns = next(csv.reader([first.decode().rstrip("\r\n")]))
        if cut.field is not None and cut.field not in columns:
            raise DownloadError(f"cut: no column {cut.field!r} in the header {columns}")
    t0 = None
    for n, line in enumerate(lines):
        if cut.rows is not None:
            if n >= cut.rows:
                return
        else:
            try:
                t = _time(line.decode(), cut, columns)
            except (ValueError, KeyError, IndexError) as e:
                raise DownloadError(f"cut: data row {n + 1}: no time in {cut.field!r} "
                                    f"({type(e).__name__}: {e})") from None
            t0 = t if t0 is None else t0
            if (t - t0 if cut.from_first else t) >= Decimal(str(cut.seconds)):
                return
        yield line


def _time(line: str, cut: Cut, columns: list[str] | None) -> Decimal:
    """The row's time in seconds, exactly (Decimal: no float rounding at the boundary)."""
    if columns is None:
        value = json.loads(line)[cut.field]
    else:
        value = next(csv.reader([line.rstrip("\r\n")]))[columns.index(cut.field)]
    try:
        return Decimal(str(value)) * Decimal(str(cut.unit_s))
    except ArithmeticError:
        import pandas as pd

        return Decimal(pd.Timestamp(value).value) / Decimal(10**9)  # wall clock, ns exact
