"""Real mode's engine in its own process, as vLLM's EngineCore: the HTTP process and the
engine no longer share one GIL, so streaming a few hundred SSE events per step does not hold
up the next step's scheduling and launch (in one process the two serialize: the server
reached ~57% of offline throughput on an H100 at 256 concurrent streams).

    HTTP process (EngineDriver over a CoreClient)            core process (core_main)
      add(index, prompt ids, max_tokens, sampling, arrival) ──►  Engine.add_request
      abort(index, reason)                                   ──►  Engine.abort
                                            ◄── ("step", end_s, updates, gauges) after each step

An update is (index, new output ids, status, finish_reason, preemptions, cached tokens,
first_token_s) for each request the step changed; the client keeps a mirror of each request
(MirrorSeq: the attributes EngineDriver reads from a Sequence), so the driver's loop, metrics
and streams are the same code as in one process. Both processes read time as
perf_counter() - t0 with the same t0 (CLOCK_MONOTONIC is one clock for the whole machine).

The core watches the HTTP process (sweep/lifeline.watch_driver) and exits when it is gone,
however it ends; on a normal stop it is sent ("stop",) and joined, then killed if it hangs.
"""
from __future__ import annotations

import asyncio
import collections
import multiprocessing as mp
import os
import signal
import time
import traceback

from nanosim.core.limits import length_reject_reason
from nanosim.core.sequence import Status

_ENDED = (Status.FINISHED, Status.ABORTED, Status.REJECTED)
READY_TIMEOUT_S = 3600.0  # loading and warming a large checkpoint may take minutes


class CoreError(RuntimeError):
    pass


# ---- the core process ---------------------------------------------------------------------
def core_main(a, conn, parent_pid: int, t0: float) -> None:
    """Entry point of the core process: build the LLM from the serve flags, say ready, then
    step while there is work and apply commands between steps."""
    from nanosim.sweep.lifeline import watch_driver

    # Ctrl-C reaches the whole process group: the HTTP process shuts down gracefully and then
    # stops this one with ("stop",); a dead HTTP process ends it through the lifeline
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch_driver(parent_pid)
    try:
        llm = a.make_llm(a, async_decode=None)  # async decoding where the runner supports it
        if llm.device.type != "cpu":
            llm.warmup()  # no kernel compile inside served requests
    except BaseException as e:  # noqa: BLE001 - reported to the HTTP process, which raises it
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    try:
        conn.send(("ready", dict(
            spec_name=llm.spec.name, vocab_size=llm.spec.vocab_size, cfg=llm.cfg,
            num_blocks=llm.engine.bm.num_blocks, eos_token_id=llm.eos_token_id,
            device=str(llm.device), attention=llm.runner.backend.name,
            cuda_graphs=getattr(llm.runner, "graphs", None) is not None,
            async_decode=llm.async_decode)))
        _core_loop(llm.engine, conn, t0)
    except BaseException:  # noqa: BLE001
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:
            pass
    finally:
        llm.close()


def _core_loop(engine, conn, t0: float) -> None:
    from nanosim.core.request import Request

    live: dict[int, list] = {}  # index -> [seq, tokens sent, preemptions sent]

    def apply(msg) -> bool:
        if msg[0] == "add":
            _, index, prompt_ids, max_tokens, sampling, arrival_s = msg
            req = Request(index, arrival_s, len(prompt_ids), max_tokens, prompt_token_ids=tuple(prompt_ids))
            live[index] = [engine.add_request(req, max_tokens, sampling), 0, 0]
        elif msg[0] == "abort":
            if msg[1] in live:
                engine.abort(msg[1], time.perf_counter() - t0, msg[2])
        else:  # ("stop",)
            return False
        return True

    def changes() -> list:
        updates = []
        for index, rec in list(live.items()):
            seq, sent, pre = rec
            n = len(seq.output_ids)
            ended = seq.status in _ENDED
            if n > sent or ended or seq.num_preemptions != pre:
                updates.append((index, seq.output_ids[sent:n], seq.status.value, seq.finish_reason,
                                seq.num_preemptions, seq.num_cached_tokens, seq.first_token_s))
                rec[1], rec[2] = n, seq.num_preemptions
            if ended:
                del live[index]
                engine.seqs.pop(index, None)  # a server runs for long: do not keep them
        return updates

    while True:
        if not engine.has_work:
            updates = changes()  # requests ended while idle (aborted, rejected at admission)
            if updates:
                conn.send(("step", time.perf_counter() - t0, updates, _gauges(engine)))
            if not apply(conn.recv()):  # idle: wait for a command
                return
        while conn.poll(0):
            if not apply(conn.recv()):
                return
        if engine.has_work:
            t = time.perf_counter() - t0
            end = t + engine.step(t)
            conn.send(("step", end, changes(), _gauges(engine)))


def _gauges(engine) -> tuple:
    s, bm, steps = engine.scheduler, engine.bm, engine.metrics.steps
    iteration = steps["prefill_tokens"][-1] + steps["num_decode_seqs"][-1] if steps["step"] else 0
    return (len(s.running), len(s.waiting) + len(s.swapped), bm.num_used / bm.num_blocks if bm.num_blocks else 0.0,
            bm.stat_query_tokens, bm.stat_hit_tokens, iteration)


# ---- the HTTP process's side ---------------------------------------------------------------
class MirrorSeq:
    """What EngineDriver reads of a Sequence, kept up to date from the core's updates."""

    __slots__ = ("output_ids", "status", "finish_reason", "num_preemptions", "num_cached_tokens",
                 "first_token_s")

    def __init__(self) -> None:
        self.output_ids: list[int] = []
        self.status = Status.WAITING
        self.finish_reason = ""
        self.num_preemptions = self.num_cached_tokens = 0
        self.first_token_s: float | None = None


