"""A tensor-parallel worker (ranks 1..tp-1): a spawned process that builds its rank's
ModelRunner and then follows rank 0's commands from the shared-memory channel.

    ("step", works)                  runner.step(works, sample_tokens=False)  (rank 0 samples)
    ("logits", works)                runner.logits(works)
    ("swap", pairs, to_host, n)      runner.swap_kv(pairs, to_host, n)
    ("call", name, args)             getattr(runner, name)(*args), gathered to rank 0
    ("exit",)                        leave the process group and return

Any exception is fatal: the group's collectives would no longer line up. The worker writes
its traceback to ``err_path`` and exits with code 1; rank 0 reports both (tp.WorkerDied).
It also exits when rank 0's process is gone (the channel polls the parent pid).

Fault injection for tests: NANOSIM_TP_FAULT="RANK:N" makes worker RANK raise at its N-th
step command (N = 0: during start-up, after joining the process group).
"""
from __future__ import annotations

import datetime
import os
import sys
import traceback
from dataclasses import dataclass

FAULT_ENV = "NANOSIM_TP_FAULT"


@dataclass
class WorkerArgs:
    rank: int
    size: int
    store_port: int  # rank 0's TCPStore (127.0.0.1)
    handle: object  # channel.ReaderHandle
    spec: object  # config.ModelSpec
    device: str  # this rank's
    options: object  # options.RunnerOptions, the same for every rank
    timeout_s: float  # collectives and store operations
    err_path: str  # where a traceback goes
    parent_pid: int
    num_threads: int | None  # torch CPU threads (None: leave torch's default)


def encode_works(works) -> list[tuple]:
    """SeqWorks as plain tuples: ~2x cheaper to pickle than the slotted dataclass."""
    return [(w.token_ids, w.start_pos, w.block_table, w.samples, w.temperature, w.top_k,
             w.top_p, w.seed) for w in works]


def decode_works(msg: list[tuple]) -> list:
    """The SeqWorks of a message made by encode_works."""
    from nanosim.gpu.inputs import SeqWork

    return [SeqWork(*t) for t in msg]


def worker_main(a: WorkerArgs) -> None:
    """Process entry point (multiprocessing spawn target)."""
    try:
        _serve(a)
    except BaseException:
        with open(a.err_path, "w") as f:
            f.write(traceback.format_exc())
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)  # no atexit / process-group teardown against peers that may be gone


def _serve(a: WorkerArgs) -> None:
    import torch
    import torch.distributed as dist

    from nanosim.gpu.channel import ShmReader
    from nanosim.gpu.dist import RankGroup, init_group
    from nanosim.gpu.runner import ModelRunner

    if a.num_threads:
        torch.set_num_threads(a.num_threads)
    device = torch.device(a.device)
    store = dist.TCPStore("127.0.0.1", a.store_port, a.size, is_master=False,
                          timeout=datetime.timedelta(seconds=a.timeout_s))
    store.set(f"up/{a.rank}", "1")
    init_group(store, a.rank, a.size, device, a.timeout_s)
    if _fault_step(a.rank) == 0:
        raise RuntimeError(f"injected fault ({FAULT_ENV}) in rank {a.rank} at start-up")
    group = RankGroup(a.rank, a.size, store, lambda: _check_parent(a.parent_pid))
    runner = ModelRunner(a.spec, a.device, a.options, group=group)
    group.arrive("ready")
    reader = ShmReader(a.handle)
    _follow(runner, reader, a)
    reader.close()
    dist.destroy_process_group()


def _follow(runner, reader, a: WorkerArgs) -> None:
    """The command loop; returns on ("exit",)."""
    import torch.distributed as dist

    alive = lambda: os.getppid() == a.parent_pid
    fault_step, steps = _fault_step(a.rank), 0
    while True:
        cmd, *args = reader.recv(alive)
        if cmd == "exit":
            return
        if cmd == "step":
            steps += 1
            if steps == fault_step:
                raise RuntimeError(f"injected fault ({FAULT_ENV}) in rank {a.rank} at step {steps}")
            runner.step(decode_works(args[0]), sample_tokens=False)
        elif cmd == "logits":
            runner.logits(decode_works(args[0]))
        elif cmd == "swap":
            runner.swap_kv(*args)
        elif cmd == "call":
            name, call_args = args
            dist.gather_object(getattr(runner, name)(*call_args), None, dst=0)
        else:
            raise ValueError(f"unknown TP command {cmd!r}")


def _check_parent(parent_pid: int) -> None:
    if os.getppid() != parent_pid:
        raise RuntimeError(f"rank 0 (pid {parent_pid}) is gone")


def _fault_step(rank: int) -> int | None:
    spec = os.environ.get(FAULT_ENV, "")
    if not spec:
        return None
    r, n = spec.split(":")
    return int(n) if int(r) == rank else None
