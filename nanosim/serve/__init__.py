"""Online serving: `nanosim serve` (an OpenAI-compatible HTTP server over the same Engine as
offline runs, on the real Qwen3 runner or on the simulated GPU) and `nanosim bench serve`
(a trace replayed against any OpenAI-compatible endpoint).

Data flow, one file per step:
    protocol.py  request bodies (pydantic) and OpenAI response / SSE chunk dicts
    tokens.py    prompt -> token ids, token ids -> text, sim mode's deterministic token ids
    driver.py    the asyncio engine loop: admits requests, steps the Engine, streams tokens
    pacing.py    the two clocks: real (step in a worker thread) and sim (sleep to predicted ends)
    metrics.py   Prometheus metrics with vLLM's names
    app.py       the FastAPI routes
    server.py    building the engine from CLI flags and running uvicorn
    bench.py / bench_stats.py   the load generator and its tables

Needs the ``serve`` extra (fastapi, uvicorn, prometheus-client, aiohttp); only these commands
import it.
"""
