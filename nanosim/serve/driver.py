"""The engine loop of `nanosim serve`: the same Engine.step as offline runs, driven by asyncio.

    handler --submit()--> pending --(arrival_s <= step start)--> engine.add_request
    loop:  t = pacer.start(...); admit; end = await pacer.step(engine, t); emit(end)
    emit:  every live request's new output tokens -> its asyncio.Queue (one item per step)

Only the loop touches the engine; handlers append to ``pending`` and ``_ending`` (abort on
disconnect, or a stop string found), which the loop applies between steps. ``max_waiting``
bounds requests received and not yet running (HTTP 503 beyond it).

The engine is an in-process Engine behind LocalEngine (sim mode; real mode with
--no-engine-process) or the engine process's CoreClient (engine_core.py): both offer the few
methods below, and the Sequence-like objects add_request returns are read, never changed.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from nanosim.core.request import Request
from nanosim.core.sequence import Sequence, Status
from nanosim.serve.protocol import RequestError

log = logging.getLogger("nanosim.serve")
_ENDED = (Status.FINISHED, Status.ABORTED, Status.REJECTED)


@dataclass(eq=False)
class Job:
    """One request inside the server."""

    index: int  # the engine's request id (order of arrival)
    prompt_ids: list[int]
    max_tokens: int
    sampling: object  # SamplingParams (real mode) or None
    arrival_s: float
    draw: object = None  # sim mode: n -> n made-up token ids
    seq: Sequence | None = None
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)  # (ids, end_s) per step; None at the end
    sent: int = 0  # output tokens put on the queue
    counted: int = 0  # output tokens counted in the metrics
    last_token_s: float | None = None
    preemptions: int = 0
    finish_reason: str | None = None
    cached_tokens: int = 0


class LocalEngine:
    """The driver's view of an Engine in this process."""

    def __init__(self, engine) -> None:
        self.engine, self.cfg = engine, engine.cfg
        self.step, self.add_request, self.abort = engine.step, engine.add_request, engine.abort

    def reject_reason(self, prompt_tokens: int, max_tokens: int) -> str:
        return self.engine.scheduler.reject_reason(prompt_tokens, max_tokens)

    @property
    def num_waiting(self) -> int:
        return len(self.engine.scheduler.waiting)

    @property
    def has_work(self) -> bool:
        return self.engine.has_work

    def forget(self, index: int) -> None:
        self.engine.seqs.pop(index, None)  # a server runs for long: do not keep them

    failure = None  # an engine in this process fails through the loop (EngineDriver.error)

    def gauge_values(self) -> tuple:
        """(running, waiting, KV usage 0..1, prefix-cache query tokens, hit tokens)."""
        e = self.engine
        s, bm = e.scheduler, e.bm
        return (len(s.running), len(s.waiting) + len(s.swapped),
                bm.num_used / bm.num_blocks if bm.num_blocks else 0.0, bm.stat_query_tokens,
                bm.stat_hit_tokens)

    def last_iteration_tokens(self) -> int:
        steps = self.engine.metrics.steps
        return steps["prefill_tokens"][-1] + steps["num_decode_seqs"][-1] if steps["step"] else 0


