"""Building a server from `nanosim serve` flags and running it under uvicorn.

Sim mode (--sim): the simulator's engine (the same build_engine as `nanosim simulate`, so the
same KV capacity, cost model and step jitter) on a SimPacer. Real mode: an LLM (the Qwen3
runner; warmed up on a GPU) on a RealPacer. uvicorn runs in this process (no workers): on
SIGTERM/SIGINT it stops accepting, lets in-flight requests finish for --shutdown-timeout
seconds, then cancels them (their requests are aborted) and the engine loop stops.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

from nanosim.serve.app import ServerState, build_app
from nanosim.serve.driver import EngineDriver, LocalEngine
from nanosim.serve.metrics import ServerMetrics
from nanosim.serve.pacing import RealPacer, SimPacer
from nanosim.serve.tokens import SimTokenSource, Tokens

log = logging.getLogger("nanosim.serve")


def load_tokenizer(path: str):
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"--tokenizer {path}: not a directory")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(p), local_files_only=True)


def sim_state(a) -> ServerState:
    from nanosim.config import get_gpu, get_model
    from nanosim.sim.job import build_engine

    model, gpu, cfg = get_model(a.model), get_gpu(a.gpu), a.engine_config(a)
    profile = None if a.profile.lower() == "none" else a.profile
    engine = build_engine(model, gpu, cfg, profile, step_jitter=not a.no_step_jitter)
    tok = load_tokenizer(a.tokenizer) if a.tokenizer else None
    vocab = len(tok) if tok is not None else model.vocab_size
    name = a.served_model_name or a.model
    cost = engine.backend.cost_model
    log.info("sim server: %s on %s, %d KV blocks, cost model %s, speedup %g", model.name,
             gpu.name, engine.bm.num_blocks, getattr(cost, "description", cost.name), a.speedup)

    def make_driver():
        return EngineDriver(LocalEngine(engine), SimPacer(a.speedup), ServerMetrics(name, cfg.max_model_len),
                            a.max_waiting, SimTokenSource(a.seed, vocab), a.stream_interval)

    return ServerState(name, cfg.max_model_len, Tokens(tok, vocab), make_driver,
                       lambda body, max_tokens: None)


def _sampling_factory(eos: int | None):
    from nanosim.gpu.sampling_params import SamplingParams

    def make_sampling(body, max_tokens: int) -> SamplingParams:
        return SamplingParams(
            temperature=1.0 if body.temperature is None else body.temperature,
            top_k=body.top_k if body.top_k and body.top_k > 0 else 0,
            top_p=1.0 if body.top_p is None else body.top_p, max_tokens=max_tokens,
            ignore_eos=body.ignore_eos, stop_token_ids=tuple(body.stop_token_ids or ()),
            seed=body.seed, min_tokens=body.min_tokens, eos_token_id=eos)

    return make_sampling


def _front_tokenizer(a):
    """The tokenizer the HTTP process needs (text prompts, chat): --tokenizer, else the
    checkpoint's (--weights, or --model as a directory), as the LLM resolves it."""
    if a.tokenizer:
        return load_tokenizer(a.tokenizer)
    from nanosim.gpu.llm import _tokenizer

    for d in (a.weights, a.model):
        if d and Path(d).is_dir():
            return _tokenizer(Path(d))
    return None


