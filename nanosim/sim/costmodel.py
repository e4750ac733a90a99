"""Analytical roofline cost model: step duration from a StepShape, a model and a GPU.

Everything is per tensor-parallel rank (ranks run in lock step, so one rank's time is the
step's time). A step is the sum of sequential phases, each bounded by its slowest resource:

    t = step_overhead                                  CPU scheduling + kernel launches
      + per_seq_overhead * seqs                        per-sequence CPU/GPU bookkeeping
      + max(gemm_flops / F_gemm, gemm_bytes / B)       all linear layers + lm head
      + max(prefill_attn_flops / F_attn, prefill_attn_bytes / B)
      + comm_bytes / L_link + comm_hops * link_latency TP all-reduces (zero at tp=1)
      + swap_bytes / L_host                            KV blocks over PCIe (preemption by swap)
      + max(decode_attn_flops / F_attn, decode_attn_bytes / B)

with achieved rates F = peak FLOP/s x efficiency, B = peak HBM bytes/s x efficiency.

Why max() inside a phase and a sum across phases: a kernel streams its operands while it
computes, so one kernel's time is set by whichever of compute or memory traffic is slower
(roofline). The phases are different kernels that run one after another on the GPU (a
layer's GEMMs wait for its attention, the all-reduce waits for the GEMM, the next layer
for the all-reduce), so their times add. Prefill and decode attention are separate terms
because they are different kernels (or different CTAs of one varlen kernel) in opposite
regimes: decode attention is bandwidth-bound, long prefill attention compute-bound; a single
max over their sum would let one hide the other.

Byte and FLOP counts (dtype = ``dtype_bytes``; h hidden, q = q_heads*head_dim,
kv = kv_heads*head_dim, I intermediate, V vocab, L layers; T computed tokens; S rows
that sample = num_prefill_seqs + num_decode_seqs):

* weights read once per step: L * (linear params / tp + norms) + final norm; embedding only
  for the T looked-up rows (vocab-parallel shard, / tp); lm head V*h/tp read fully once
  when the step samples (S > 0; with tied embeddings it is the same matrix).
* GEMM activations in/out per token per layer: 4h + (2q + 2kv + 3I)/tp elements (qkv, o,
  gate_up, down inputs and outputs; elementwise kernels assumed fused, as in vLLM).
* GEMM FLOPs: 2 * (linear params per layer / tp) * L * T + 2 * V*h/tp * S.
* attention FLOPs: 4 * L * q/tp * (prefill_attn_pairs + decode_context_tokens) (QK^T + PV).
* attention bytes: KV read (prefill_kv_tokens + decode_context_tokens) * kv_bytes_per_token/tp,
  KV written for the T computed tokens, Q read and O written (2 * L * q/tp per token).
* TP (tp > 1): 2 all-reduces per layer + 1 after the vocab-parallel embedding, each of
  T*h*dtype bytes as a ring: 2(tp-1)/tp * bytes / link + 2(tp-1) hops * latency; plus the
  logits gather to rank 0 ((tp-1)/tp * S*V*dtype bytes, one hop).
* swap: swap_blocks * block_size_tokens * kv_bytes_per_token/tp over the host link.

A step with no computed tokens and no swaps costs 0 s (the engine does not run it).
"""
from __future__ import annotations

import numpy as np

from nanosim.config import GpuSpec, ModelSpec, check_tp, ConfigError
from nanosim.core.batch import PACKED, StepShape

