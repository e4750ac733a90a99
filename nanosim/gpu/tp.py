"""Tensor parallelism in real mode: one process per rank, rank 0 runs the engine.

    LLM(model, tensor_parallel_size=N)
      └─ TPRunner (rank 0, in the caller's process; quacks like a ModelRunner)
           ├─ ModelRunner(rank 0 shard) ── Engine / Scheduler / BlockManager drive it, unchanged
           ├─ ShmWriter ──── (("step", SeqWorks) per step) ────► worker.py, ranks 1..N-1:
           └─ TCPStore (rendezvous, start-up stages)              ModelRunner(rank r).step(...)

Every rank computes the same SeqWorks on its shard: column-parallel q/k/v and gate/up,
row-parallel o_proj and down_proj (one all-reduce after attention and one after the MLP per
layer), vocab-parallel embedding (one all-reduce) and LM head (all-gather of the logits).
Attention and KV heads are split across ranks, so each rank's paged cache holds Hkv/N heads
for the same block ids; only rank 0 samples. NCCL on CUDA (rank r on cuda:r), gloo on CPU.

Why shared memory and not a torch.distributed broadcast for the per-step command:
rank 0 pickles the step's SeqWorks into a SharedMemory buffer and posts one semaphore per
worker (nano-vLLM's scheme, with a second semaphore so a command is never overwritten before
every worker has read it). Measured with ``python benchmarks/tp_step_overhead.py`` (tp=2,
gloo, 2-core VM, torch 2.13 CPU, median of 5 x 500 steps, two runs on an otherwise idle
machine): extra microseconds per step on top of the step's first all-reduce (~250-300 us):

    payload                          shm      broadcast_object_list   one 256 KiB broadcast
    empty                          +21..+56        +520..+597              +326..+357
    decode64 (64 seqs x 64 blocks) +109..+156      +543..+854              +317..+429
    prefill2k (2048 tokens)        -17..+71        +501..+539              +168..+361

(With another job on the 2 cores every figure grows 2-4x; shm stays the cheapest by 3-5x.)

Shared memory costs the least: the hand-off is a memcpy and a semaphore post that rank 0 does
not wait on (the workers read while rank 0 packs its own inputs), whereas a broadcast is a
blocking collective (two for broadcast_object_list: the size, then the bytes) over TCP
loopback with gloo, and on GPUs with NCCL it would also need host<->device copies of the
pickle or a second (gloo) process group. A broadcast would need no liveness polling; the
channel's waits are bounded and poll the peers instead (nanosim/gpu/channel.py).

Failures: a worker writes its traceback to a file and exits 1 on any exception; rank 0
checks the workers before every command, start-up stages are polled through the store (a
worker that dies while loading is reported at once), and collectives time out after
``timeout_s``. When a command fails (a closed gloo connection, a timeout) or a worker is
found dead, rank 0 raises WorkerDied naming the rank, its exit code or signal and its
traceback; a timeout while every worker still runs (a hung worker) re-raises the backend's
timeout error. Either way the group is then unusable (later calls say so). On CUDA a worker
that dies in the middle of a step should leave rank 0 waiting on the GPU until NCCL's watchdog
fires at ``timeout_s``: bounded, but not as clean as gloo's closed socket (not tested on GPUs).
Shutdown: LLM.close(), ``with LLM(...)``, or at interpreter exit (atexit).

On CPU each rank (rank 0 included, until close()) runs cpu_count // N torch threads.
One tensor-parallel LLM per process at a time (torch.distributed's default group is global).
"""
from __future__ import annotations

import atexit
import datetime
import multiprocessing as mp
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.distributed as dist

from nanosim.config import ModelSpec
from nanosim.gpu.channel import PeerGone, ShmWriter
from nanosim.gpu.dist import (STARTUP_TIMEOUT_S, RankGroup, check_tp_config, init_group,
                              rank_device, wait_for_keys)
from nanosim.gpu.inputs import SeqWork
from nanosim.gpu.options import RunnerOptions
from nanosim.gpu.runner import ModelRunner
from nanosim.gpu.worker import WorkerArgs, decode_works, encode_works, worker_main

__all__ = ["TPRunner", "WorkerDied", "decode_works", "encode_works"]

