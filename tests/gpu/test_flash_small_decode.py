"""The flash backend hands small decode-only batches to our split-KV Triton kernel (FA4 has
no split-KV on Hopper). The FlashAttention calls need a GPU (tests/gpu/test_cuda.py); the
routing is tested here on CPU with flash_attn stubbed out."""
import dataclasses

import pytest
import torch

from nanosim.gpu.attention import flash_backend
from nanosim.gpu.attention.triton_backend import TritonAttention
from nanosim.gpu.kernels.qkv_prologue import QKVPrologue
from nanosim.gpu.rotary import RotaryEmbedding
from tests.gpu.test_triton_kernels import DEV, HKV, D, paged_batch, to


@pytest.fixture
def flash(monkeypatch):
    def varlen(*a, **k):
        raise AssertionError("FlashAttention was called for a batch our kernel should take")

    monkeypatch.setattr(flash_backend, "import_flash", lambda: (4, varlen))
    return flash_backend.FlashAttention(block_size=4)


def test_small_decode_batches_go_to_the_triton_kernel(flash, monkeypatch):
    from nanosim.gpu.options import KernelOptions

    _, _, _, decode = paged_batch([1, 1, 1], [9, 3, 20], 4)
    _, _, _, mixed = paged_batch([5, 1], [0, 3], 4)
    assert flash.takes_qkv(decode) and not flash.takes_qkv(mixed)
    two = flash_backend.FlashAttention(4, KernelOptions(flash_small_decode_rows=2))
    assert not two.takes_qkv(decode)  # 3 rows: FlashAttention's
    assert not flash_backend.FlashAttention(4, KernelOptions(qkv_prologue=False)).takes_qkv(decode)


def test_small_decode_output_is_the_triton_backends(flash):
    hq = 4
    _, kc, vc, meta = paged_batch([1, 1], [9, 30], 4, hq=hq, num_blocks=60)
    meta = dataclasses.replace(meta, **{f: getattr(meta, f).to(DEV) for f in (
        "slot_mapping", "query_start_loc", "seq_lens", "block_tables")})
    g = torch.Generator().manual_seed(3)
    qkv = torch.randn(2, (hq + 2 * HKV) * D, generator=g)
    qw, kw = 1 + 0.1 * torch.randn(2, D, generator=g)
    rope = RotaryEmbedding(D, 256, 10000.0)
    qkv, qw, kw, cos_sin, pos, slots = to(DEV, qkv, qw, kw, rope.cos_sin_cache,
                                          meta.seq_lens.long() - 1, meta.slot_mapping)
    pro = QKVPrologue(hq, qw, kw, cos_sin, pos, slots, 1e-6)
    caches = [to(DEV, kc.clone(), vc.clone()) for _ in range(2)]
    got = flash.forward_qkv(qkv, pro, *caches[0], meta, D ** -0.5)
    want = TritonAttention().forward_qkv(qkv, pro, *caches[1], meta, D ** -0.5)
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    torch.testing.assert_close(caches[0][0], caches[1][0], atol=0, rtol=0)  # K/V stored alike