# --- defaults and their anchors (FACTS.md, measured on our H100 unless said otherwise) ---
# HBM: device-to-device copy reaches ~3.0 TB/s of the 3.35 TB/s datasheet -> 0.90.
HBM_EFFICIENCY = 0.90
# GEMM: 8192^3 bf16 GEMM 769-798 TFLOP/s (~780) of 989 datasheet -> 0.79.
GEMM_EFFICIENCY = 0.79
# Attention FLOPs: no measurement of ours yet. FlashAttention-3 reports 60-75% of the H100
# peak for long causal bf16 forward passes, less for short chunks; 0.5 is a conservative
# middle until a profile replaces it. (Decode attention is bandwidth-bound and uses HBM_EFFICIENCY.)
ATTN_EFFICIENCY = 0.50
# NCCL ring all-reduce of 1 GiB: 329 GB/s bus bandwidth on 2xH100 (355 on 4x, 361 on 8x) of
# the 450 GB/s one-direction NVLink 4 figure -> 0.73-0.80; 0.75.
LINK_EFFICIENCY = 0.75
# Per-step overhead: vLLM 0.26 (CUDA graphs, FA3) batch-1 decode of Qwen3-0.6B on our H100
# takes 2.9 ms/token median (128-token prompt, 512 out, so mean context ~384) while this
# model's roofline for that step is ~0.41 ms -> ~2.5 ms of CPU/launch time per step.
# A runner that only replays a CUDA graph per step (plain-torch measurements in FACTS.md:
# b1/ctx512 1.66 ms, b64/ctx1024 4.38 ms, b256/ctx1024 12.0 ms) is matched within 5% by
# step_overhead_s=1.3e-3 with every other default unchanged (tests check both anchors).
STEP_OVERHEAD_S = 2.5e-3
# Per-sequence overhead: vLLM batch 64 on the same run takes 3.85 ms/step; the roofline
# (1.33 ms at mean context 384) + 2.5 ms leaves ~0.02-0.03 ms for 63 more sequences ->
# ~0.5 us/seq (the estimate is small against the 40-50% run-to-run jitter FACTS.md warns of).
# Cross-check, plain-torch CUDA-graph decode (no scheduler): excess over the bytes floor grows
# 1.24 ms (b=1) -> 1.48 ms (b=64) -> 1.6 ms (b=256), i.e. 0.6-3.8 us/seq.
PER_SEQ_OVERHEAD_S = 0.5e-6
# Host <-> GPU link for swapping KV blocks, one direction, *achieved*: not measured here.
# Pinned cudaMemcpy typically reaches ~80% of the PCIe peak. Peaks: PCIe 5.0 x16 = 64 GB/s
# (H100/H200 SXM), PCIe 4.0 x16 = 32 GB/s (A100, L40S), RTX 4070 Laptop PCIe 4.0 x8 = 16 GB/s.
HOST_LINK_PEAK_BYTES_PER_S = {"h100": 64e9, "h200": 64e9, "a100-80gb": 32e9, "l40s": 32e9,
                              "rtx-4070-laptop": 16e9}
HOST_LINK_EFFICIENCY = 0.8
DEFAULT_HOST_LINK_PEAK_BYTES_PER_S = 32e9  # unknown GPU: assume PCIe 4.0 x16


def default_host_link_bytes_per_s(gpu: GpuSpec) -> float:
    """Achieved one-direction host link bandwidth assumed for ``gpu`` (see the table above)."""
    peak = HOST_LINK_PEAK_BYTES_PER_S.get(gpu.name, DEFAULT_HOST_LINK_PEAK_BYTES_PER_S)
    return peak * HOST_LINK_EFFICIENCY


