"""Rank 0 -> worker commands through shared memory (one writer, N readers).

A message is a pickled Python object written into one SharedMemory buffer:

    bytes [0, 8)      payload length n (little-endian uint64)
    bytes [8, 8 + n)  pickle (protocol 5) of the object

Two POSIX semaphores per reader hand the buffer back and forth, so no message is ever
overwritten before every reader has copied it out (nano-vLLM's Event-only scheme relies on
the step's collectives for that, which a command without collectives, e.g. a KV swap,
does not give):

    writer: free[i].acquire() for all i, write, ready[i].release() for all i
    reader: ready.acquire(), copy + unpickle, free.release()

Every wait is bounded and polls a liveness check, so a dead peer gives an error instead of
a hang. Why shared memory and not a torch.distributed broadcast: see nanosim/gpu/tp.py.
"""
from __future__ import annotations

import pickle
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import shared_memory

HEADER = struct.Struct("<Q")
POLL_S = 0.5  # how often a blocked wait re-checks that its peer is alive


class PeerGone(RuntimeError):
    """The other side of the channel died or stopped answering."""


@dataclass
class ReaderHandle:
    """What a worker needs to open its end (picklable; pass it to the spawned process)."""

    shm_name: str
    size: int
    ready: object  # multiprocessing.Semaphore
    free: object


def _acquire(sem, timeout_s: float, alive: Callable[[], bool], what: str) -> None:
    """sem.acquire() that gives up after timeout_s or when alive() turns False."""
    deadline = time.monotonic() + timeout_s
    while not sem.acquire(timeout=POLL_S):
        if not alive():
            raise PeerGone(f"{what}: the peer process is gone")
        if time.monotonic() > deadline:
            raise PeerGone(f"{what}: no answer within {timeout_s:.0f} s")


class ShmWriter:
    """Rank 0's end. ``size`` bytes bound one message (header included)."""

    def __init__(self, ctx, num_readers: int, size: int) -> None:
        self.size = size
        self.shm = shared_memory.SharedMemory(create=True, size=size)
        self.ready = [ctx.Semaphore(0) for _ in range(num_readers)]
        self.free = [ctx.Semaphore(1) for _ in range(num_readers)]

    def handle(self, i: int) -> ReaderHandle:
        return ReaderHandle(self.shm.name, self.size, self.ready[i], self.free[i])

    def send(self, obj, alive: Callable[[int], bool], timeout_s: float) -> None:
        """Publish ``obj`` to every reader; alive(i) says whether reader i still runs."""
        data = pickle.dumps(obj, protocol=5)
        n = HEADER.size + len(data)
        if n > self.size:
            raise ValueError(f"a {n}-byte command exceeds the {self.size}-byte TP channel")
        for i, sem in enumerate(self.free):  # every reader done with the previous message
            _acquire(sem, timeout_s, lambda i=i: alive(i), f"TP channel: rank {i + 1} busy")
        buf = self.shm.buf
        HEADER.pack_into(buf, 0, len(data))
        buf[HEADER.size:n] = data
        for sem in self.ready:
            sem.release()

    def close(self) -> None:
        self.shm.close()
        try:
            self.shm.unlink()
        except FileNotFoundError:
            pass


class ShmReader:
    """A worker's end."""

    def __init__(self, h: ReaderHandle) -> None:
        # The writer owns (and unlinks) the segment. Python >= 3.13: track=False keeps this
        # process's tracker out of it. Older: a spawned worker shares rank 0's resource
        # tracker, for which a second registration of the same name is a no-op.
        kw = {"track": False} if sys.version_info >= (3, 13) else {}
        self.shm = shared_memory.SharedMemory(name=h.shm_name, **kw)
        self.ready, self.free = h.ready, h.free

    def recv(self, alive: Callable[[], bool], timeout_s: float = float("inf")):
        """Wait for the next message (forever by default, while alive() holds)."""
        _acquire(self.ready, timeout_s, alive, "TP channel: waiting for rank 0")
        buf = self.shm.buf
        (n,) = HEADER.unpack_from(buf, 0)
        obj = pickle.loads(buf[HEADER.size:HEADER.size + n])
        self.free.release()
        return obj

    def close(self) -> None:
        self.shm.close()
