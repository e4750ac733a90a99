"""`nanosim bench serve`: replay a trace against an OpenAI-compatible endpoint.

Each request is sent at its arrival time (time.perf_counter from the start; a request sent
late, because the client fell behind or --max-concurrency connections were busy, records its
lateness) as a streaming /v1/completions call (aiohttp; --client-processes N deals the requests
to N processes when one event loop cannot read the chunks fast enough): the prompt as token ids of the trace's length
(the same ids the simulator hashes for prefix caching), max_tokens = the trace's output
length, ignore_eos, include_usage and return_token_ids (vLLM's extension; without it each
chunk counts as one token). Every chunk's receive time and token count is kept.

Times are seconds on the client's clock from the replay's start. ttft_s = first token chunk -
send; tpot_s = (last token chunk - first token chunk) / (output tokens - 1), vLLM bench
serve's TPOT; e2e_s = last token chunk - send.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field, replace

from nanosim.core.request import Request, unique_tokens


@dataclass
class Record:
    request_id: int
    arrival_s: float  # scheduled
    prompt_tokens: int
    max_tokens: int
    send_s: float = float("nan")
    chunk_times_s: list = field(default_factory=list)
    chunk_tokens: list = field(default_factory=list)
    output_tokens: int = 0
    cached_tokens: int = 0
    error: str = ""


@dataclass(frozen=True)
class BenchOptions:
    endpoint: str  # base URL, e.g. http://127.0.0.1:8000
    model: str | None = None
    max_concurrency: int = 256
    temperature: float = 0.0
    timeout_s: float = 600.0
    ignore_eos: bool = True
    token_ids: bool = True  # ask for return_token_ids
    progress: bool = False
    processes: int = 1  # client processes (one event loop each)


def base_url(endpoint: str) -> str:
    url = endpoint.rstrip("/")
    for suffix in ("/v1/completions", "/v1"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--endpoint {endpoint!r}: give an http:// or https:// URL")
    return url


def prompt_ids(r: Request) -> list[int]:
    ids = r.token_ids()
    return (ids if ids is not None else unique_tokens(r.request_id, r.prompt_tokens)).tolist()


async def resolve_model(session, url: str) -> str:
    async with session.get(url + "/v1/models") as resp:
        resp.raise_for_status()
        data = (await resp.json()).get("data") or []
    if not data:
        raise RuntimeError(f"{url}/v1/models lists no model; pass --model")
    return data[0]["id"]


def _session(opts: BenchOptions):
    import aiohttp

    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=opts.max_concurrency, force_close=False),
        timeout=aiohttp.ClientTimeout(total=opts.timeout_s, connect=30.0))


def replay(requests: list[Request], opts: BenchOptions) -> tuple[list[Record], dict]:
    """Send every request at its arrival time; returns (records, run info). With
    opts.processes > 1 the requests are dealt round-robin to that many client processes
    (one event loop each) sharing one start time: time.perf_counter is the system-wide
    monotonic clock on Linux, so their times compare."""
    import asyncio

    url = base_url(opts.endpoint)
    model = opts.model or asyncio.run(_model(url, opts))
    reqs = sorted(requests, key=lambda r: (r.arrival_s, r.request_id))
    if opts.processes <= 1:
        records, bodies = _prepare(reqs, model, opts)  # built before the clock starts
        t0 = time.perf_counter() + 0.05
        records = asyncio.run(_replay_part(records, bodies, url, opts, t0, opts.progress))
    else:
        records = _replay_processes(reqs, model, url, opts)
    records.sort(key=lambda r: r.request_id)
    wall = max((r.chunk_times_s[-1] for r in records if r.chunk_times_s), default=0.0)
    return records, {"model": model, "endpoint": url, "wall_s": wall,
                     "client_processes": max(1, opts.processes)}


async def _model(url: str, opts: BenchOptions) -> str:
    import aiohttp

    try:
        async with _session(opts) as session:
            return await resolve_model(session, url)
    except (aiohttp.ClientError, OSError) as e:
        raise RuntimeError(f"--endpoint {opts.endpoint}: {e!r}") from None


def _prepare(reqs, model: str, opts: BenchOptions):
    records = [Record(r.request_id, r.arrival_s, r.prompt_tokens, r.output_tokens) for r in reqs]
    return records, [_body(r, model, opts) for r in reqs]


async def _replay_part(records, bodies, url: str, opts: BenchOptions, t0: float,
                       progress: bool) -> list[Record]:
    """This process's share, each request sent at t0 + arrival_s (t0 a perf_counter value)."""
    sem = asyncio.Semaphore(opts.max_concurrency)
    bar = _bar(len(records)) if progress else None
    async with _session(opts) as session:
        tasks = []
        for rec, body in zip(records, bodies):
            delay = t0 + rec.arrival_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_one(session, url, body, rec, sem, t0, bar)))
        await asyncio.gather(*tasks)
    if bar is not None:
        bar.close()
    return records