class RooflineCostModel:
    """CostModel protocol implementation from shapes and peak figures (see module doc).

    Efficiencies scale the GpuSpec peaks (achieved = peak x efficiency); overheads are in
    seconds. ``block_size_tokens`` is only used to price swapped blocks.
    """

    name = "roofline"

    def __init__(self, model: ModelSpec, gpu: GpuSpec, tp: int = 1, dtype_bytes: int = 2, *,
                 hbm_efficiency: float = HBM_EFFICIENCY,
                 gemm_efficiency: float = GEMM_EFFICIENCY,
                 attn_efficiency: float = ATTN_EFFICIENCY,
                 link_efficiency: float = LINK_EFFICIENCY,
                 link_latency_s: float | None = None,
                 host_link_bytes_per_s: float | None = None,
                 step_overhead_s: float = STEP_OVERHEAD_S,
                 per_seq_overhead_s: float = PER_SEQ_OVERHEAD_S,
                 eager_overhead_s: float = 0.0,
                 block_size_tokens: int = 256, overlap: bool = True) -> None:
        check_tp(model, tp)
        if dtype_bytes not in (1, 2, 4):
            raise ConfigError(f"dtype_bytes must be 1, 2 or 4, got {dtype_bytes}")
        for k, v in (("hbm_efficiency", hbm_efficiency), ("gemm_efficiency", gemm_efficiency),
                     ("attn_efficiency", attn_efficiency), ("link_efficiency", link_efficiency)):
            if not v > 0:
                raise ConfigError(f"{k} must be > 0, got {v}")
        if link_latency_s is None:
            link_latency_s = gpu.link_latency_s
        if host_link_bytes_per_s is None:
            host_link_bytes_per_s = default_host_link_bytes_per_s(gpu)
        for k, v in (("link_latency_s", link_latency_s), ("step_overhead_s", step_overhead_s),
                     ("per_seq_overhead_s", per_seq_overhead_s), ("eager_overhead_s", eager_overhead_s)):
            if not v >= 0:
                raise ConfigError(f"{k} must be >= 0, got {v}")
        if not host_link_bytes_per_s > 0:
            raise ConfigError(f"host_link_bytes_per_s must be > 0, got {host_link_bytes_per_s}")
        if block_size_tokens < 1:
            raise ConfigError(f"block_size_tokens must be >= 1, got {block_size_tokens}")
        self.model, self.gpu, self.tp, self.dtype_bytes = model, gpu, tp, dtype_bytes
        # Python floats, also from a fit's numpy scalars (exact): every price is then Python
        # float arithmetic (the same IEEE results at a fraction of numpy scalars' cost)
        self.hbm_efficiency = float(hbm_efficiency)
        self.gemm_efficiency = float(gemm_efficiency)
        self.attn_efficiency = float(attn_efficiency)
        self.link_efficiency = float(link_efficiency)
        self.link_latency_s = float(link_latency_s)
        self.host_link_bytes_per_s = float(host_link_bytes_per_s)
        self.step_overhead_s = float(step_overhead_s)
        self.per_seq_overhead_s = float(per_seq_overhead_s)
        # Extra host time of a step that cannot replay a CUDA graph (any prefill tokens):
        # eager launches of every kernel. 0 by default (an engine with piecewise graphs);
        # profiles fit it (our runner: ~12 ms for Qwen3-0.6B, eager vs graphed decode).
        self.eager_overhead_s = float(eager_overhead_s)
        self.block_size_tokens = block_size_tokens
        # a phase's compute and traffic overlap (max: the roofline); False adds them, a looser
        # bound (../shared/FACTS.md derives the nano-vLLM bench's ≈ 26k tok/s that way)
        self.overlap = overlap
        self.description = (f"roofline ({model.name} on {gpu.name}, tp={tp}; efficiencies "
                            f"hbm {hbm_efficiency:.2f} gemm {gemm_efficiency:.2f} attn "
                            f"{attn_efficiency:.2f}; overhead {step_overhead_s * 1e3:.2f} ms/step)")
        self._precompute()

    # ----------------------------------------------------------------------------------
    def _precompute(self) -> None:
        m, tp, d = self.model, self.tp, float(self.dtype_bytes)
        h, q, kv, inter, vocab, L = (m.hidden_size, m.q_size, m.kv_size, m.intermediate_size,
                                     m.vocab_size, m.num_layers)
        linear = h * (q + 2 * kv) + q * h + 3 * h * inter  # per layer, split across ranks
        norms = 2 * h + 2 * m.head_dim  # per layer, replicated
        # Per-rank weight bytes read by every step that computes tokens (layers + final norm)
        # and the lm head, read once when the step samples.
        self.layer_weight_bytes = (L * (linear / tp + norms) + h) * d
        self.lm_head_bytes = vocab * h / tp * d
        # Per-token / per-row coefficients (floats, so scalar and numpy paths round alike).
        self._emb_row_bytes = h * d / tp
        self._act_bytes_tok = L * d * (4 * h + (2 * q + 2 * kv + 3 * inter) / tp)
        self._act_bytes_row = d * (h + vocab / tp)  # lm head input row + logits row
        self._gemm_flops_tok = 2.0 * L * linear / tp
        self._gemm_flops_row = 2.0 * vocab * h / tp
        self.kv_bytes_per_token_per_rank = float(m.kv_bytes_per_token(self.dtype_bytes)) / tp
        self._qo_bytes_tok = 2.0 * L * q / tp * d
        self._attn_flops_pair = 4.0 * L * q / tp
        # Seconds per unit of each resource (u = 1 / achieved rate).
        self._u_flops = 1.0 / (self.gpu.bf16_flops_per_s * self.gemm_efficiency)
        self._u_attn = 1.0 / (self.gpu.bf16_flops_per_s * self.attn_efficiency)
        self._u_bytes = 1.0 / (self.gpu.hbm_bytes_per_s * self.hbm_efficiency)
        self._u_link = 1.0 / (self.gpu.link_bytes_per_s * self.link_efficiency)
        self._u_host = 1.0 / self.host_link_bytes_per_s
        # TP communication per step: (2L + 1) ring all-reduces of T*h*d bytes + logits gather.
        n_ar = 2 * L + 1
        if tp > 1:
            self._comm_bytes_tok = n_ar * 2.0 * (tp - 1) / tp * h * d
            self._comm_bytes_row = (tp - 1) / tp * vocab * d
            self._comm_hops = float(n_ar * 2 * (tp - 1) + 1)
        else:
            self._comm_bytes_tok = self._comm_bytes_row = self._comm_hops = 0.0
        self._swap_bytes_block = self.block_size_tokens * self.kv_bytes_per_token_per_rank

    # ----------------------------------------------------------------------------------
    def resources(self, shape: StepShape) -> dict[str, float]:
        """Per-rank work of one step in physical units (no efficiencies): FLOPs, bytes,
        link bytes, hops, sequences. Used by the fitter and by ``breakdown``."""
        nd, npf = shape.num_decode_seqs, shape.num_prefill_seqs
        T = shape.prefill_tokens + nd
        S = npf + nd
        ran = 1.0 if (T > 0 or shape.swap_blocks > 0) else 0.0
        kvb = self.kv_bytes_per_token_per_rank
        has_tokens = T > 0
        return {
            "steps": ran,
            "eager_steps": 1.0 if shape.prefill_tokens > 0 else 0.0,
            "seqs": float(S) if has_tokens else 0.0,
            "gemm_flops": T * self._gemm_flops_tok + S * self._gemm_flops_row,
            "gemm_bytes": ((self.layer_weight_bytes + (self.lm_head_bytes if S > 0 else 0.0))
                           + T * (self._emb_row_bytes + self._act_bytes_tok)
                           + S * self._act_bytes_row) if has_tokens else 0.0,
            "prefill_attn_flops": shape.prefill_attn_pairs * self._attn_flops_pair,
            "prefill_attn_bytes": (shape.prefill_kv_tokens * kvb
                                   + shape.prefill_tokens * (kvb + self._qo_bytes_tok)),
            "decode_attn_flops": shape.decode_context_tokens * self._attn_flops_pair,
            "decode_attn_bytes": shape.decode_context_tokens * kvb + nd * (kvb + self._qo_bytes_tok),
            "link_bytes": T * self._comm_bytes_tok + S * self._comm_bytes_row if has_tokens else 0.0,
            "link_hops": self._comm_hops if has_tokens else 0.0,
            "swap_bytes": shape.swap_blocks * self._swap_bytes_block,
        }

    def breakdown(self, shape: StepShape) -> dict[str, float]:
        """Seconds per term of one step; ``total`` equals ``step_time_s(shape)``."""
        r = self.resources(shape)
        out = {
            "overhead": r["steps"] * self.step_overhead_s,
            "eager": r["eager_steps"] * self.eager_overhead_s,
            "per_seq": r["seqs"] * self.per_seq_overhead_s,
            "gemm_compute": r["gemm_flops"] * self._u_flops,
            "gemm_memory": r["gemm_bytes"] * self._u_bytes,
            "prefill_attn_compute": r["prefill_attn_flops"] * self._u_attn,
            "prefill_attn_memory": r["prefill_attn_bytes"] * self._u_bytes,
            "decode_attn_compute": r["decode_attn_flops"] * self._u_attn,
            "decode_attn_memory": r["decode_attn_bytes"] * self._u_bytes,
            "comm": r["link_bytes"] * self._u_link + r["link_hops"] * self.link_latency_s,
            "swap": r["swap_bytes"] * self._u_host,
        }
        phase = max if self.overlap else (lambda a, b: a + b)
        out["gemm"] = phase(out["gemm_compute"], out["gemm_memory"])
        out["prefill_attn"] = phase(out["prefill_attn_compute"], out["prefill_attn_memory"])
        out["decode_attn"] = phase(out["decode_attn_compute"], out["decode_attn_memory"])
        out["total"] = self.step_time_s(shape)
        return out

    # ----------------------------------------------------------------------------------
    def _fixed_s(self, npf: int, prefill_tokens: int, pairs: float, pkv: int, nd: int,
                 swap_blocks: int) -> float:
        """Everything except the decode-attention term (which depends on decode context).
        Hot path: plain float arithmetic, ~1-2 us."""
        T = prefill_tokens + nd
        if T == 0:
            if swap_blocks == 0:
                return 0.0
            return self.step_overhead_s + swap_blocks * self._swap_bytes_block * self._u_host
        S = npf + nd
        ub = self._u_bytes
        g_c = (T * self._gemm_flops_tok + S * self._gemm_flops_row) * self._u_flops
        g_m = ((self.layer_weight_bytes + self.lm_head_bytes)
               + T * (self._emb_row_bytes + self._act_bytes_tok) + S * self._act_bytes_row) * ub
        g = (g_c if g_c > g_m else g_m) if self.overlap else g_c + g_m
        t = self.step_overhead_s + S * self.per_seq_overhead_s + g
        if prefill_tokens:
            t += self.eager_overhead_s
            kvb = self.kv_bytes_per_token_per_rank
            p_c = pairs * self._attn_flops_pair * self._u_attn
            p_m = (pkv * kvb + prefill_tokens * (kvb + self._qo_bytes_tok)) * ub
            t += (p_c if p_c > p_m else p_m) if self.overlap else p_c + p_m
        if self.tp > 1:
            t += ((T * self._comm_bytes_tok + S * self._comm_bytes_row) * self._u_link
                  + self._comm_hops * self.link_latency_s)
        if swap_blocks:
            t += swap_blocks * self._swap_bytes_block * self._u_host
        return t

    def _decode_attn_s(self, nd: int, ctx):
        """Decode attention time for summed context ``ctx`` (int or int ndarray)."""
        kvb = self.kv_bytes_per_token_per_rank
        per_seq_bytes = nd * (kvb + self._qo_bytes_tok)
        c = ctx * self._attn_flops_pair * self._u_attn
        m = (ctx * kvb + per_seq_bytes) * self._u_bytes
        if not self.overlap:
            return c + m
        if isinstance(c, np.ndarray):
            return np.maximum(c, m)
        return c if c > m else m

    def step_time_s(self, shape: StepShape) -> float:
        nd = shape.num_decode_seqs
        t = self._fixed_s(shape.num_prefill_seqs, shape.prefill_tokens, shape.prefill_attn_pairs,
                          shape.prefill_kv_tokens, nd, shape.swap_blocks)
        if nd:
            t = t + self._decode_attn_s(nd, shape.decode_context_tokens)
        return t

    def decode_run_s(self, num_seqs: int, context_tokens: int, num_steps: int,
                     max_context_tokens: int = 0, first_path: str = PACKED) -> np.ndarray:
        """``num_steps`` decode-only steps; step i attends ``context_tokens + i*num_seqs``
        tokens in total (the longest sequence and the decode path: unused, bytes and FLOPs
        are what this model prices). Equal, bit for bit, to calling step_time_s per step."""
        if num_steps < 0:
            raise ValueError(f"num_steps must be >= 0, got {num_steps}")
        if num_seqs <= 0 or num_steps == 0:
            return np.zeros(num_steps, dtype=np.float64)
        ctx = context_tokens + np.arange(num_steps, dtype=np.int64) * num_seqs
        fixed = self._fixed_s(0, 0, 0.0, 0, num_seqs, 0)
        return fixed + self._decode_attn_s(num_seqs, ctx)

    def __repr__(self) -> str:
        return f"RooflineCostModel<{self.description}>"
