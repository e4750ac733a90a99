"""The shared-memory command channel, in one process (a thread plays the worker)."""
import multiprocessing as mp
import threading

import pytest

from nanosim.gpu.channel import PeerGone, ShmReader, ShmWriter
from nanosim.gpu.inputs import SeqWork
from nanosim.gpu.tp import decode_works, encode_works


@pytest.fixture
def ends():
    writer = ShmWriter(mp.get_context("spawn"), 1, 1 << 16)
    reader = ShmReader(writer.handle(0))
    yield writer, reader
    reader.close()
    writer.close()


def test_messages_arrive_in_order_and_never_overwritten(ends):
    writer, reader = ends
    got = []
    t = threading.Thread(target=lambda: got.extend(reader.recv(lambda: True, 10) for _ in range(50)))
    t.start()
    for i in range(50):  # the writer waits for the reader before reusing the buffer
        writer.send(("step", i), lambda _: True, 10)
    t.join(10)
    assert got == [("step", i) for i in range(50)]


def test_works_round_trip(ends):
    writer, reader = ends
    works = [SeqWork([1, 2, 3], 5, [7, 8], False, 0.5, 3, 0.9, 11)]
    writer.send(("step", encode_works(works)), lambda _: True, 10)
    cmd, msg = reader.recv(lambda: True, 10)
    assert cmd == "step" and decode_works(msg) == works


def test_oversized_message_and_dead_peer_are_errors(ends):
    writer, reader = ends
    with pytest.raises(ValueError, match="exceeds"):
        writer.send(list(range(100_000)), lambda _: True, 10)
    with pytest.raises(PeerGone, match="gone"):
        reader.recv(lambda: False, 10)  # nothing sent, the writer "died"
    writer.send("a", lambda _: True, 10)  # the reader never reads it
    with pytest.raises(PeerGone, match="rank 1"):
        writer.send("b", lambda _: False, 10)


def _min_worker(rank: int, port: int, out) -> None:
    import datetime

    import torch
    import torch.distributed as dist

    from nanosim.gpu.dist import RankGroup

    store = dist.TCPStore("127.0.0.1", port, 2, is_master=False, timeout=datetime.timedelta(seconds=30))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=30))
    out.put((rank, RankGroup(rank, 2, store, 30).min_int(100 + 7 * rank, torch.device("cpu"))))
    dist.destroy_process_group()


def test_kv_blocks_take_the_minimum_over_ranks():
    """RankGroup.min_int: what each GPU rank does with its own free-memory block count."""
    import datetime

    import torch.distributed as dist

    ctx = mp.get_context("spawn")
    store = dist.TCPStore("127.0.0.1", 0, 3, is_master=True, wait_for_workers=False,
                          timeout=datetime.timedelta(seconds=30))
    out = ctx.Queue()
    procs = [ctx.Process(target=_min_worker, args=(r, store.port, out)) for r in range(2)]
    for p in procs:
        p.start()
    got = sorted(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(30)
    assert got == [(0, 100), (1, 100)] and [p.exitcode for p in procs] == [0, 0]