class CoreClient:
    """Starts the core process and stands in for the Engine in EngineDriver (the methods and
    attributes it uses); CorePacer.step waits for the core's next step."""

    def __init__(self, a) -> None:
        ctx = mp.get_context("spawn")  # CUDA cannot be used in a forked child
        self._arrived: asyncio.Event | None = None  # set by start_reading, in the event loop
        self.t0 = time.perf_counter()
        self.conn, child = ctx.Pipe()
        # not a daemon: at tp > 1 the core starts the worker processes itself
        self.proc = ctx.Process(target=core_main, args=(a, child, os.getpid(), self.t0),
                                name="nanosim-engine-core")
        self.proc.start()
        child.close()
        try:
            self.info = self._wait_ready()
        except BaseException:
            self.close()
            raise
        self.cfg = self.info["cfg"]
        self.num_blocks = self.info["num_blocks"]
        self.seqs: dict[int, MirrorSeq] = {}
        self._inbox: collections.deque = collections.deque()
        self.gauges = (0, 0, 0.0, 0, 0, 0)
        self.failure: str | None = None  # set when the engine process is gone or failed

    def _wait_ready(self) -> dict:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.conn.poll(0.5):
            if not self.proc.is_alive():
                raise CoreError(f"the engine process exited (code {self.proc.exitcode}) while starting")
            if time.monotonic() > deadline:
                raise CoreError(f"the engine process was not ready after {READY_TIMEOUT_S:.0f} s")
        msg = self.conn.recv()
        if msg[0] == "error":
            raise CoreError(f"the engine process failed to start: {msg[1]}")
        return msg[1]

    # ---- the Engine surface EngineDriver uses ------------------------------------------
    def reject_reason(self, prompt_tokens: int, max_tokens: int) -> str:
        return length_reject_reason(self.cfg, self.num_blocks, prompt_tokens, max_tokens)

    @property
    def num_waiting(self) -> int:
        return self.gauges[1]

    @property
    def has_work(self) -> bool:
        return any(s.status not in _ENDED for s in self.seqs.values())

    def add_request(self, req, max_tokens: int, sampling) -> MirrorSeq:
        self.conn.send(("add", req.request_id, list(req.prompt_token_ids), max_tokens, sampling,
                        req.arrival_s))
        seq = self.seqs[req.request_id] = MirrorSeq()
        return seq

    def abort(self, index: int, now: float, reason: str = "abort") -> bool:
        seq = self.seqs.get(index)
        if seq is None or seq.status in _ENDED:
            return False
        self.conn.send(("abort", index, reason))
        # as Scheduler.abort: the stream ends now; the core frees the blocks before its next step
        seq.finish_reason = reason
        seq.status = Status.ABORTED if reason == "abort" else Status.FINISHED
        return True

    def forget(self, index: int) -> None:
        self.seqs.pop(index, None)

    def gauge_values(self) -> tuple:
        """(running, waiting, KV usage 0..1, prefix-cache query tokens, hit tokens)."""
        return self.gauges[:5]

    def last_iteration_tokens(self) -> int:
        return self.gauges[5]

    # ---- messages from the core --------------------------------------------------------
    def start_reading(self) -> None:
        loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        loop.add_reader(self.conn.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        try:
            while self.conn.poll():
                msg = self.conn.recv()
                if msg[0] == "step":
                    self.gauges = msg[3]  # the latest, also while the driver is idle
                else:  # ("error", text): the core failed and is exiting
                    self.failure = msg[1]
                self._inbox.append(msg)
        except (EOFError, OSError):
            self.proc.join(1)
            self.failure = f"the engine process exited (code {self.proc.exitcode})"
            self._inbox.append(("error", self.failure))
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
        self._arrived.set()

    async def next_step(self) -> float:
        """Wait for the core's next step; apply its updates to the mirrors; its end time."""
        while not self._inbox:
            self._arrived.clear()
            await self._arrived.wait()
        msg = self._inbox.popleft()
        if msg[0] == "error":
            raise CoreError(msg[1])
        _, end_s, updates, _ = msg
        for index, ids, status, reason, pre, cached, first in updates:
            seq = self.seqs.get(index)
            if seq is None:
                continue
            seq.output_ids.extend(ids)
            if seq.status not in _ENDED:  # an abort sent from here already ended it
                seq.status, seq.finish_reason = Status(status), reason
            seq.num_preemptions, seq.num_cached_tokens, seq.first_token_s = pre, cached, first
        return end_s

    def close(self) -> None:
        """Stop the core (it aborts what is left) and wait for it; kill it if it hangs."""
        if self._arrived is not None:
            try:
                asyncio.get_running_loop().remove_reader(self.conn.fileno())
            except (RuntimeError, ValueError, OSError):
                pass
        if self.proc.is_alive():
            try:
                self.conn.send(("stop",))
            except OSError:
                pass
            self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()


class CorePacer:
    """RealPacer's clock for an engine in its own process: a step is whatever the core ran
    next; time is the shared wall clock."""

    sim = False

    def __init__(self, core: CoreClient) -> None:
        self.core = core
        self.lag_s = self.max_lag_s = 0.0

    def now(self) -> float:
        return time.perf_counter() - self.core.t0

    def start(self, prev_end_s: float, first_arrival_s: float | None) -> float:
        return self.now()

    async def step(self, engine, t: float) -> float:
        return await self.core.next_step()

    def close(self) -> None:
        pass
