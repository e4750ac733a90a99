"""torch.distributed plumbing for tensor parallelism: checks made before any process starts,
the rendezvous, and the one start-up collective (KV capacity = MIN over ranks).

Rank 0 hosts a TCPStore on an ephemeral port. Every rank announces each start-up stage by
setting a key (``built/1``, ``ready/1``, ...) and polls for the others' keys while checking
that its peers still run (rank 0: the worker processes; a worker: its parent), so a rank
that dies while loading (bad weights, OOM) is reported with its exit code at once, and no
rank enters the first collective while another one is still loading (a slow load is not a
collective timeout). Those waits are bounded by STARTUP_TIMEOUT_S; collectives (gloo on
CPU, NCCL on CUDA) by the process group's ``timeout``.
"""
from __future__ import annotations

import datetime
import time
from collections.abc import Callable

import torch
import torch.distributed as dist

from nanosim.config import ModelSpec

POLL_S = 0.05  # store polling period of the start-up barriers
STARTUP_TIMEOUT_S = 1800.0  # a start-up stage (e.g. loading 32B weights) of a rank still alive


def check_tp_config(spec: ModelSpec, tp: int, device: torch.device,
                    device_count: int | None = None) -> None:
    """Raise ValueError for a tp that cannot work, before any process or device is touched."""
    if not isinstance(tp, int) or isinstance(tp, bool) or tp < 1:
        raise ValueError(f"tensor_parallel_size must be an integer >= 1, got {tp!r}")
    for what, n in (("attention heads", spec.num_q_heads), ("KV heads", spec.num_kv_heads),
                    ("intermediate_size", spec.intermediate_size)):
        if n % tp:
            raise ValueError(f"tensor_parallel_size={tp} does not divide {spec.name}'s {what} "
                             f"({n}); each rank must hold the same number")
    if device.type == "cuda":
        first = device.index or 0
        count = torch.cuda.device_count() if device_count is None else device_count
        if first + tp > count:
            raise ValueError(f"tensor_parallel_size={tp} needs GPUs cuda:{first}..cuda:{first + tp - 1} "
                             f"but {count} are visible (CUDA_VISIBLE_DEVICES selects them)")
    if tp > 1 and dist.is_available() and dist.is_initialized():
        raise RuntimeError("a torch.distributed process group already exists in this process; "
                           "close() the other tensor-parallel LLM first (one per process)")


def rank_device(device: torch.device, rank: int) -> torch.device:
    """Rank r runs on cuda:(first + r); on CPU every rank uses the CPU."""
    if device.type != "cuda":
        return device
    return torch.device("cuda", (device.index or 0) + rank)


def init_group(store: dist.Store, rank: int, size: int, device: torch.device, timeout_s: float) -> None:
    """Join the default process group: NCCL on CUDA, gloo on CPU; collectives time out."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, store=store, rank=rank, world_size=size,
                            timeout=datetime.timedelta(seconds=timeout_s))


class RankGroup:
    """This process's place in the TP group, as the ModelRunner sees it. ``check_peers``
    raises when a peer process is gone (rank 0: a worker exited; a worker: rank 0 exited)."""

    def __init__(self, rank: int, size: int, store: dist.Store,
                 check_peers: Callable[[], None] | None = None) -> None:
        self.rank, self.size, self.store, self.check_peers = rank, size, store, check_peers

    def arrive(self, stage: str) -> None:
        """A barrier through the store: announce ``stage``, wait until every rank has."""
        self.store.set(f"{stage}/{self.rank}", "1")
        others = [f"{stage}/{r}" for r in range(self.size) if r != self.rank]
        wait_for_keys(self.store, others, self.check_peers, STARTUP_TIMEOUT_S, stage)

    def min_int(self, n: int, device: torch.device) -> int:
        """MIN of n over all ranks (the per-rank KV block counts)."""
        t = torch.tensor([n], dtype=torch.int64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())


def wait_for_keys(store: dist.Store, keys: list[str], check: Callable[[], None] | None,
                  timeout_s: float, stage: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not store.check(keys):
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"tensor-parallel start-up: ranks still alive but not at "
                               f"'{stage}' after {timeout_s:.0f} s")
        time.sleep(POLL_S)