def real_state(a) -> ServerState:
    """The engine in its own process (default; engine_core.py), or in this one
    (--no-engine-process: steps in a worker thread, or inline with --no-step-thread)."""
    name = a.served_model_name or a.model
    if a.engine_process:
        from nanosim.serve.engine_core import CoreClient, CorePacer

        if not Path(a.model).is_dir():
            from nanosim.config import get_model

            get_model(a.model)  # an unknown preset fails here, not after the core started
        tok = _front_tokenizer(a)  # before the core starts: a bad --tokenizer fails at once
        core = CoreClient(a)
        info = core.info
        eos = getattr(tok, "eos_token_id", None) if tok is not None else info["eos_token_id"]

        def make_driver():
            core.start_reading()
            return EngineDriver(core, CorePacer(core), ServerMetrics(name, core.cfg.max_model_len),
                                a.max_waiting, stream_interval=a.stream_interval)

        log.info("real server: %s on %s (%s attention, CUDA graphs %s, async decoding %s), %d KV "
                 "blocks, engine process %d", info["spec_name"], info["device"], info["attention"],
                 info["cuda_graphs"], info["async_decode"], info["num_blocks"], core.proc.pid)
        return ServerState(name, core.cfg.max_model_len, Tokens(tok, info["vocab_size"]), make_driver,
                           _sampling_factory(eos), on_close=core.close)

    llm = a.make_llm(a, async_decode=None)  # async decoding where the runner supports it
    try:
        if llm.device.type != "cpu":
            llm.warmup()  # no kernel compile inside served requests
        if a.tokenizer:
            llm.tokenizer = load_tokenizer(a.tokenizer)
            llm.eos_token_id = getattr(llm.tokenizer, "eos_token_id", None)
    except BaseException:
        llm.close()
        raise

    def make_driver():
        return EngineDriver(LocalEngine(llm.engine), RealPacer(a.step_thread),
                            ServerMetrics(name, llm.cfg.max_model_len), a.max_waiting,
                            stream_interval=a.stream_interval)

    log.info("real server: %s on %s (%s attention, CUDA graphs %s, async decoding %s), %d KV blocks",
             llm.spec.name, llm.device, llm.runner.backend.name, getattr(llm.runner, "graphs", None) is not None,
             llm.async_decode, llm.engine.bm.num_blocks)
    return ServerState(name, llm.cfg.max_model_len, Tokens(llm.tokenizer, llm.spec.vocab_size),
                       make_driver, _sampling_factory(llm.eos_token_id), on_close=llm.close)


def make_server(a):
    """(uvicorn.Server, ServerState) for parsed `nanosim serve` flags; run with
    server.run(sockets=[...]) or serve()."""
    import uvicorn

    class Server(uvicorn.Server):
        """On shutdown, in-flight requests get --shutdown-timeout seconds; then the engine
        aborts them, so their streams end cleanly (finish_reason "abort", then [DONE])
        before uvicorn's own deadline (5 s later) would cancel their tasks."""

        async def shutdown(self, sockets=None):
            driver = state.driver
            timer = None
            if driver is not None:
                driver.draining = True  # new requests: 503
                timer = asyncio.get_running_loop().call_later(a.shutdown_timeout, driver.abort_all)
            try:
                await super().shutdown(sockets)
            finally:
                if timer is not None:
                    timer.cancel()

    state = sim_state(a) if a.sim else real_state(a)
    config = uvicorn.Config(build_app(state), host=a.host, port=a.port, log_level=a.log_level,
                            access_log=False, timeout_graceful_shutdown=a.shutdown_timeout + 5.0,
                            lifespan="on")
    return Server(config), state


def listen_socket(host: str) -> socket.socket:
    """A TCP socket whose proto is IPPROTO_TCP: asyncio sets TCP_NODELAY only on connections
    accepted from such a socket (a plain socket.socket() has proto 0, and each small SSE
    write then waits on the client's delayed ACK, ~40 ms)."""
    return socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                         socket.IPPROTO_TCP)


def serve(a) -> int:
    logging.basicConfig(level=a.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    sock = listen_socket(a.host)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:  # before the (slow) engine build: a busy port is reported at once
        sock.bind((a.host, a.port))
    except OSError as e:
        sock.close()
        raise RuntimeError(f"--port {a.port}: cannot listen on {a.host}:{a.port} ({e})") from None
    try:
        server, _ = make_server(a)
        print(f"nanosim serve: listening on http://{a.host}:{sock.getsockname()[1]}", flush=True)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown
            return 130
    finally:
        sock.close()
    return 0
