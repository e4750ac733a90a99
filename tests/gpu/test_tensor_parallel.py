"""Tensor-parallel layers: weight_loader shards recombine to the full layer (no processes),
and a 2-rank gloo run of the tiny model gives the single-rank logits."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from nanosim.gpu.embedding import ParallelLMHead, VocabParallelEmbedding
from nanosim.gpu.linear import (ColumnParallelLinear, MergedColumnParallelLinear, QKVParallelLinear,
                                RowParallelLinear)

TP = 2


def shards(make, full, shard_id=None):
    layers = [make(r) for r in range(TP)]
    for layer in layers:
        layer.weight.weight_loader(layer.weight, full, shard_id)
    return layers


def test_column_and_row_shards_recombine():
    w = torch.randn(6, 4)
    x = torch.randn(3, 4)
    col = shards(lambda r: ColumnParallelLinear(4, 6, r, TP), w)
    torch.testing.assert_close(torch.cat([layer(x) for layer in col], -1), x @ w.T)
    xr = torch.randn(3, 6)
    row = shards(lambda r: RowParallelLinear(6, 4, r, TP), w.T.contiguous())
    parts = [torch.nn.functional.linear(xr[:, 3 * r:3 * r + 3], layer.weight) for r, layer in enumerate(row)]
    torch.testing.assert_close(parts[0] + parts[1], xr @ w)


def test_merged_and_qkv_shards_hold_their_rows():
    g, u = torch.randn(2, 8, 4).unbind(0)
    merged = [MergedColumnParallelLinear(4, [8, 8], r, TP) for r in range(TP)]
    for m in merged:
        m.weight.weight_loader(m.weight, g, 0)
        m.weight.weight_loader(m.weight, u, 1)
    assert torch.equal(merged[1].weight, torch.cat([g[4:], u[4:]]))
    q, k, v = torch.randn(4 * 2, 4), torch.randn(2 * 2, 4), torch.randn(2 * 2, 4)  # 4 q / 2 kv heads, D=2
    qkv = [QKVParallelLinear(4, 2, 4, 2, r, TP) for r in range(TP)]
    for layer in qkv:
        for sid, t in zip("qkv", (q, k, v)):
            layer.weight.weight_loader(layer.weight, t, sid)
    assert torch.equal(qkv[1].weight, torch.cat([q[4:], k[2:], v[2:]]))
    with pytest.raises(ValueError, match=r"expected shape \(4, 4\), got \(3, 4\)"):
        qkv[0].weight.weight_loader(qkv[0].weight, k[:3], "k")


def test_vocab_shards_pad_the_last_rank():
    w = torch.randn(5, 3)  # 5 rows over 2 ranks: 3 + 2 (+1 zero pad)
    emb = shards(lambda r: VocabParallelEmbedding(5, 3, r, TP), w)
    assert torch.equal(emb[1].weight, torch.cat([w[3:], torch.zeros(1, 3)]))
    head = shards(lambda r: ParallelLMHead(5, 3, r, TP), w)
    assert torch.equal(torch.cat([h.weight for h in head])[:5], w)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tp_worker(rank: int, path: str, ids: list[int], port: int, out: str) -> None:
    import torch.distributed as dist

    from nanosim.gpu.attention.torch_ref import TorchAttention
    from nanosim.gpu.inputs import InputPacker, SeqWork
    from nanosim.gpu.kv_cache import allocate_kv_cache
    from nanosim.gpu.loader import build_model, read_spec

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=TP)
    torch.set_num_threads(1)
    spec, cpu = read_spec(path), torch.device("cpu")
    model = build_model(spec, TorchAttention(), cpu, torch.float32, path, tp_rank=rank, tp_size=TP)
    kv = allocate_kv_cache(spec, 16, 4, torch.float32, cpu, tp_size=TP)
    inp = InputPacker(cpu, 4, 64, 4, 16).pack([SeqWork(ids, 0, list(range(8)))], 16)
    with torch.no_grad():
        logits = model.compute_logits(model(inp.input_ids, inp.positions, inp.meta, kv))
    if rank == 0:
        torch.save(logits, out)
    dist.destroy_process_group()


def test_two_rank_gloo_model_matches_single_rank(hf_untied, tmp_path):
    model, path = hf_untied
    ids = list(range(3, 20))
    out = tmp_path / "logits.pt"
    mp.spawn(_tp_worker, args=(str(path), ids, _free_port(), str(out)), nprocs=TP)
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0]
    torch.testing.assert_close(torch.load(out), ref, atol=1e-5, rtol=1e-5)