class EngineDriver:
    def __init__(self, engine, pacer, metrics, max_waiting: int, tokens_src=None,
                 stream_interval: int = 1) -> None:
        self.engine, self.pacer, self.metrics = engine, pacer, metrics  # LocalEngine or CoreClient
        self.max_waiting = max_waiting
        self.stream_interval = stream_interval  # tokens per stream item after the first
        self.tokens_src = tokens_src  # SimTokenSource in sim mode
        self.pending: list[Job] = []
        self.live: dict[int, Job] = {}
        self._ending: list[tuple[Job, str]] = []
        self._wake = asyncio.Event()
        self._next_index = 0
        self._stopping = False
        self._task: asyncio.Task | None = None
        self.error: BaseException | None = None  # set if the loop died (health turns 503)
        self.draining = False  # the server is shutting down: refuse new requests

    # ---- called by handlers -----------------------------------------------------------
    def check_lengths(self, prompt_tokens: int, max_tokens: int) -> None:
        reason = self.engine.reject_reason(prompt_tokens, max_tokens)
        if reason:
            raise RequestError(f"this model's maximum context length is "
                               f"{self.engine.cfg.max_model_len} tokens: {reason}",
                               "max_tokens" if prompt_tokens < self.engine.cfg.max_model_len else "prompt")

    def submit(self, prompt_ids: list[int], max_tokens: int, sampling=None,
               seed: int | None = None) -> Job:
        if self.engine.failure is not None:
            raise RequestError(f"the engine failed: {self.engine.failure}", status=503)
        if self._stopping or self.draining or not self.healthy:
            raise RequestError("the server is shutting down", status=503)
        if len(self.pending) + self.engine.num_waiting >= self.max_waiting:
            raise RequestError(f"too many waiting requests (--max-waiting {self.max_waiting}); "
                               "retry later", status=503)
        self.check_lengths(len(prompt_ids), max_tokens)
        job = Job(self._next_index, prompt_ids, max_tokens, sampling, self.pacer.now())
        if self.tokens_src is not None:
            job.draw = self.tokens_src.generator(job.index, seed)
        self._next_index += 1
        self.pending.append(job)
        self.metrics.req_max_tokens.observe(max_tokens)
        self._wake.set()
        return job

    def end(self, job: Job, reason: str = "abort") -> None:
        """Abort (client gone) or finish early ("stop": a stop string); applied between steps."""
        if job.finish_reason is None:
            self._ending.append((job, reason))
            self._wake.set()

    def abort_all(self) -> None:
        """End every request received so far (shutdown grace period over)."""
        for job in list(self.live.values()) + self.pending:
            self.end(job, "abort")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def healthy(self) -> bool:
        """The loop runs and neither it nor the engine (process) has failed."""
        return self.running and self.error is None and self.engine.failure is None

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop stepping (after the step in flight) and end every open request with abort."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await self._task
            except BaseException:  # already logged by _run
                pass
        for job in list(self.live.values()) + self.pending:
            self._close(job, "abort")
        self.pending.clear()
        self.live.clear()
        self.pacer.close()

    # ---- the loop -----------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            await self._loop()
        except BaseException as e:
            self.error = e
            log.exception("engine loop failed")
            for job in list(self.live.values()) + self.pending:
                self._close(job, "abort")
            raise

    async def _loop(self) -> None:
        engine, pacer = self.engine, self.pacer
        t = 0.0
        while not self._stopping:
            self._apply_ending(t)
            first = min((j.arrival_s for j in self.pending), default=None)
            if not engine.has_work:
                if first is None:
                    self._wake.clear()
                    self.refresh_gauges()
                    await self._wake.wait()
                    continue
            t = pacer.start(t, None if engine.has_work else first)
            self._admit(t)
            if not engine.has_work:  # only rejected requests came in
                self._emit(t)
                continue
            t = await pacer.step(engine, t)
            self._emit(t)
            await asyncio.sleep(0)  # let handlers run between back-to-back steps

    def _admit(self, t: float) -> None:
        keep = []
        for job in self.pending:
            if job.arrival_s > t:
                keep.append(job)
                continue
            req = Request(job.index, job.arrival_s, len(job.prompt_ids), job.max_tokens,
                          prompt_token_ids=tuple(job.prompt_ids))
            job.seq = self.engine.add_request(req, job.max_tokens, job.sampling)
            self.live[job.index] = job
        self.pending = keep

    def _apply_ending(self, t: float) -> None:
        for job, reason in self._ending:
            if job in self.pending:
                self.pending.remove(job)
                self._close(job, reason)
            elif job.index in self.live:
                self.engine.abort(job.index, t, reason)
                self._emit_job(job, t)
        self._ending.clear()

    def _emit(self, end_s: float) -> None:
        """Count each live request's tokens of the step that ended at end_s in the metrics,
        and hand them to its stream: the first token at once, then every
        ``stream_interval`` tokens, and the rest at the end."""
        m = self.metrics
        new = 0
        for job in list(self.live.values()):
            new += self._emit_job(job, end_s)
        if new:
            m.generation_tokens.inc(new)
        it = self.engine.last_iteration_tokens()
        if it:
            m.iteration_tokens.observe(it)
        m.sim_lag.set(self.pacer.lag_s)
        m.sim_lag_max.set(self.pacer.max_lag_s)
        self.refresh_gauges()

    def _emit_job(self, job: Job, end_s: float) -> int:
        """Returns the job's new tokens (for the generation counter)."""
        seq, m = job.seq, self.metrics
        n = len(seq.output_ids) if seq.output_ids is not None else seq.num_output_tokens
        if seq.status is Status.ABORTED:
            n = job.counted
        if seq.num_preemptions > job.preemptions:
            m.preemptions.inc(seq.num_preemptions - job.preemptions)
            job.preemptions = seq.num_preemptions
        new = n - job.counted
        if new > 0:
            if job.counted == 0:
                job.cached_tokens = seq.num_cached_tokens
                m.ttft.observe(end_s - job.arrival_s)
                m.prompt_tokens.inc(len(job.prompt_ids))
            else:
                m.itl.observe(end_s - job.last_token_s)
            job.counted, job.last_token_s = n, end_s
        ended = seq.status in _ENDED
        if n > job.sent and seq.status is not Status.ABORTED and (
                ended or job.sent == 0 or n - job.sent >= self.stream_interval):
            ids = seq.output_ids[job.sent:n] if seq.output_ids is not None else job.draw(n - job.sent)
            job.sent = n
            job.queue.put_nowait((ids, end_s))
        if ended:
            reason = seq.finish_reason or ("abort" if seq.status is not Status.FINISHED else "length")
            if seq.status is Status.FINISHED:
                m.e2e.observe(end_s - job.arrival_s)
                m.req_prompt.observe(len(job.prompt_ids))
                m.req_generation.observe(n)
                if n > 1 and seq.first_token_s is not None:
                    m.tpot.observe((end_s - seq.first_token_s) / (n - 1))
            self._close(job, reason)
            self.live.pop(job.index, None)
            self.engine.forget(job.index)
        return max(new, 0)

    def _close(self, job: Job, reason: str) -> None:
        if job.finish_reason is None:
            job.finish_reason = reason
            self.metrics.success[reason if reason in self.metrics.success else "abort"].inc()
            job.queue.put_nowait(None)

    def refresh_gauges(self) -> None:
        """Set the running / waiting / KV / prefix-cache gauges from the engine's latest state
        (after each step, and on each /metrics scrape)."""
        m = self.metrics
        running, waiting, kv_usage, query_tokens, hit_tokens = self.engine.gauge_values()
        m.running.set(running)
        m.waiting.set(waiting + len(self.pending))
        m.kv_usage.set(kv_usage)
        m.observe_cache(query_tokens, hit_tokens)
