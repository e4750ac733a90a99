"""Each Triton kernel against the torch reference, on CPU through TRITON_INTERPRET=1."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported (conftest also does)

import pytest  # noqa: E402

from nanosim.gpu.attention.metadata import AttentionMetadata  # noqa: E402
from nanosim.gpu.attention.torch_ref import paged_attention_ref, store_kv_ref  # noqa: E402
from nanosim.gpu.kernels.decode_attention import paged_decode_attention  # noqa: E402
from nanosim.gpu.kernels.fused_ops import qk_norm_rope, rms_norm, silu_and_mul  # noqa: E402
from nanosim.gpu.kernels.prefill_attention import paged_prefill_attention  # noqa: E402
from nanosim.gpu.kernels.store_kv import store_kv  # noqa: E402
from nanosim.gpu.layers import RMSNorm  # noqa: E402
from nanosim.gpu.rotary import RotaryEmbedding  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
HKV, D = 2, 16


def paged_batch(q_lens, starts, block_size, num_blocks=40, hq=4, seed=0):
    """Random caches holding each sequence's context under a shuffled block table, plus
    q for the new tokens and the matching metadata (K/V of new tokens already stored)."""
    g = torch.Generator().manual_seed(seed)
    k_cache = torch.randn(num_blocks, block_size, HKV, D, generator=g)
    v_cache = torch.randn(num_blocks, block_size, HKV, D, generator=g)
    seq_lens = [s + q for s, q in zip(starts, q_lens)]
    need = [-(-n // block_size) for n in seq_lens]
    perm = torch.randperm(num_blocks, generator=g).tolist()
    width = max(need)
    tables = torch.zeros(len(q_lens), width, dtype=torch.int32)
    for i, n in enumerate(need):
        tables[i, :n] = torch.tensor(perm[:n])
        perm = perm[n:]
    qsl = torch.tensor([0] + q_lens).cumsum(0).int()
    slots = torch.cat([tables[i, torch.arange(s, s + q) // block_size].long() * block_size
                       + torch.arange(s, s + q) % block_size for i, (s, q) in enumerate(zip(starts, q_lens))])
    q = torch.randn(sum(q_lens), hq, D, generator=g)
    n_pref = max((i + 1 for i, n in enumerate(q_lens) if n > 1), default=0)
    meta = AttentionMetadata(slots.int(), qsl, torch.tensor(seq_lens).int(), tables, n_pref,
                             int(qsl[n_pref]), max(q_lens), max(seq_lens), q_lens, seq_lens)
    return q, k_cache, v_cache, meta


def to(dev, *ts):
    return [t.to(dev) for t in ts]


@pytest.mark.parametrize("block_size", [1, 4, 16])
def test_store_kv_matches_reference(block_size):
    g = torch.Generator().manual_seed(1)
    qkv = torch.randn(5, (4 + 2 * HKV) * D, generator=g)  # v as a strided view, like the model
    k = torch.randn(5, HKV, D, generator=g)
    v = qkv[:, (4 + HKV) * D:].view(5, HKV, D)
    slots = torch.tensor([3, -1, 0, 17, 9], dtype=torch.int32)
    caches = [torch.zeros(-(-20 // block_size), block_size, HKV, D) for _ in range(4)]
    store_kv_ref(k, v, caches[0], caches[1], slots)
    kc, vc = to(DEV, caches[2], caches[3])
    store_kv(*to(DEV, k, v), kc, vc, slots.to(DEV))
    assert torch.equal(kc.cpu(), caches[0]) and torch.equal(vc.cpu(), caches[1])


@pytest.mark.parametrize("block_size,splits", [(4, 1), (4, 3), (16, 2), (1, 1)])
def test_decode_attention_matches_reference(block_size, splits):
    q, kc, vc, meta = paged_batch([1, 1, 1], [0, 9, 37], block_size, num_blocks=60)
    ref = paged_attention_ref(q, kc, vc, meta, D ** -0.5)
    out = paged_decode_attention(*to(DEV, q, kc, vc, meta.block_tables, meta.seq_lens), D ** -0.5,
                                 num_splits=splits, block_n=16)
    torch.testing.assert_close(out.cpu(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("splits", [1, 2])
def test_decode_attention_row_order_only_schedules(splits):
    """Programs taking the rows longest first (the packer's decode_order) write the same rows."""
    q, kc, vc, meta = paged_batch([1, 1, 1], [0, 9, 37], 4, num_blocks=60)
    args = to(DEV, q, kc, vc, meta.block_tables, meta.seq_lens)
    plain = paged_decode_attention(*args, D ** -0.5, num_splits=splits, block_n=16)
    order = torch.tensor([2, 1, 0], dtype=torch.int32, device=DEV)
    out = paged_decode_attention(*args, D ** -0.5, num_splits=splits, block_n=16, order=order)
    assert torch.equal(out, plain)
    if splits == 1:  # programs follow the order given (with splits, combine writes every row)
        only_first = torch.zeros(3, dtype=torch.int32, device=DEV)
        out = paged_decode_attention(*args, D ** -0.5, num_splits=1, block_n=16, order=only_first,
                                     out=torch.zeros_like(plain))
        assert torch.equal(out[0], plain[0]) and not out[1:].any()
    with pytest.raises(ValueError, match="order must be int32"):
        paged_decode_attention(*args, D ** -0.5, order=order[:2])


@pytest.mark.parametrize("splits", [1, 3])
def test_decode_attention_on_the_one_token_rows_of_a_mixed_batch(splits):
    """A mixed graph's decode launch: rows listed in order (-1: idle), each reading its query
    token at query_start_loc[row + 1] - 1 and writing only that row of out."""
    q, kc, vc, meta = paged_batch([5, 1, 3, 1], [0, 9, 4, 30], 4, num_blocks=60)
    ref = paged_attention_ref(q, kc, vc, meta, D ** -0.5)
    order = torch.tensor([3, 1, -1, -1, -1], dtype=torch.int32)
    out = torch.full_like(q, float("nan"))
    out = paged_decode_attention(*to(DEV, q, kc, vc, meta.block_tables, meta.seq_lens), D ** -0.5,
                                 out=out.to(DEV), num_splits=splits, block_n=16,
                                 order=order.to(DEV), query_start_loc=meta.query_start_loc.to(DEV)).cpu()
    for tok in (5, 9):  # the one-token rows 1 and 3
        torch.testing.assert_close(out[tok], ref[tok], atol=1e-5, rtol=1e-5)
    others = [t for t in range(10) if t not in (5, 9)]
    assert out[others].isnan().all()  # the multi-token rows are left to the varlen kernel
    with pytest.raises(ValueError, match="needs the order"):
        paged_decode_attention(q, kc, vc, meta.block_tables, meta.seq_lens, 0.1,
                               query_start_loc=meta.query_start_loc)


def test_decode_attention_seq_len_zero_gives_zeros():
    q, kc, vc, meta = paged_batch([1, 1], [0, 5], 4)
    seq_lens = torch.tensor([0, 6], dtype=torch.int32)
    out = paged_decode_attention(*to(DEV, q, kc, vc, meta.block_tables, seq_lens), 0.25,
                                 num_splits=2, block_n=16).cpu()
    assert torch.equal(out[0], torch.zeros_like(out[0])) and torch.isfinite(out).all()


@pytest.mark.parametrize("block_size", [4, 16])
def test_prefill_attention_with_cached_prefix_matches_reference(block_size):
    # seq 0: fresh prompt of 21 tokens; seq 1: 7-token chunk after 18 cached tokens
    # (prefix hit); seq 2: 1-token chunk after 8 cached tokens (fully cached prompt).
    q, kc, vc, meta = paged_batch([21, 7, 1], [0, 18, 8], block_size, num_blocks=30)
    ref = paged_attention_ref(q, kc, vc, meta, D ** -0.5)
    out = paged_prefill_attention(*to(DEV, q, kc, vc, meta.block_tables, meta.query_start_loc,
                                      meta.seq_lens), meta.max_query_len, D ** -0.5,
                                  block_m=16, block_n=16)
    torch.testing.assert_close(out.cpu(), ref, atol=1e-5, rtol=1e-5)


def test_tiled_varlen_attention_matches_reference_with_idle_tiles():
    """The CUDA-graph (tile-map) launch: prefill chunks with cached prefixes and decodes in
    one grid whose length exceeds the work (idle programs); rows of every kind match."""
    from nanosim.gpu.kernels.prefill_attention import max_tiles, tile_map, tiled_varlen_attention

    q_lens, starts = [21, 7, 1, 1, 1], [0, 18, 8, 30, 3]
    q, kc, vc, meta = paged_batch(q_lens, starts, 4, num_blocks=40)
    ref = paged_attention_ref(q, kc, vc, meta, D ** -0.5)
    n = max_tiles(64, 8, block_m=16)  # a 64-token, 8-sequence budget: more tiles than needed
    seq, m = tile_map(q_lens, n, block_m=16)
    assert n == 4 + 8 and list(seq[:6]) == [0, 0, 1, 2, 3, 4] and (seq[6:] == -1).all()
    assert list(m[:6]) == [0, 1, 0, 0, 0, 0]
    out = tiled_varlen_attention(*to(DEV, q, kc, vc, meta.block_tables, meta.query_start_loc,
                                     meta.seq_lens, torch.from_numpy(seq), torch.from_numpy(m)),
                                 D ** -0.5, block_m=16, block_n=16)
    torch.testing.assert_close(out.cpu(), ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="do not fit"):
        tile_map(q_lens, 5, block_m=16)


def test_triton_backend_mixed_batch_matches_torch_backend():
    from nanosim.gpu.attention.torch_ref import TorchAttention
    from nanosim.gpu.attention.triton_backend import TritonAttention

    q, kc, vc, meta = paged_batch([6, 3, 1, 1], [0, 8, 13, 2], 4, num_blocks=30)
    k, v = torch.randn(2, q.shape[0], HKV, D).unbind(0)
    kc2, vc2 = kc.clone(), vc.clone()
    ref = TorchAttention().forward(q, k, v, kc, vc, meta, 0.3)
    dmeta = AttentionMetadata(*to(DEV, meta.slot_mapping, meta.query_start_loc, meta.seq_lens,
                                  meta.block_tables), meta.num_prefills, meta.num_prefill_tokens,
                              meta.max_query_len, meta.max_seq_len)
    kc2, vc2 = to(DEV, kc2, vc2)
    out = TritonAttention(block_m=16, block_n=16).forward(*to(DEV, q, k, v), kc2, vc2, dmeta, 0.3)
    torch.testing.assert_close(out.cpu(), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(kc2.cpu(), kc)


def test_rms_norm_kernel_matches_layer():
    x, res, w = torch.randn(3, 5, 40).unbind(1)[:3]
    layer = RMSNorm(40, 1e-6)
    layer.weight.data = w[0]
    y_ref, r_ref = layer(x, res)
    y, r = rms_norm(*to(DEV, x, layer.weight.data), 1e-6, residual=res.clone().to(DEV))
    torch.testing.assert_close(y.cpu(), y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r.cpu(), r_ref)
    torch.testing.assert_close(rms_norm(*to(DEV, x, w[0]), 1e-6).cpu(), layer(x), atol=1e-5, rtol=1e-5)


def test_silu_and_mul_kernel():
    x = torch.randn(3, 2 * 50)
    ref = torch.nn.functional.silu(x[:, :50]) * x[:, 50:]
    torch.testing.assert_close(silu_and_mul(x.to(DEV), block=32).cpu(), ref, atol=1e-6, rtol=1e-5)


def test_qk_norm_rope_kernel_matches_torch_path():
    hq, T = 4, 5
    qkv = torch.randn(T, (hq + 2 * HKV) * D)
    qw, kw = 1 + 0.1 * torch.randn(2, D)
    pos = torch.tensor([0, 3, 7, 100, 255])
    rope = RotaryEmbedding(D, 256, 10000.0)
    qn, kn = RMSNorm(D), RMSNorm(D)
    qn.weight.data, kn.weight.data = qw, kw
    q_ref, k_ref = rope(pos, qn(qkv[:, :hq * D].view(T, hq, D)), kn(qkv[:, hq * D:(hq + HKV) * D].view(T, HKV, D)))
    q, k = qk_norm_rope(*to(DEV, qkv, qw, kw, rope.cos_sin_cache, pos), hq, HKV, D, 1e-6)
    torch.testing.assert_close(q.cpu(), q_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(k.cpu(), k_ref, atol=1e-5, rtol=1e-5)


def test_qk_norm_rope_can_store_k_and_v_into_the_cache():
    hq, T, bs = 4, 5, 4
    qkv = torch.randn(T, (hq + 2 * HKV) * D)
    qw, kw = 1 + 0.1 * torch.randn(2, D)
    pos = torch.tensor([0, 3, 7, 100, 255])
    slots = torch.tensor([3, -1, 0, 17, 9], dtype=torch.int32)
    rope = RotaryEmbedding(D, 256, 10000.0)
    q_ref, k_ref = (t.cpu() for t in qk_norm_rope(*to(DEV, qkv, qw, kw, rope.cos_sin_cache, pos),
                                                   hq, HKV, D, 1e-6))
    v = qkv[:, (hq + HKV) * D:].reshape(T, HKV, D)
    want = [torch.zeros(5, bs, HKV, D) for _ in range(2)]
    store_kv_ref(k_ref, v, *want, slots)
    caches = to(DEV, *[torch.zeros(5, bs, HKV, D) for _ in range(2)])
    q = qk_norm_rope(*to(DEV, qkv, qw, kw, rope.cos_sin_cache, pos), hq, HKV, D, 1e-6,
                     kv_cache=caches, slot_mapping=slots.to(DEV))
    torch.testing.assert_close(q.cpu(), q_ref)
    for got, ref in zip(caches, want):  # slot -1 wrote nothing; the rest exactly
        torch.testing.assert_close(got.cpu(), ref, atol=0, rtol=0)


@pytest.mark.parametrize("M", [1, 3, 16])
@pytest.mark.parametrize("block_n,split_k", [(16, 1), (32, 1), (16, 2), (32, 4)])
def test_skinny_linear_matches_matmul(M, block_n, split_k):
    from nanosim.gpu.kernels.skinny_gemm import SkinnyConfig, skinny_linear

    g = torch.Generator().manual_seed(M)
    x, w = torch.randn(M, 200, generator=g), torch.randn(70, 200, generator=g)  # ragged N, K
    cfg = SkinnyConfig(block_n=block_n, block_k=32, split_k=split_k)
    ref = x @ w.T
    parts = skinny_linear(*to(DEV, x, w), partials=True, config=cfg).cpu()
    assert parts.shape == (split_k, M, 70) and parts.dtype == torch.float32
    torch.testing.assert_close(parts.sum(0), ref, atol=1e-4, rtol=1e-5)
    if split_k == 1:
        torch.testing.assert_close(skinny_linear(*to(DEV, x, w), config=cfg).cpu(), ref,
                                   atol=1e-4, rtol=1e-5)
    else:  # a split without partials would need a reduction nobody runs
        with pytest.raises(ValueError, match="partials"):
            skinny_linear(*to(DEV, x, w), config=cfg)


def test_skinny_gate_up_silu_matches_unfused():
    from nanosim.gpu.kernels.skinny_gemm import SkinnyConfig, skinny_gate_up_silu

    x, w = torch.randn(2, 96), torch.randn(2 * 40, 96)
    ref = torch.nn.functional.silu(x @ w[:40].T) * (x @ w[40:].T)
    got = skinny_gate_up_silu(*to(DEV, x, w), config=SkinnyConfig(block_n=16, block_k=32))
    torch.testing.assert_close(got.cpu(), ref, atol=1e-4, rtol=1e-5)


def test_skinny_refuses_large_batches():
    from nanosim.gpu.kernels.skinny_gemm import SKINNY_MAX_M, skinny_linear

    with pytest.raises(ValueError, match="rows"):
        skinny_linear(*to(DEV, torch.randn(SKINNY_MAX_M + 1, 8), torch.randn(4, 8)))


def test_rms_norm_adds_split_k_partials_first():
    g = torch.Generator().manual_seed(5)
    parts, res, w = torch.randn(3, 4, 48, generator=g), torch.randn(4, 48, generator=g), torch.randn(48, generator=g)
    layer = RMSNorm(48)
    layer.weight.data = w
    y_ref, r_ref = layer(parts.sum(0), res.clone())
    y, r = rms_norm(*to(DEV, parts, w), 1e-6, residual=res.clone().to(DEV))
    torch.testing.assert_close(y.cpu(), y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r.cpu(), r_ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="residual"):
        rms_norm(*to(DEV, parts, w), 1e-6)



@pytest.mark.parametrize("prewait", [0, 4])
@pytest.mark.parametrize("splits", [1, 3])
def test_decode_attention_qkv_prologue_matches_norm_rope_then_attention(splits, prewait):
    """The decode kernel taking the raw qkv projection (q/k RMSNorm, RoPE and the new token's
    K/V store in its prologue) gives what qk_norm_rope + store + attention give, caches too;
    rows of every split position, a padding row (seq_len 0, slot -1) left alone. prewait 4:
    the first tile is read before the prologue stores the new token (patched in: with 3
    splits, row 2's new token is in its owner split's first tile)."""
    from nanosim.gpu.kernels.qkv_prologue import QKVPrologue
    from nanosim.gpu.options import KernelOptions

    hq, bs = 4, 4
    _, kc, vc, meta = paged_batch([1, 1, 1, 1], [0, 9, 37, 20], bs, num_blocks=60, hq=hq)
    T = 4
    g = torch.Generator().manual_seed(5)
    qkv = torch.randn(T, (hq + 2 * HKV) * D, generator=g)
    qw, kw = 1 + 0.1 * torch.randn(2, D, generator=g)
    rope = RotaryEmbedding(D, 256, 10000.0)
    pos = meta.seq_lens.long() - 1
    seq_lens, slots = meta.seq_lens.clone(), meta.slot_mapping.clone()
    seq_lens[3], slots[3] = 0, -1  # a CUDA-graph padding row
    tables, cos_sin = to(DEV, meta.block_tables, rope.cos_sin_cache)
    qkv, qw, kw, pos, seq_lens, slots = to(DEV, qkv, qw, kw, pos.clamp(min=0), seq_lens, slots)
    ref_caches = to(DEV, kc.clone(), vc.clone())
    q_ref = qk_norm_rope(qkv, qw, kw, cos_sin, pos, hq, HKV, D, 1e-6, kv_cache=ref_caches,
                         slot_mapping=slots)
    ref = paged_decode_attention(q_ref, *ref_caches, tables, seq_lens, D ** -0.5,
                                 num_splits=splits, block_n=16)
    kc2, vc2 = to(DEV, kc.clone(), vc.clone())
    pro = QKVPrologue(hq, qw, kw, cos_sin, pos, slots, 1e-6)
    out = paged_decode_attention(qkv, kc2, vc2, tables, seq_lens, D ** -0.5, num_splits=splits,
                                 block_n=16, prologue=pro,
                                 opts=KernelOptions(prewait_max_rows=prewait))
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(kc2, ref_caches[0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(vc2, ref_caches[1], atol=0, rtol=0)
    assert not torch.equal(kc2.cpu(), kc)  # the new tokens' K were written
    with pytest.raises(ValueError, match="not a mixed batch"):
        paged_decode_attention(qkv, kc2, vc2, tables, seq_lens, 0.1, prologue=pro,
                               order=torch.zeros(4, dtype=torch.int32, device=DEV),
                               query_start_loc=meta.query_start_loc.to(DEV))


@pytest.mark.parametrize("M,split_k", [(17, 1), (40, 2), (130, 3)])
def test_splitk_linear_partials_sum_to_the_matmul(M, split_k):
    """The split-K GEMM's (S, M, N) partials add up to x @ w^T: ragged M, N and K, tiles
    smaller than the matrix in every dimension, a last K slice shorter than the others."""
    from nanosim.gpu.kernels.splitk_gemm import SplitKConfig, splitk_linear

    g = torch.Generator().manual_seed(M)
    x, w = torch.randn(M, 200, generator=g), torch.randn(70, 200, generator=g)
    cfg = SplitKConfig(block_m=16, block_n=32, block_k=32, split_k=split_k)
    parts = splitk_linear(*to(DEV, x, w), config=cfg).cpu()
    assert parts.shape == (split_k, M, 70) and parts.dtype == torch.float32
    torch.testing.assert_close(parts.sum(0), x @ w.T, atol=1e-4, rtol=1e-5)
