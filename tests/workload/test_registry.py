"""The trace registry: its entries, names with windows, the pre-filled cache, clear errors."""
import re
import shutil

import pytest

from nanosim.cli import main
from nanosim.workload import FORMAT_NAMES, TraceNotCached, detect_format, load_trace
from nanosim.workload.cache import file_sha256, resolve_trace
from nanosim.workload.download import make_cut
from nanosim.workload.registry import (Cut, RegistryError, TraceEntry, parse_registry,
                                       parse_source, registry)
from nanosim.workload.transforms import time_window

REQUIRED = ["azure2023-conv", "azure2023-code", "azure2024-conv", "azure2024-code", "burstgpt-1",
            "mooncake-conversation", "mooncake-synthetic", "mooncake-toolagent",
            "vidur-arxiv-summarization", "vidur-splitwise-conv", "vidur-splitwise-code",
            "sharegpt-v3"]
CUTS = [e for e in registry().entries if e.parent is not None]
# one data line just past each cut's end, in the parent's own style
PAST_END = {"azure2023-code-20min": b"2023-11-16 18:37:03.9799600,5,5",  # first + 1200 s exactly
            "azure2023-conv-20min": b"2023-11-16 18:35:46.6805900,5,5",
            "burstgpt-1-head": b"33000,ChatGPT,5,5,10,Conversation log\n",
            "mooncake-conversation-20min": b'{"timestamp": 1200000, "input_length": 5, '
                                           b'"output_length": 5, "hash_ids": [0]}\n',
            "mooncake-synthetic-340s": b'{"timestamp": 340000, "input_length": 5, '
                                       b'"output_length": 5, "hash_ids": [0]}\n',
            "vidur-arxiv-summarization-14k": b"100,10,110,10.0\n"}


def test_registry_lists_the_public_traces_with_sources_and_licenses():
    reg = registry()
    assert set(REQUIRED) <= set(reg.names)
    for e in reg.entries:
        assert e.format in FORMAT_NAMES and e.license and e.citation, e.name
        root = reg.root_of(e)
        assert root.url.startswith("https://"), e.name
        assert e.check in ("sha256", "git-blob", "recorded")
        assert e.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", e.sha256), e.name
        assert e.git_blob is None or re.fullmatch(r"[0-9a-f]{40}", e.git_blob), e.name
    assert reg.get("azure2023-conv").check == "sha256"
    assert reg.get("mooncake-toolagent").check == "git-blob"
    assert reg.get("azure2024-conv").check == reg.get("sharegpt-v3").check == "recorded"
    assert set(PAST_END) == {e.name for e in CUTS}


def test_bad_registry_entries_are_refused():
    one = {"name": "a", "title": "A", "file": "a.csv", "format": "azure", "url": "https://x/a.csv"}
    with pytest.raises(RegistryError, match="listed twice"):
        parse_registry({"trace": [one, one]})
    with pytest.raises(RegistryError, match="unknown parent"):
        parse_registry({"trace": [{**one, "url": None, "parent": "b", "sha256": "0" * 64,
                                   "cut": {"rows": 3}}]})
    with pytest.raises(RegistryError, match="needs its sha256"):
        TraceEntry("c", "C", "c.csv", "azure", parent="a", cut=Cut(rows=3))
    with pytest.raises(RegistryError, match="seconds and field"):
        Cut(seconds=3)
    with pytest.raises(RegistryError, match="unexpected keyword"):
        parse_registry({"trace": [{**one, "sha": "x"}]})


def test_parse_source_windows():
    assert parse_source("azure2023-conv") == ("azure2023-conv", None)
    assert parse_source("azure2023-conv[0:1200]") == ("azure2023-conv", (0.0, 1200.0))
    assert parse_source("x.csv[600:]") == ("x.csv", (600.0, None))
    assert parse_source("x[:30.5]") == ("x", (0.0, 30.5))
    for bad in ("x[a:b]", "x[5:5]", "x[-1:4]", "x[3:1]"):
        with pytest.raises(RegistryError, match="window"):
            parse_source(bad)


@pytest.mark.parametrize("entry", CUTS, ids=lambda e: e.name)
def test_shared_samples_are_the_registered_cuts(entry, trace_cache):
    path = trace_cache / entry.file
    assert path.stat().st_size == entry.bytes and file_sha256(path) == entry.sha256
    assert detect_format(path) == entry.format
    header = entry.file.endswith(".csv")
    assert len(path.read_bytes().splitlines()) - header == entry.rows
    assert resolve_trace(entry.name).path == path