def _replay_processes(reqs, model: str, url: str, opts: BenchOptions) -> list[Record]:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    n = opts.processes
    per = replace(opts, max_concurrency=max(1, -(-opts.max_concurrency // n)))
    ready, results = ctx.Queue(), ctx.Queue()
    starts = [ctx.Queue() for _ in range(n)]
    procs = [ctx.Process(target=_worker, args=(reqs[i::n], model, url, per, ready, starts[i], results),
                         daemon=True) for i in range(n)]
    try:
        for p in procs:
            p.start()
        for _ in range(n):
            ready.get(timeout=120)
        t0 = time.perf_counter() + 0.2  # every worker is waiting: a common start
        for q in starts:
            q.put(t0)
        out: list[Record] = []
        for _ in range(n):
            part = results.get()
            if isinstance(part, str):
                raise RuntimeError(f"a bench client process failed: {part}")
            out.extend(part)
        for p in procs:
            p.join(timeout=30)
        return out
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()


def _worker(reqs, model, url, opts, ready, start, results) -> None:
    import asyncio

    try:
        records, bodies = _prepare(reqs, model, opts)
        ready.put(True)
        t0 = start.get()
        results.put(asyncio.run(_replay_part(records, bodies, url, opts, t0, False)))
    except BaseException as e:  # reported by the parent
        results.put(f"{type(e).__name__}: {e}")


def _body(r: Request, model: str, opts: BenchOptions) -> bytes:
    body = {"model": model, "prompt": prompt_ids(r), "max_tokens": r.output_tokens,
            "temperature": opts.temperature, "stream": True,
            "stream_options": {"include_usage": True}}
    if opts.ignore_eos:
        body["ignore_eos"] = True
    if opts.token_ids:
        body["return_token_ids"] = True
    return json.dumps(body).encode()


async def _one(session, url: str, body: bytes, rec: Record, sem, t0: float, bar) -> None:
    import aiohttp

    async with sem:
        rec.send_s = time.perf_counter() - t0
        try:
            async with session.post(url + "/v1/completions", data=body,
                                    headers={"Content-Type": "application/json"}) as resp:
                if resp.status != 200:
                    text = (await resp.read()).decode(errors="replace")
                    rec.error = f"HTTP {resp.status}: {text[:300]}"
                    return
                await _read_stream(resp, rec, t0)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            rec.error = f"{type(e).__name__}: {e}"
        finally:
            if bar is not None:
                bar.update(1)


async def _read_stream(resp, rec: Record, t0: float) -> None:
    buf, usage_tokens = b"", None
    async for data in resp.content.iter_any():
        now = time.perf_counter() - t0
        buf += data
        *events, buf = buf.split(b"\n\n")
        for ev in events:
            if not ev.startswith(b"data: "):
                continue  # comments / keep-alives
            payload = ev[6:].strip()
            if payload == b"[DONE]":
                continue
            obj = json.loads(payload)
            if "error" in obj:
                rec.error = str(obj["error"])[:300]
                continue
            for ch in obj.get("choices") or ():
                ids = ch.get("token_ids")
                n = len(ids) if ids is not None else (1 if (ch.get("text") or _delta(ch)) else 0)
                if n:
                    rec.chunk_times_s.append(now)
                    rec.chunk_tokens.append(n)
            u = obj.get("usage")
            if u:
                usage_tokens = u.get("completion_tokens")
                rec.cached_tokens = (u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    rec.output_tokens = usage_tokens if usage_tokens is not None else sum(rec.chunk_tokens)


def _delta(choice: dict) -> str:
    return (choice.get("delta") or {}).get("content") or ""


def _bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="req", desc="bench serve", mininterval=0.5)
