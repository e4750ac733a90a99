"""``nanosim trace ...``: inspect, convert, list and download traces.

    nanosim trace list [--dir DIR]                     registered traces, sizes, licenses, cached?
    nanosim trace info NAME                            URL, checksum, format, license, citation
    nanosim trace download NAME... [--dir DIR] [--mirror URL]
    nanosim trace stats SOURCE    |  nanosim trace convert SOURCE OUT

SOURCE is a trace file or a registered name, either with an optional [start_s:end_s].
"""
from __future__ import annotations

import argparse


def add_trace_parser(sub, arrival_options) -> None:
    """The ``trace`` subcommand; ``arrival_options(args, source)`` gives the loader options
    and, for a trace without timestamps, a note of the arrivals assumed (cli_checks.py,
    shared with simulate/run)."""
    from nanosim.cli_args import add_trace_options, int_at_least, positive_float

    t = sub.add_parser("trace", help="list, download, inspect or convert traces")
    acts = t.add_subparsers(dest="action", required=True)
    for name, helptext in (("stats", "statistics of a trace"),
                           ("convert", "write a trace in the canonical CSV / JSONL format")):
        a = acts.add_parser(name, help=helptext)
        a.add_argument("file", metavar="SOURCE", help="trace file or registered name[start:end]")
        if name == "convert":
            a.add_argument("out", help="output file (.csv or .jsonl)")
        a.add_argument("--format", default=None, help="force a trace format")
        a.add_argument("--block-size", type=int_at_least(1), default=16,
                       help="block size for the reuse ratio")
        add_trace_options(a)
        a.add_argument("--seed", type=int_at_least(0), default=0)
        a.set_defaults(func=lambda args: cmd_stats_convert(args, arrival_options))
    ls = acts.add_parser("list", help="registered public traces: size, license, cached or not")
    ls.add_argument("--dir", default=None, help="trace cache (default $NANOSIM_TRACE_DIR, "
                                                "else the user cache dir)")
    ls.set_defaults(func=cmd_list)
    info = acts.add_parser("info", help="one registered trace: URL, checksum, license, citation")
    info.add_argument("name")
    info.add_argument("--dir", default=None)
    info.set_defaults(func=cmd_info)
    dl = acts.add_parser("download", help="fetch registered traces (resumable, verified)")
    dl.add_argument("names", nargs="+", metavar="NAME")
    dl.add_argument("--dir", default=None, help="trace cache to fill (default $NANOSIM_TRACE_DIR, "
                                                "else the user cache dir)")
    dl.add_argument("--mirror", default=None, metavar="URL",
                    help="fetch <URL>/<file> instead of the upstream URL (also "
                         "$NANOSIM_TRACE_MIRROR; http(s):// or file://)")
    dl.add_argument("--timeout", type=positive_float, default=60.0, help="seconds without data before giving up")
    dl.add_argument("--no-progress", action="store_true")
    dl.set_defaults(func=cmd_download)


def cmd_stats_convert(a: argparse.Namespace, arrival_options) -> int:
    from nanosim.output import atomic_file
    from nanosim.workload import format_stats, load_trace, trace_stats, write_canonical

    options, synthetic = arrival_options(a, a.file)
    reqs = load_trace(a.file, format=a.format, **options)
    if a.action == "stats":
        print(format_stats(trace_stats(reqs, block_size_tokens=a.block_size), synthetic))
    else:
        with atomic_file(a.out, "OUT") as tmp:  # all of it or nothing
            write_canonical(reqs, tmp)
        print(f"wrote {len(reqs)} requests to {a.out}")
    return 0


def _state(entry, directory) -> str:
    from nanosim.workload.cache import cache_dir, problem

    why = problem(entry, cache_dir(directory) / entry.file)
    return "yes" if why is None else "no" if why == "missing" else "damaged"


def cmd_list(a: argparse.Namespace) -> int:
    from nanosim.workload.cache import cache_dir
    from nanosim.workload.registry import registry

    reg = registry()
    rows = [("name", "size", "format", "check", "license", "cached")]
    for e in reg.entries:
        check = e.check if e.parent is None else f"sha256, cut of {e.parent}"
        rows.append((e.name, e.size_label(), e.format, check, e.license.split(" ")[0],
                     _state(e, a.dir)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"trace cache: {cache_dir(a.dir)}")
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    print("check: sha256 = published checksum; git-blob = git object id only; recorded = no "
          "published checksum, the first download's sha256 is recorded and checked after")
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    from nanosim.workload.cache import cache_dir
    from nanosim.workload.registry import registry

    reg = registry()
    e = reg.get(a.name)
    source = e.url if e.parent is None else f"cut of {e.parent} ({reg.root_of(e).url})"
    for key, value in (("name", e.name), ("title", e.title), ("source", source),
                       ("file", cache_dir(a.dir) / e.file), ("cached", _state(e, a.dir)),
                       ("bytes", e.bytes), ("sha256", e.sha256), ("git blob", e.git_blob),
                       ("check", e.check), ("format", e.format), ("rows", e.rows),
                       ("license", e.license), ("cite", e.citation), ("notes", e.notes)):
        if value not in (None, ""):
            print(f"{key:>8}: {value}")
    return 0


def cmd_download(a: argparse.Namespace) -> int:
    from nanosim.workload.download import download
    from nanosim.workload.registry import registry

    for name in a.names:  # every name is checked before anything is fetched
        registry().get(name)
    for name in a.names:
        download(name, a.dir, mirror=a.mirror, progress=not a.no_progress, timeout_s=a.timeout)
    return 0