@pytest.mark.parametrize("entry", CUTS, ids=lambda e: e.name)
def test_cut_rule_remakes_the_shared_sample(entry, trace_cache, tmp_path):
    """A parent = the sample + one row past its end (the upstream's next rows are later)."""
    sample = (trace_cache / entry.file).read_bytes()
    parent = tmp_path / "parent"
    parent.write_bytes(sample + PAST_END[entry.name])
    make_cut(entry, parent, tmp_path / entry.file)
    assert (tmp_path / entry.file).read_bytes() == sample
    shorter = sample[: sample.rstrip(b"\r\n").rfind(b"\n") + 1]
    parent.write_bytes(shorter + PAST_END[entry.name])  # another file: refused, nothing written
    (tmp_path / entry.file).unlink()
    with pytest.raises(RuntimeError, match="not the registered"):
        make_cut(entry, parent, tmp_path / entry.file)
    assert list(tmp_path.iterdir()) == [parent]


def test_name_with_window_loads_like_the_file(trace_cache):
    path = trace_cache / "azure2023_conv_first20min.csv"
    full = load_trace(path)
    assert load_trace("azure2023-conv-20min") == full
    assert load_trace("azure2023-conv-20min[0:600]") == time_window(full, 0, 600)
    assert load_trace("azure2023-conv-20min[600:]") == time_window(full, 600)
    assert load_trace(f"{path}[0:600]") == time_window(full, 0, 600)  # a path takes one too
    lengths = load_trace("vidur-arxiv-summarization-14k", rate_rps=2.0, seed=1)
    assert len(lengths) == 14000


def test_not_cached_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    import socket

    def offline(*args):
        raise AssertionError("resolving a trace name must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", offline)
    monkeypatch.setattr(socket, "create_connection", offline)
    monkeypatch.setenv("NANOSIM_TRACE_DIR", str(tmp_path))
    with pytest.raises(TraceNotCached) as e:
        load_trace("azure2023-conv[0:60]")
    msg = str(e.value)
    assert "\n" not in msg and "nanosim trace download azure2023-conv`" in msg
    assert str(tmp_path) in msg and "AzureLLMInferenceTrace_conv.csv" in msg
    rc = main(["simulate", "--trace", "azure2023-conv", "--out", str(tmp_path / "o"),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "nanosim trace download azure2023-conv" in err
    assert not (tmp_path / "o").exists()  # nothing ran
    with pytest.raises(FileNotFoundError, match="did you mean 'azure2023-conv'"):
        load_trace("azure2023-cnv")


def test_damaged_cached_file_is_never_used(trace_cache, tmp_path, monkeypatch):
    good = (trace_cache / "azure2023_conv_first20min.csv").read_bytes()
    monkeypatch.setenv("NANOSIM_TRACE_DIR", str(tmp_path))
    path = tmp_path / "azure2023_conv_first20min.csv"
    path.write_bytes(good[:1000])  # partial
    with pytest.raises(TraceNotCached, match="damaged.*bytes, expected"):
        load_trace("azure2023-conv-20min")
    path.write_bytes(good[:-3] + b"999")  # same size, other bytes
    with pytest.raises(TraceNotCached, match="damaged.*sha256"):
        load_trace("azure2023-conv-20min")
    path.write_bytes(good)
    assert len(load_trace("azure2023-conv-20min")) == 5985


def test_recorded_checksum_guards_later_uses(tmp_path, monkeypatch):
    """No published checksum: the first use records one, a changed file is refused after."""
    import nanosim.workload.cache as cache

    entry = TraceEntry("t", "T", "t.csv", "canonical_csv", url="https://example.invalid/t.csv")
    (tmp_path / "t.csv").write_text("arrival_s,prompt_tokens,output_tokens\n0,5,5\n")
    assert cache.cached_path(entry, tmp_path) == tmp_path / "t.csv"
    assert (tmp_path / "t.csv.sha256").read_text().split()[0] == file_sha256(tmp_path / "t.csv")
    (tmp_path / "t.csv").write_text("arrival_s,prompt_tokens,output_tokens\n0,5,6\n")
    with pytest.raises(TraceNotCached, match="recorded"):
        cache.cached_path(entry, tmp_path)


def test_trace_list_shows_cached_cuts(trace_cache, capsys, tmp_path):
    assert main(["trace", "list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[2:] if line and line[0] != "c"}
    assert rows["azure2023-conv-20min"].endswith("yes") and rows["azure2023-conv"].endswith("no")
    assert "CC-BY-4.0" in rows["azure2023-conv"] and "recorded" in rows["sharegpt-v3"]
    shutil.copy(trace_cache / "mooncake_synthetic_first340s.jsonl", tmp_path)
    assert main(["trace", "list", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"mooncake-synthetic-340s .* yes", out) and "azure2023-conv-20min" in out
    assert main(["trace", "info", "azure2023-conv-20min"]) == 0
    assert "Splitwise" in capsys.readouterr().out


def test_docs_list_every_registered_trace():
    from tests.sweep.helpers import REPO

    doc = (REPO / "docs" / "traces.md").read_text()
    missing = [n for n in registry().names if f"| `{n}` |" not in doc]
    assert not missing, f"docs/traces.md lacks {missing}"
