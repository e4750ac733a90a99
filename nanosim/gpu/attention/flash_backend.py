"""FlashAttention backend, used only when flash_attn imports (never on CPU).

Prefers FlashAttention-4 (``flash_attn.cute``: one varlen call with a page table handles
prefill chunks with cached prefixes and decodes together), else flash_attn 2 (varlen with
``block_table``; its paged KV needs block_size % 256 == 0). K/V are stored by our Triton
kernel. Decode-only batches of at most kernels.flash_small_decode_rows rows go to our split-KV Triton
decode kernel with its qkv prologue (``takes_qkv`` / ``forward_qkv``, as the triton
backend): FA4 has no split-KV on Hopper, so a few rows keep few SMs busy (batch-1 step
1.09 ms against 0.94 on our kernel, README). The FlashAttention calls themselves are NOT
exercised by the CPU tests (tests/gpu/test_cuda.py runs them on the GPU).
"""
from __future__ import annotations

from nanosim.gpu.attention.metadata import AttentionMetadata
from nanosim.gpu.kernels.store_kv import store_kv
from nanosim.gpu.options import KERNELS, KernelOptions


def import_flash():
    """(version, module-level function(s)); raises ImportError when flash_attn is missing."""
    try:
        from flash_attn.cute import flash_attn_varlen_func

        return 4, flash_attn_varlen_func
    except ImportError:
        from flash_attn import flash_attn_varlen_func  # noqa: F401 (raises if missing)

        return 2, flash_attn_varlen_func


class FlashAttention:
    name = "flash"
    supports_cuda_graphs = True

    def __init__(self, block_size: int, kernels: KernelOptions = KERNELS) -> None:
        self.version, self.varlen = import_flash()
        if self.version == 2 and block_size % 256:
            raise ValueError(f"flash_attn 2 paged KV needs block_size % 256 == 0, got {block_size}; "
                             "use attention='triton' or install flash-attn-4")
        from nanosim.gpu.attention.triton_backend import TritonAttention

        self.small = TritonAttention(kernels=kernels)  # small decode batches (see the module doc)
        # decode-only batches of at most this many rows run it (0: never); read when the
        # model runs, so at capture for CUDA graphs
        self.small_decode_rows = kernels.flash_small_decode_rows

    def takes_qkv(self, meta: AttentionMetadata) -> bool:
        """Whether forward_qkv serves this batch: decode-only, at most small_decode_rows rows."""
        return meta.num_seqs <= self.small_decode_rows and self.small.takes_qkv(meta)

    def forward_qkv(self, *args, **kwargs):
        """TritonAttention.forward_qkv: our split-KV decode kernel from the raw qkv projection."""
        return self.small.forward_qkv(*args, **kwargs)

    def forward(self, q, k, v, k_cache, v_cache, meta: AttentionMetadata, scale: float):
        if k is not None:  # None: the fused qk-norm/rope kernel stored them
            store_kv(k, v, k_cache, v_cache, meta.slot_mapping)
        if self.version == 4:
            if meta.num_prefills == 0:  # decode: q (B, 1, Hq, D), the layout tested on H100
                out = self.varlen(q.unsqueeze(1), k_cache, v_cache, seqused_k=meta.seq_lens,
                                  page_table=meta.block_tables, softmax_scale=scale, causal=True)
                return _first(out).squeeze(1)
            out = self.varlen(q, k_cache, v_cache, cu_seqlens_q=meta.query_start_loc,
                              seqused_k=meta.seq_lens, max_seqlen_q=meta.max_query_len,
                              page_table=meta.block_tables, softmax_scale=scale, causal=True)
            return _first(out)
        cu_k = meta.query_start_loc.new_zeros(meta.num_seqs + 1)
        cu_k[1:] = meta.seq_lens.cumsum(0)
        return self.varlen(q, k_cache, v_cache, meta.query_start_loc, cu_k, meta.max_query_len,
                           meta.max_seq_len, softmax_scale=scale, causal=True,
                           block_table=meta.block_tables)


def _first(out):
    return out[0] if isinstance(out, tuple) else out
