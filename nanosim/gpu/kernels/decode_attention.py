"""Paged decode attention: one query token per sequence, GQA, optional split-KV.

Grid (B, Hkv, S). Program (i, h, s) serves row order[i] when an order is given (the packer
passes the rows longest context first: the longest programs start in the first wave and the
short ones fill the last, instead of a long row landing in the tail), else row i. A program
takes all q heads of one KV head (padded to >= 16 rows for
tl.dot), walks its share of the context in BLOCK_N-token tiles, and looks up each token's
physical block in the block table, so any block_size >= 1 works. With S > 1 splits
(flash-decoding), partial outputs and log-sum-exps are combined by a second kernel; S is
fixed per call (not derived from lengths), so the launch is CUDA-graph safe.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from nanosim.gpu.kernels.pdl import pdl_enter, pdl_launch
from nanosim.gpu.kernels.qkv_prologue import QKVPrologue, prologue_inputs, qkv_prologue
from nanosim.gpu.options import KERNELS, KernelOptions

LOG2E = 1.4426950408889634


@triton.jit
def paged_kv_offsets(bt_row_ptr, n, n_ok, d, d_ok, kvh, block_size, stride_slot, stride_head):
    """Cache offsets (BLOCK_N, BLOCK_D) of context tokens n of one sequence, KV head kvh, and
    their mask: token n lives in block bt_row[n // block_size] at offset n % block_size."""
    page = tl.load(bt_row_ptr + n // block_size, mask=n_ok, other=0)
    slot = page.to(tl.int64) * block_size + n % block_size
    return slot[:, None] * stride_slot + kvh * stride_head + d[None, :], n_ok[:, None] & d_ok[None, :]


@triton.jit
def online_softmax_step(s, m_i, l_i, acc, v_ptrs, kv_ok, DOT_PRECISION: tl.constexpr):
    """Fold one key tile into a running softmax-weighted sum (flash attention): scores s
    (rows, BLOCK_N) in the log2 domain, masked keys at -inf; running max m_i and sum l_i
    (rows,), acc (rows, BLOCK_D) fp32; V of the tile at v_ptrs. Returns (m_i, l_i, acc)."""
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    v = tl.load(v_ptrs, mask=kv_ok, other=0.0)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
    return m_new, l_i * alpha + tl.sum(p, 1), acc


@triton.jit
def _fold_loaded(s, m_i, l_i, acc, v, DOT_PRECISION: tl.constexpr):
    """online_softmax_step with the tile's V already loaded (v (BLOCK_N, BLOCK_D))."""
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
    return m_new, l_i * alpha + tl.sum(p, 1), acc


@triton.jit
def _fold_first_tile(q, k1, v1, k_new, v_new, n1, seq_len, hi, qk_scale, m_i, l_i, acc,
                     DOT_PRECISION: tl.constexpr):
    """Fold a tile read before the prologue ran (tokens n1, K k1 and V v1) into the running
    softmax, the new token's K/V (the prologue's k_new, v_new) put in at position seq_len - 1."""
    new = (n1 == seq_len - 1)[:, None]
    k1 = tl.where(new, k_new[None, :], k1)
    v1 = tl.where(new, v_new[None, :], v1)
    s = tl.dot(q, tl.trans(k1), input_precision=DOT_PRECISION) * qk_scale
    s = tl.where((n1 < hi)[None, :], s, float("-inf"))
    return _fold_loaded(s, m_i, l_i, acc, v1, DOT_PRECISION)


@triton.jit
def _store_output(out_row_ptr, part_o_ptr, part_lse_ptr, m_i, l_i, acc, heads, h_ok, d, d_ok,
                  valid, head_base, num_splits, split, stride_oh, SPLIT: tl.constexpr,
                  HEAD_DIM: tl.constexpr):
    """The program's normalised output: its row's q heads at out_row_ptr (no split), or
    (SPLIT) the partials o (B, Hq, S, HEAD_DIM) fp32 and lse (B, Hq, S) fp32, contiguous,
    at rows (head_base + heads) * num_splits + split."""
    o = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]  # empty split / seq_len 0 -> zeros
    hd_ok = h_ok[:, None] & d_ok[None, :] & valid
    if not SPLIT:
        tl.store(out_row_ptr + heads[:, None] * stride_oh + d[None, :],
                 o.to(out_row_ptr.dtype.element_ty), mask=hd_ok)
    else:
        row = (head_base + heads) * num_splits + split
        tl.store(part_o_ptr + row[:, None] * HEAD_DIM + d[None, :], o, mask=hd_ok)
        lse = tl.where(l_i > 0, m_i + tl.log2(tl.where(l_i > 0, l_i, 1.0)), float("-inf"))
        tl.store(part_lse_ptr + row, lse, mask=h_ok & valid)


@triton.jit(do_not_specialize=["num_splits"])
def _decode_kernel(q_ptr, k_cache_ptr, v_cache_ptr, bt_ptr, seq_lens_ptr, out_ptr,
                   part_o_ptr, part_lse_ptr, order_ptr, qsl_ptr,
                   stride_qb, stride_qh, stride_ob, stride_oh, stride_slot, stride_head, stride_bt,
                   qk_scale, block_size, num_q_heads, num_splits,
                   GROUP: tl.constexpr, BLOCK_H: tl.constexpr, HEAD_DIM: tl.constexpr,
                   BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT: tl.constexpr,
                   DOT_PRECISION: tl.constexpr, USE_PDL: tl.constexpr, ORDERED: tl.constexpr = False,
                   QSL: tl.constexpr = False, qn_w_ptr=None, kn_w_ptr=None, cos_sin_ptr=None,
                   pos_ptr=None, slot_ptr=None, eps=0.0, FUSED_QKV: tl.constexpr = False,
                   PREWAIT: tl.constexpr = False):
    if not PREWAIT:
        pdl_enter(USE_PDL)
    # num_splits is a runtime value (only SPLIT = num_splits > 1 is compiled in), so changing
    # split counts never triggers a fresh compile in the middle of a replay
    b = tl.program_id(0)
    if ORDERED:  # row order[i]; -1: an idle program (a mixed graph's unused decode slots)
        b = tl.load(order_ptr + b)
    valid = b >= 0
    b = tl.maximum(b, 0)
    t = b  # the row's token in q / out
    if QSL:  # a mixed batch: the row's one query token is its last (query_start_loc[b + 1] - 1)
        t = tl.load(qsl_ptr + b + 1) - 1
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.where(valid, tl.load(seq_lens_ptr + b), 0)
    chunk = tl.cdiv(tl.cdiv(seq_len, num_splits), BLOCK_N) * BLOCK_N  # tokens per split
    lo = split * chunk
    hi = tl.minimum(lo + chunk, seq_len)

    hs = tl.arange(0, BLOCK_H)
    heads = kvh * GROUP + hs  # q heads sharing this KV head
    h_ok = hs < GROUP
    d = tl.arange(0, BLOCK_D)
    d_ok = d < HEAD_DIM
    if PREWAIT:  # (FUSED_QKV) the first tile's K/V and the prologue's inputs before waiting
        # for the qkv GEMM: no kernel of the step before this one writes the cache; the new
        # token's, written below by this kernel, is patched in after the prologue. Inputs
        # (order, seq_lens, tables, positions, slots) come from the host upload, which
        # precedes the whole graph.
        n1 = lo + tl.arange(0, BLOCK_N)
        kv_off1, kv_ok1 = paged_kv_offsets(bt_ptr + b * stride_bt, n1, n1 < hi, d, d_ok, kvh,
                                           block_size, stride_slot, stride_head)
        k1 = tl.load(k_cache_ptr + kv_off1, mask=kv_ok1, other=0.0)  # (BLOCK_N, BLOCK_D)
        v1 = tl.load(v_cache_ptr + kv_off1, mask=kv_ok1, other=0.0)
        cos, sin, slot, qw, qwp, kw, kwp = prologue_inputs(qn_w_ptr, kn_w_ptr, cos_sin_ptr,
                                                            pos_ptr, slot_ptr, t, d, d_ok, HEAD_DIM)
        pdl_enter(USE_PDL)
    q = tl.load(q_ptr + t * stride_qb + heads[:, None] * stride_qh + d[None, :],
                mask=h_ok[:, None] & d_ok[None, :], other=0.0)  # (BLOCK_H, BLOCK_D)
    if FUSED_QKV:  # q_ptr is the qkv projection: q/k RMSNorm, RoPE and the K/V store here
        if not PREWAIT:
            cos, sin, slot, qw, qwp, kw, kwp = prologue_inputs(qn_w_ptr, kn_w_ptr, cos_sin_ptr,
                                                                pos_ptr, slot_ptr, t, d, d_ok,
                                                                HEAD_DIM)
        q, k_new, v_new = qkv_prologue(q, q_ptr + t * stride_qb, cos, sin, slot, qw, qwp, kw, kwp,
                                        k_cache_ptr, v_cache_ptr, heads, h_ok, d, d_ok, kvh,
                                        num_q_heads, num_q_heads // GROUP, stride_slot,
                                        stride_head, eps, (lo < seq_len) & (hi == seq_len),
                                        HEAD_DIM)

    m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)  # running max (log2 domain)
    l_i = tl.zeros([BLOCK_H], tl.float32)  # running sum of exp2
    acc = tl.zeros([BLOCK_H, BLOCK_D], tl.float32)
    start = lo
    if PREWAIT:  # fold the preloaded first tile (the owner's may hold the new token)
        if lo < hi:  # (an empty split folds nothing, as the loop below would)
            m_i, l_i, acc = _fold_first_tile(q, k1, v1, k_new, v_new, n1, seq_len, hi, qk_scale,
                                             m_i, l_i, acc, DOT_PRECISION)
        start = lo + BLOCK_N
    for n0 in range(start, hi, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        n_ok = n < hi
        kv_off, kv_ok = paged_kv_offsets(bt_ptr + b * stride_bt, n, n_ok, d, d_ok, kvh,
                                         block_size, stride_slot, stride_head)
        k = tl.load(k_cache_ptr + kv_off, mask=kv_ok, other=0.0)  # (BLOCK_N, BLOCK_D)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_H, BLOCK_N)
        s = tl.where(n_ok[None, :], s, float("-inf"))
        m_i, l_i, acc = online_softmax_step(s, m_i, l_i, acc, v_cache_ptr + kv_off, kv_ok,
                                            DOT_PRECISION)

    _store_output(out_ptr + t * stride_ob, part_o_ptr, part_lse_ptr, m_i, l_i, acc, heads, h_ok,
                  d, d_ok, valid, b * num_q_heads, num_splits, split, stride_oh, SPLIT, HEAD_DIM)


@triton.jit(do_not_specialize=["num_splits"])
def _combine_kernel(part_o_ptr, part_lse_ptr, out_ptr, order_ptr, qsl_ptr, stride_ob, stride_oh,
                    num_q_heads, num_splits, BLOCK_S: tl.constexpr, HEAD_DIM: tl.constexpr,
                    BLOCK_D: tl.constexpr, USE_PDL: tl.constexpr, ORDERED: tl.constexpr = False,
                    QSL: tl.constexpr = False):
    pdl_enter(USE_PDL)
    # Grid (B, Hq): weight each split's output by exp2(lse_s - max lse). Rows and tokens as
    # in _decode_kernel (ORDERED: program i combines row order[i]; QSL: token indexing).
    b = tl.program_id(0)
    if ORDERED:
        b = tl.load(order_ptr + b)
    valid = b >= 0
    b = tl.maximum(b, 0)
    t = b
    if QSL:
        t = tl.load(qsl_ptr + b + 1) - 1
    h = tl.program_id(1)
    s = tl.arange(0, BLOCK_S)
    s_ok = s < num_splits
    d = tl.arange(0, BLOCK_D)
    d_ok = d < HEAD_DIM
    row = (b * num_q_heads + h) * num_splits + s
    lse = tl.load(part_lse_ptr + row, mask=s_ok, other=float("-inf"))
    m = tl.max(lse, 0)
    m = tl.where(m == float("-inf"), 0.0, m)
    w = tl.exp2(lse - m)  # (BLOCK_S,), 0 for empty splits
    total = tl.sum(w, 0)
    o = tl.load(part_o_ptr + row[:, None] * HEAD_DIM + d[None, :],
                mask=s_ok[:, None] & d_ok[None, :], other=0.0)
    res = tl.sum(o * w[:, None], 0) / tl.where(total > 0, total, 1.0)
    tl.store(out_ptr + t * stride_ob + h * stride_oh + d, res.to(out_ptr.dtype.element_ty), mask=d_ok & valid)


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs: exact ("ieee") dots, so fp32 GPU runs match the torch reference tightly;
    16-bit inputs: the default ("tf32" is ignored for them)."""
    return "ieee" if dtype == torch.float32 else "tf32"


# H100, Qwen3-0.6B shapes (kernel_sweep.py): 2 stages and 128-token tiles without a split
# gave 197 us vs 208 (4 warps, 3 stages, 64) at batch 128 of contexts 100..2000, equal at
# batch 256 x 1024 (2,970 GB/s); 64-token tiles were faster at batch 1 (16 splits).
DECODE_LAUNCH = {"num_warps": 4, "num_stages": 2}
# The switches (split count, row order, pre-wait rows, PDL) are a KernelOptions handed in by
# the caller (nanosim/gpu/options.py), read at launch (at capture for CUDA graphs).


def default_num_splits(batch: int, num_kv_heads: int, device: torch.device,
                       max_seq_len: int = 0, opts: KernelOptions = KERNELS) -> int:
    """Enough programs to cover ~opts.split_waves waves of SMs, and enough splits that no
    program walks more than opts.split_tokens of the longest context (max_seq_len: the batch's
    bound, for CUDA graphs the captured max_model_len, so the split count stays fixed); at
    most opts.max_splits; 1 on CPU."""
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    by_sms = math.ceil(opts.split_waves * sms / max(1, batch * num_kv_heads))
    by_len = math.ceil(max_seq_len / opts.split_tokens) if opts.split_tokens > 0 else 1
    return max(1, min(opts.max_splits, max(by_sms, by_len)))


def paged_decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                           block_tables: torch.Tensor, seq_lens: torch.Tensor, scale: float,
                           out: torch.Tensor | None = None, num_splits: int | None = None,
                           block_n: int | None = None, max_seq_len: int = 0, num_warps: int | None = None,
                           num_stages: int | None = None, order: torch.Tensor | None = None,
                           query_start_loc: torch.Tensor | None = None,
                           prologue: QKVPrologue | None = None,
                           opts: KernelOptions = KERNELS) -> torch.Tensor:
    """q (B, Hq, D), caches (N, block_size, Hkv, D) contiguous, block_tables (B, W) int32,
    seq_lens (B,) int32 (context incl. the new token, whose K/V is already stored)
    -> out (B, Hq, D) in q's dtype. A sequence with seq_len 0 gets zeros (graph padding).
    max_seq_len: an upper bound of seq_lens (sets the default split count, see above).
    order: (B,) int32 permutation of the rows, the order in which programs take them (the
    longest first balances the waves; None: row order). It never changes the result.
    query_start_loc: a mixed batch (a mixed CUDA graph's decode rows): q / out hold one row
    per token, the rows of seq_lens / block_tables are sequences, and sequence b's query is
    token query_start_loc[b + 1] - 1; then ``order`` (required) lists the sequences to
    compute (any length: the grid), -1 marking idle programs; other rows of out are untouched.
    block_n: context tokens per tile (None: 128 without a split, else 64); num_warps/num_stages:
    launch options (None: DECODE_LAUNCH). Defaults from the H100 sweep (kernel_sweep.py).
    prologue: q is the raw qkv projection of the decode rows (see QKVPrologue), whose new
    K/V this call stores; not with query_start_loc. opts: the runner's kernel switches
    (split count, row order, pre-wait rows, PDL)."""
    _, block_size, Hkv, D = k_cache.shape
    mixed = query_start_loc is not None
    Hq = q.shape[1] if prologue is None else prologue.num_q_heads
    if prologue is not None:
        if mixed:
            raise ValueError("the qkv prologue is for decode batches, not a mixed batch's rows")
        q = prologue.view(q, Hkv, D)
        if out is None:
            out = torch.empty(q.shape[0], Hq, D, dtype=q.dtype, device=q.device)
    T = q.shape[0]
    if mixed and order is None:
        raise ValueError("query_start_loc (a mixed batch) needs the order of the rows to compute")
    B = order.shape[0] if mixed else T  # programs along grid dim 0
    assert q.stride(2) == 1 and k_cache.is_contiguous() and v_cache.is_contiguous()
    assert Hq % Hkv == 0 and block_tables.stride(1) == 1
    if out is None:
        out = torch.empty_like(q)
    if B == 0:
        return out
    splits = num_splits or default_num_splits(B, Hkv, q.device, max_seq_len, opts)
    if not 1 <= splits <= opts.max_splits:
        raise ValueError(f"num_splits must be in 1..{opts.max_splits}, got {splits}")
    group = Hq // Hkv
    block_n = block_n or (128 if splits == 1 else 64)
    rows = seq_lens.shape[0] if mixed else B  # partials are kept per sequence row
    if splits > 1:
        part_o = torch.empty(rows, Hq, splits, D, dtype=torch.float32, device=q.device)
        part_lse = torch.empty(rows, Hq, splits, dtype=torch.float32, device=q.device)
    else:
        part_o = part_lse = out  # unused
    if order is not None and (order.shape[0] < B or order.dtype != torch.int32):
        raise ValueError(f"order must be int32 with >= {B} rows, got {order.dtype} {tuple(order.shape)}")
    _decode_kernel[(B, Hkv, splits)](
        q, k_cache, v_cache, block_tables, seq_lens, out, part_o, part_lse,
        seq_lens if order is None else order, seq_lens if query_start_loc is None else query_start_loc,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1), k_cache.stride(1), k_cache.stride(2),
        block_tables.stride(0), scale * LOG2E, block_size, Hq, splits,
        GROUP=group, BLOCK_H=max(16, triton.next_power_of_2(group)), HEAD_DIM=D,
        BLOCK_D=triton.next_power_of_2(D), BLOCK_N=block_n, SPLIT=splits > 1,
        DOT_PRECISION=dot_precision(q.dtype),
        num_warps=num_warps or DECODE_LAUNCH["num_warps"], num_stages=num_stages or DECODE_LAUNCH["num_stages"],
        ORDERED=order is not None and (opts.decode_order or mixed), QSL=mixed,
        **pdl_launch(q.device, opts.pdl), **({} if prologue is None else prologue.kernel_args()),
        PREWAIT=prologue is not None and B <= opts.prewait_max_rows)
    if splits > 1:
        _combine(part_o, part_lse, out, seq_lens, order, query_start_loc, B, splits, opts)
    return out


def _combine(part_o, part_lse, out, seq_lens, order, query_start_loc, programs: int, splits: int,
             opts: KernelOptions):
    """The split partials (rows, Hq, S, D) / (rows, Hq, S) -> out, one program per (row, q
    head), rows taken as paged_decode_attention's programs take them."""
    Hq, D = part_o.shape[1], part_o.shape[3]
    mixed = query_start_loc is not None
    _combine_kernel[(programs, Hq)](part_o, part_lse, out, seq_lens if order is None else order,
                                    seq_lens if query_start_loc is None else query_start_loc,
                                    out.stride(0), out.stride(1), Hq, splits,
                                    BLOCK_S=triton.next_power_of_2(splits), HEAD_DIM=D,
                                    BLOCK_D=triton.next_power_of_2(D),
                                    ORDERED=order is not None and (opts.decode_order or mixed),
                                    QSL=mixed, **pdl_launch(out.device, opts.pdl))
