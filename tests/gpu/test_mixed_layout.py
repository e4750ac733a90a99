"""The mixed-graph input path on CPU (no CUDA graph here, the same inputs and kernels): a step
packed into the fixed mixed layout, padded to a token bucket and served by the tile-map
varlen kernel (TRITON_INTERPRET=1), gives the eager path's logits, for prefill chunks after
cached prefixes and decodes in one batch."""
import pytest
import torch

from nanosim.config import ModelSpec
from nanosim.gpu.cuda_graphs import mixed_token_buckets
from nanosim.gpu.inputs import InputPacker, SeqWork
from nanosim.gpu.options import RunnerOptions
from nanosim.gpu.runner import ModelRunner

SPEC = ModelSpec("tiny", hidden_size=64, num_layers=2, num_q_heads=4, num_kv_heads=2, head_dim=16,
                 intermediate_size=128, vocab_size=256, max_position_embeddings=256)
BS, BLOCKS = 8, 40


def test_mixed_bucket_step_equals_eager_step():
    r = ModelRunner(SPEC, "cpu", RunnerOptions(dtype=torch.float32, block_size=BS, num_kv_blocks=BLOCKS,
                    max_num_batched_tokens=64, max_num_seqs=8, attention="triton", seed=3))
    g = torch.Generator().manual_seed(0)
    tok = lambda n: torch.randint(0, 256, (n,), generator=g).tolist()  # noqa: E731
    # history: seq A has 13 cached tokens, B 20, C 5 (their K/V written by an eager step)
    hist = [tok(13), tok(20), tok(5)]
    tables = [list(range(0, 4)), list(range(4, 8)), list(range(8, 10))]
    r.logits([SeqWork(h, 0, t, True) for h, t in zip(hist, tables)])
    # the step: A continues with a 9-token chunk, B and C decode one token, D is a new prompt
    works = [SeqWork(tok(9), 13, tables[0], True), SeqWork(tok(11), 0, list(range(10, 12)), True),
             SeqWork(tok(1), 20, tables[1], True), SeqWork(tok(1), 5, tables[2], True)]
    want = r.logits(works)  # eager: varlen kernel on the head, decode kernel on the tail
    packer = InputPacker(torch.device("cpu"), BS, 64, 8, r.packer.max_width, mixed_max_tokens=32,
                         tile_block_m=r.backend.block_m)
    inp = packer.pack(works, BLOCKS, mixed_tokens=32)  # 22 tokens padded to 32
    assert inp.input_ids.shape == (32,) and inp.meta.tile_seq is not None
    assert (inp.meta.slot_mapping[22:] == -1).all()  # padding writes no K/V
    with torch.inference_mode():
        hidden = r.model(inp.input_ids, inp.positions, inp.meta, r.kv_caches)
        got = r.model.compute_logits(hidden.index_select(0, inp.logits_indices))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="do not fit a mixed graph"):
        packer.pack(works, BLOCKS, mixed_tokens=16)


def test_mixed_token_buckets():
    assert mixed_token_buckets(8192, 256) == [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768,
                                              1024, 1536, 2048, 3072, 4096, 6144, 8192]
    assert mixed_token_buckets(16384, 512)[-1] == 8192  # bigger steps run eagerly
    assert mixed_token_buckets(100, 4) == [16, 24, 32, 48, 64, 96, 100]


def test_mixed_graphs_need_cuda_graphs_and_a_tile_map_backend():
    with pytest.raises(ValueError, match="mixed_graphs needs CUDA graphs"):
        ModelRunner(SPEC, "cpu", RunnerOptions(dtype=torch.float32, block_size=BS, num_kv_blocks=BLOCKS,
                    max_num_batched_tokens=64, max_num_seqs=8, mixed_graphs=True))
