"""`nanosim trace download` against local mirrors only: a file:// folder and an HTTP server
on 127.0.0.1 (checksum mismatch, interruption and resume, a server without Range, no
network, cuts made from a downloaded parent). Nothing here reaches the internet."""
import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nanosim.cli import main
from nanosim.workload.cache import TraceNotCached, cached_path, file_sha256, git_blob_id, problem
from nanosim.workload.download import DownloadError, download
from nanosim.workload.registry import parse_registry

ROWS = "".join(f"{i * 0.25:.2f},{100 + i % 50},{10 + i % 7}\n" for i in range(40_000))
DATA = ("arrival_s,prompt_tokens,output_tokens\n" + ROWS).encode()  # ~600 kB
HEAD = DATA.split(b"\n")
CUT = b"\n".join(HEAD[:1 + 400]) + b"\n"  # header + rows with arrival_s < 100 s


def make_registry(**changes):
    """demo (sha256), blob (git blob only), tofu (no checksum) and a cut of demo."""
    base = {"title": "T", "format": "canonical_csv", "license": "CC0", "citation": "none"}
    demo = {**base, "name": "demo", "file": "demo.csv", "url": "https://example.invalid/demo.csv",
            "bytes": len(DATA), "sha256": hashlib.sha256(DATA).hexdigest()}
    entries = [demo,
               {**base, "name": "blob", "file": "demo.csv", "url": demo["url"],
                "git_blob": hashlib.sha1(b"blob %d\0" % len(DATA) + DATA).hexdigest()},
               {**base, "name": "tofu", "file": "demo.csv", "url": demo["url"]},
               {**base, "name": "demo-100s", "file": "demo_100s.csv", "parent": "demo",
                "sha256": hashlib.sha256(CUT).hexdigest(), "bytes": len(CUT),
                "cut": {"seconds": 100, "field": "arrival_s"}}]
    for e in entries:
        e.update(changes.get(e["name"], {}))
    return parse_registry({"trace": entries})


@pytest.fixture
def mirror(tmp_path):
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "demo.csv").write_bytes(DATA)
    return (tmp_path / "mirror").as_uri()


class Handler(BaseHTTPRequestHandler):
    """Serves DATA; honours Range when server.ranges; the next server.cut_after responses
    stop after that many bytes of the body and drop the connection."""

    def do_GET(self):
        srv = self.server
        srv.seen.append(self.headers.get("Range"))
        start, status = 0, 200
        if self.headers.get("Range") and srv.ranges:
            start, status = int(self.headers["Range"].split("=")[1].split("-")[0]), 206
        body = DATA[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cut_after:
            self.wfile.write(body[: srv.cut_after.pop(0)])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.seen, srv.ranges, srv.cut_after = [], True, []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def url_of(srv) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


def fetch(name, cache, mirror, reg=None, **kw):
    return download(name, cache, mirror=mirror, progress=False, log=lambda *_: None,
                    reg=reg or make_registry(), timeout_s=10, **kw)


def test_file_mirror_download_is_verified_and_reused(tmp_path, mirror):
    cache = tmp_path / "cache"
    path = fetch("demo", cache, mirror)
    assert path.read_bytes() == DATA and sorted(p.name for p in cache.iterdir()) == ["demo.csv"]
    lines = []
    download("demo", cache, mirror="file:///nowhere", reg=make_registry(), log=lines.append)
    assert "already in" in lines[0]  # a whole cached file is not fetched again


def test_checksum_mismatch_is_discarded(tmp_path, mirror, server):
    reg = make_registry(demo={"sha256": "0" * 64})
    for source in (mirror, url_of(server)):
        with pytest.raises(DownloadError, match="does not match the registered sha256"):
            fetch("demo", tmp_path / "cache", source, reg)
        assert list((tmp_path / "cache").iterdir()) == []  # no file, no .part


def test_http_interrupted_download_resumes(tmp_path, server):
    cache = tmp_path / "cache"
    server.cut_after = [300_000]  # the connection drops after 300 kB
    with pytest.raises(DownloadError, match="bytes kept in demo.csv.part.*resumes"):
        fetch("demo", cache, url_of(server))
    kept = (cache / "demo.csv.part").stat().st_size  # whole chunks received before the drop
    assert not (cache / "demo.csv").exists() and 200_000 < kept <= 300_000
    with pytest.raises(TraceNotCached):  # the partial file is never handed out as the trace
        cached_path(make_registry().get("demo"), cache)
    path = fetch("demo", cache, url_of(server))
    assert server.seen == [None, f"bytes={kept}-"]  # only the rest was asked for
    assert path.read_bytes() == DATA and not (cache / "demo.csv.part").exists()


def test_server_without_range_restarts_from_zero(tmp_path, server):
    server.ranges = False
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "demo.csv.part").write_bytes(b"junk" * 100)
    assert fetch("demo", tmp_path / "cache", url_of(server)).read_bytes() == DATA