DEATH_GRACE_S = 1.0  # after a failed collective, how long to wait for a worker to exit
EXIT_WAIT_S = 10.0  # close(): how long a worker may take to leave before it is terminated


class WorkerDied(RuntimeError):
    """A tensor-parallel worker exited; the message has its rank, exit code and traceback."""


def channel_bytes(max_tokens: int, max_seqs: int, max_width: int) -> int:
    """Room for the largest step: <= 8 pickle bytes per int, ~128 per SeqWork, + 1 MiB."""
    return (1 << 20) + 8 * (max_tokens + max_seqs * (max_width + 16))


class TPRunner:
    """Rank 0 of an N-rank group. step / logits / swap_kv run on every rank; other
    attributes (spec, num_kv_blocks, backend, graphs, kv_caches, ...) are rank 0's."""

    # no decode fast path (runner.step_next): the workers would need rank 0's sampled tokens;
    # a class attribute, so __getattr__ never forwards it to rank 0's runner
    can_step_next = False
    supports_lookahead = False  # no step_next at all, so no lookahead (GpuBackend's async_decode)

    def __init__(self, spec: ModelSpec, device: torch.device, tp: int,
                 options: RunnerOptions = RunnerOptions(), *, timeout_s: float = 300.0) -> None:
        check_tp_config(spec, tp, device)
        self.tp, self.timeout_s, self.local = tp, timeout_s, None
        self.procs: list = []
        self._closed, self._broken, self._old_threads = False, None, None
        self._tmp = Path(tempfile.mkdtemp(prefix="nanosim-tp-"))
        ctx = mp.get_context("spawn")
        width = -(-(options.max_model_len or spec.max_position_embeddings) // options.block_size)
        self.writer = ShmWriter(ctx, tp - 1, channel_bytes(
            options.max_num_batched_tokens, options.max_num_seqs, width))
        self.store = dist.TCPStore("127.0.0.1", 0, tp, is_master=True, wait_for_workers=False,
                                   timeout=datetime.timedelta(seconds=timeout_s))
        atexit.register(self.close)
        try:
            self._start(ctx, spec, device, options)
        except BaseException as e:
            self._broken = f"start-up failed: {e!r}"  # no polite exit: workers may be mid-collective
            self.close()
            raise

    def _start(self, ctx, spec: ModelSpec, device: torch.device, options: RunnerOptions) -> None:
        threads = max(1, (os.cpu_count() or 1) // self.tp) if device.type == "cpu" else None
        for r in range(1, self.tp):
            args = WorkerArgs(r, self.tp, self.store.port, self.writer.handle(r - 1), spec,
                              str(rank_device(device, r)), options,
                              self.timeout_s, str(self._tmp / f"rank{r}.err"), os.getpid(), threads)
            p = ctx.Process(target=worker_main, args=(args,), name=f"nanosim-tp-rank{r}", daemon=True)
            p.start()
            self.procs.append(p)
        if threads:  # the ranks share the CPU cores
            self._old_threads = torch.get_num_threads()
            torch.set_num_threads(threads)
        wait_for_keys(self.store, [f"up/{r}" for r in range(1, self.tp)], self.check_workers,
                      STARTUP_TIMEOUT_S, "up")  # all connected: the rendezvous below is quick
        init_group(self.store, 0, self.tp, rank_device(device, 0), self.timeout_s)
        group = RankGroup(0, self.tp, self.store, self.check_workers)
        self.local = ModelRunner(spec, rank_device(device, 0), options, group=group)
        group.arrive("ready")

    def __getattr__(self, name: str):
        local = self.__dict__.get("local")
        if local is None:
            raise AttributeError(name)
        return getattr(local, name)

    # ---- commands (every rank) -----------------------------------------------------------------
    def step(self, works: list[SeqWork]):
        self._send("step", encode_works(works))
        return self._run(self.local.step, works)

    def logits(self, works: list[SeqWork]) -> torch.Tensor:
        self._send("logits", encode_works(works))
        return self._run(self.local.logits, works)

    def swap_kv(self, pairs: list[tuple[int, int]], to_host: bool, num_host_blocks: int) -> None:
        self._send("swap", list(pairs), to_host, num_host_blocks)
        self._run(self.local.swap_kv, pairs, to_host, num_host_blocks)

    def call(self, name: str, *args) -> list:
        """Run runner method ``name`` on every rank; returns the results by rank."""
        fn = getattr(self.local, name)  # AttributeError before anything is sent

        def gather():
            out = [None] * self.tp
            dist.gather_object(fn(*args), out, dst=0)
            return out

        self._send("call", name, args)
        return self._run(gather)

    def _send(self, *msg) -> None:
        if self._closed or self._broken:
            raise RuntimeError(f"this tensor-parallel LLM is unusable: {self._broken or 'closed'}; "
                               "create a new one")
        try:
            self.check_workers()
            self.writer.send(msg, lambda i: self.procs[i].exitcode is None, self.timeout_s)
        except WorkerDied as e:
            self._broken = str(e)
            raise
        except PeerGone as e:  # a worker died or hangs while reading the previous command
            self._broken = str(e)
            self._raise_if_dead(DEATH_GRACE_S, e)
            raise

    def _run(self, fn, *args):
        try:
            return fn(*args)
        except BaseException as e:  # a closed connection, a timeout, rank 0's own error, ^C:
            self._broken = f"a command failed: {e!r}"  # the ranks are out of step for good
            if isinstance(e, Exception):
                self._raise_if_dead(DEATH_GRACE_S if isinstance(e, RuntimeError) else 0.0, e)
            raise

    # ---- worker health -------------------------------------------------------------------------
    def check_workers(self) -> None:
        """Raise WorkerDied if any worker process has exited."""
        for r, p in enumerate(self.procs, 1):
            if p.exitcode is not None:
                raise WorkerDied(self._death_message(r, p))

    def _raise_if_dead(self, grace_s: float, cause: BaseException) -> None:
        deadline = time.monotonic() + grace_s
        while True:
            try:
                self.check_workers()
            except WorkerDied as died:
                self._broken = str(died)
                raise died from cause
            if time.monotonic() >= deadline:
                return
            time.sleep(0.05)

    def _death_message(self, rank: int, p) -> str:
        code = p.exitcode
        how = f"code {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
        msg = f"tensor-parallel worker rank {rank} (pid {p.pid}) exited with {how}"
        err = self._tmp / f"rank{rank}.err"
        if err.is_file():
            msg += f"; its traceback:\n{err.read_text().rstrip()}"
        return msg

    # ---- shutdown ------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the workers (politely, then by signal), leave the process group, free the
        channel. Idempotent; also runs at interpreter exit."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        polite = bool(self.procs) and not self._broken
        if polite:
            try:
                self.writer.send(("exit",), lambda i: self.procs[i].exitcode is None, EXIT_WAIT_S)
            except Exception:  # noqa: BLE001 - a worker gone or stuck; terminated below
                polite = False
        if polite:  # NCCL's destroy is collective: leave while the workers leave too
            _leave_group(EXIT_WAIT_S)
        _stop(self.procs, EXIT_WAIT_S if polite else 0.0)
        _leave_group(EXIT_WAIT_S)  # after a failure: the workers are gone; bounded wait
        self.local = None
        self.writer.close()
        shutil.rmtree(self._tmp, ignore_errors=True)
        if self._old_threads:
            torch.set_num_threads(self._old_threads)


def _leave_group(wait_s: float) -> None:
    """destroy_process_group(), given up after wait_s (with NCCL it waits for the other ranks,
    which may be dead): a daemon thread runs it so close() itself never hangs."""
    if not (dist.is_available() and dist.is_initialized()):
        return

    def destroy() -> None:
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a broken group; nothing left to release
            pass

    t = threading.Thread(target=destroy, name="nanosim-tp-leave", daemon=True)
    t.start()
    t.join(wait_s)


def _stop(procs: list, wait_s: float) -> None:
    """join (up to wait_s in all), then SIGTERM, then SIGKILL: every step bounded."""
    deadline = time.monotonic() + wait_s
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.exitcode is None:
            p.terminate()
            p.join(timeout=1.0)
        if p.exitcode is None:
            p.kill()
            p.join(timeout=5.0)
