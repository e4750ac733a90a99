"""Per-step cost of sending a step's work from rank 0 to the other TP ranks, on CPU (gloo):
shared memory + semaphores (nanosim/gpu/channel.py) vs torch.distributed broadcasts.

    python benchmarks/tp_step_overhead.py [--tp 2] [--iters 500] [--rounds 5]

Each timed iteration is what a TP step does before its first layer: rank 0 publishes the
step's SeqWorks (pickled tuples, as nanosim/gpu/tp.py sends them), every worker receives
them and rebuilds its SeqWork list, then all ranks meet in one 1-element all-reduce (the
embedding's all-reduce, which is where a late worker would hold rank 0 up). The
"allreduce" column is that meeting alone; overhead = transport column - that column.

    shm         ShmWriter.send / ShmReader.recv (pickle into SharedMemory, 2 semaphores/rank)
    bcast_obj   dist.broadcast_object_list (pickle + 2 gloo broadcasts: size, then bytes)
    bcast_1     one gloo broadcast of a fixed 256 KiB uint8 tensor holding length + pickle

Payloads: decode64 = 64 decodes (1 token, 64-block table each); prefill2k = one 2048-token
chunk (128 blocks); empty = no works (the bare round trip).
"""
from __future__ import annotations

import argparse
import datetime
import multiprocessing as mp
import os
import pickle
import statistics
import struct
import time

import torch
import torch.distributed as dist

from nanosim.gpu.channel import ShmReader, ShmWriter
from nanosim.gpu.inputs import SeqWork
from nanosim.gpu.tp import decode_works, encode_works

MODES = ("allreduce", "shm", "bcast_obj", "bcast_1")
BCAST_BYTES = 1 << 18


def payloads() -> dict[str, list]:
    dec = [SeqWork([1234], 1000 + i, list(range(i * 64, i * 64 + 64)), True, 0.0, 0, 1.0, i)
           for i in range(64)]
    pre = [SeqWork(list(range(2048)), 0, list(range(128)), True, 0.0, 0, 1.0, 0)]
    return {"empty": [], "decode64": dec, "prefill2k": pre}


def _bcast_1(msg, buf: torch.Tensor, rank: int):
    """One fixed-size broadcast: 8-byte length + pickle (root) -> object (others)."""
    if rank == 0:
        data = pickle.dumps(msg, protocol=5)
        buf[:8] = torch.frombuffer(bytearray(struct.pack("<Q", len(data))), dtype=torch.uint8)
        buf[8:8 + len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    dist.broadcast(buf, 0)
    if rank != 0:
        (n,) = struct.unpack("<Q", bytes(buf[:8].numpy()))
        return pickle.loads(buf[8:8 + n].numpy().tobytes())
    return msg


def one_step(mode: str, rank: int, msg, ends, buf, one) -> None:
    if mode == "shm":
        if rank == 0:
            ends.send(msg, lambda i: True, 30.0)
        else:
            decode_works(ends.recv(lambda: True, 30.0))
    elif mode == "bcast_obj":
        box = [msg]
        dist.broadcast_object_list(box, src=0)
        if rank:
            decode_works(box[0])
    elif mode == "bcast_1":
        got = _bcast_1(msg, buf, rank)
        if rank:
            decode_works(got)
    dist.all_reduce(one)


def run_all(rank: int, ends, iters: int, rounds: int) -> dict:
    """{(payload, mode): median over rounds of us per step}; modes interleaved per round so
    a noisy neighbour hits them alike."""
    buf, one = torch.zeros(BCAST_BYTES, dtype=torch.uint8), torch.ones(1)
    times: dict = {}
    for pname, works in payloads().items():
        msg = encode_works(works)
        for _ in range(rounds):
            for mode in MODES:
                for _ in range(iters // 10):  # warm-up
                    one_step(mode, rank, msg, ends, buf, one)
                dist.barrier()
                t0 = time.perf_counter()
                for _ in range(iters):
                    one_step(mode, rank, msg, ends, buf, one)
                times.setdefault((pname, mode), []).append((time.perf_counter() - t0) / iters * 1e6)
    return {k: statistics.median(v) for k, v in times.items()}


def _join(store, rank: int, world: int) -> None:
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))


def worker(rank: int, world: int, port: int, handle, iters: int, rounds: int) -> None:
    torch.set_num_threads(1)
    _join(dist.TCPStore("127.0.0.1", port, world, is_master=False), rank, world)
    run_all(rank, ShmReader(handle), iters, rounds)
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tp", type=int, default=2)
    ap.add_argument("--iters", type=int, default=500, help="steps per timed cell")
    ap.add_argument("--rounds", type=int, default=5, help="cells per (payload, mode); median")
    a = ap.parse_args()
    torch.set_num_threads(1)
    ctx = mp.get_context("spawn")
    store = dist.TCPStore("127.0.0.1", 0, a.tp, is_master=True, wait_for_workers=False)
    writer = ShmWriter(ctx, a.tp - 1, 1 << 20)
    procs = [ctx.Process(target=worker, args=(r, a.tp, store.port, writer.handle(r - 1), a.iters, a.rounds))
             for r in range(1, a.tp)]
    for p in procs:
        p.start()
    _join(store, 0, a.tp)
    res = run_all(0, writer, a.iters, a.rounds)
    for p in procs:
        p.join()
    dist.destroy_process_group()
    writer.close()
    print(f"tp={a.tp}, median of {a.rounds} x {a.iters} steps, {os.cpu_count()} CPUs, torch {torch.__version__}; "
          "us per step (overhead over the all-reduce alone)")
    print(f"{'payload':10s}" + "".join(f"{m:>22s}" for m in MODES))
    for pname in payloads():
        base = res[(pname, "allreduce")]
        cells = [f"{res[(pname, m)]:8.1f} ({res[(pname, m)] - base:+7.1f})" for m in MODES]
        print(f"{pname:10s}" + "".join(f"{c:>22s}" for c in cells))


if __name__ == "__main__":
    main()