def test_corrupt_partial_is_not_resumed_twice(tmp_path, server):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "demo.csv.part").write_bytes(b"X" * 1000)  # wrong bytes, resumed once: mismatch
    with pytest.raises(DownloadError, match="does not match"):
        fetch("demo", cache, url_of(server))
    assert list(cache.iterdir()) == []
    assert fetch("demo", cache, url_of(server)).read_bytes() == DATA  # from scratch


def test_no_network_is_one_clear_line(tmp_path, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="no connection") as e:
        fetch("demo", tmp_path / "cache", f"http://127.0.0.1:{port}")
    assert "\n" not in str(e.value) and "by hand" in str(e.value)
    with pytest.raises(DownloadError, match="needed to make demo-100s; or put demo_100s.csv"):
        fetch("demo-100s", tmp_path / "cache", f"http://127.0.0.1:{port}")
    rc = main(["trace", "download", "azure2023-conv", "--dir", str(tmp_path / "c2"),
               "--mirror", f"http://127.0.0.1:{port}", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "no connection" in err
    assert not list((tmp_path / "c2").glob("AzureLLMInferenceTrace_conv.csv"))
    assert main(["trace", "download", "azure2023-conv", "no-such-trace", "--dir",
                 str(tmp_path / "c3")]) == 2  # every name checked before anything is fetched
    assert "not a registered trace name" in capsys.readouterr().err
    assert not (tmp_path / "c3").exists()


def test_git_blob_and_recorded_checks(tmp_path, mirror):
    path = fetch("blob", tmp_path / "a", mirror)
    assert git_blob_id(path) == make_registry().get("blob").git_blob
    with pytest.raises(DownloadError, match="git blob id"):
        fetch("blob", tmp_path / "b", mirror, make_registry(blob={"git_blob": "1" * 40}))
    assert not (tmp_path / "b" / "demo.csv").exists()
    path = fetch("tofu", tmp_path / "c", mirror)
    assert (tmp_path / "c" / "demo.csv.sha256").read_text().split()[0] == file_sha256(path)
    path.write_bytes(DATA[:-1] + b"9")
    assert "recorded" in problem(make_registry().get("tofu"), path)
    assert fetch("tofu", tmp_path / "c", mirror).read_bytes() == DATA  # damaged: fetched again


def test_cut_is_made_from_the_downloaded_parent(tmp_path, mirror, server):
    for source, cache in ((mirror, tmp_path / "a"), (url_of(server), tmp_path / "b")):
        path = fetch("demo-100s", cache, source)
        assert path.read_bytes() == CUT and (cache / "demo.csv").read_bytes() == DATA
    (tmp_path / "mirror" / "demo_100s.csv").write_bytes(CUT)  # a mirror holding the cut
    (tmp_path / "mirror" / "demo.csv").unlink()
    assert fetch("demo-100s", tmp_path / "d", mirror).read_bytes() == CUT
    assert not (tmp_path / "d" / "demo.csv").exists()  # the parent was not needed
    (tmp_path / "mirror" / "demo_100s.csv").write_bytes(CUT[:-2] + b"9\n")  # a bad copy there
    with pytest.raises(DownloadError, match="needed to make demo-100s"):  # parent gone too
        fetch("demo-100s", tmp_path / "e", mirror)
    assert not (tmp_path / "e" / "demo_100s.csv").exists()
    (tmp_path / "mirror" / "demo.csv").write_bytes(DATA)
    bad = make_registry(**{"demo-100s": {"cut": {"seconds": 99, "field": "arrival_s"}}})
    with pytest.raises(DownloadError, match="not the registered"):
        fetch("demo-100s", tmp_path / "c", mirror, bad)
    assert not (tmp_path / "c" / "demo_100s.csv").exists()
