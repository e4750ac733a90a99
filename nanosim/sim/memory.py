"""KV-cache capacity: how many paged-KV blocks fit on each GPU, by the real runner's rule.

nano-vLLM (ModelRunner.allocate_kv_cache) sizes the cache after loading the weights and
running one warm-up forward of the largest batch:

    num_blocks = (total * gpu_memory_utilization - used - (peak - current)) // block_bytes

where ``used`` is the device memory in use after the warm-up (CUDA context + weights; the
warm-up's activations were freed by empty_cache) and ``peak - current`` the warm-up's
activation peak. Per TP rank, here:

    usable      = memory_bytes * gpu_memory_utilization - context_bytes
                  - weight_bytes / tp - activation_bytes
    block_bytes = block_size_tokens * kv_bytes_per_token / tp
    num_blocks  = usable // block_bytes                       (cfg.num_kv_blocks overrides)

``context_bytes`` defaults to the CUDA context measured on our H100 (torch 2.11 + CUDA 13,
driver 580): 552,402,944 bytes in use right after the first CUDA call. Not modelled: NCCL
buffers at tp > 1, the cuBLAS workspace, allocator fragmentation. Note that the device
reports more memory than the marketing figure (our "80 GB" H100: 85,017,493,504 bytes =
79.18 GiB), and ``memory_bytes`` of the GpuSpec is what this module uses.

Activation peak of a warm-up forward of T = max_num_batched_tokens tokens (vLLM v1's
profile run; nano-vLLM runs max_num_batched_tokens // max_model_len full-length sequences),
per rank, elements per token x dtype bytes (h hidden, q = q_heads*head_dim,
kv = kv_heads*head_dim, I intermediate, V vocab). From the tensor lifetimes in nano-vLLM's
Qwen3 forward (RMSNorm, SiluAndMul and RoPE fused by torch.compile, FlashAttention varlen,
so no T x T scores); the model loop keeps the previous layer's output and residual alive
while a layer runs (2h). The largest of:

* MLP, at down_proj:     5h + 3I/tp   previous output + residual, new residual, normed
                                      input, down_proj output (h each); gate_up (2I/tp) and
                                      its activation (I/tp), alive until down_proj returns
* attention, at RoPE:    4h + (3q + 4kv)/tp   qkv, q/k after the per-head norm and after RoPE
* attention, at o_proj:  5h + (3q + 3kv)/tp   qkv, roped q/k, attention output, o_proj output
* sampler:  2h*T*dtype + S*V*(dtype + 12) bytes, S = min(max_num_seqs, T) rows (vLLM v1's
            dummy sampler run): final hidden + residual, logits in the model dtype, as
            float32, float32 probabilities and float32 exponential noise.

This estimate is read off the code, not measured; it is ~1 GB for Qwen3-8B at T = 8192
(~1.5% of the KV budget), so a 30% error in it moves the block count by < 0.5%.
"""
from __future__ import annotations

from dataclasses import dataclass

from nanosim.config import ConfigError, EngineConfig, GpuSpec, ModelSpec, check_tp

GB = 10**9
GiB = 1024**3
# Device memory in use after the first CUDA call on our H100 (torch 2.11 + CUDA 13).
CUDA_CONTEXT_BYTES = 552_402_944


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class KvCapacity:
    """KV-cache capacity per TP rank (every rank holds the same blocks for its heads)."""

    num_blocks: int
    block_size_tokens: int
    block_bytes: int  # per rank
    tokens: int  # num_blocks * block_size_tokens
    kv_bytes_per_token_per_rank: int
    weight_bytes_per_rank: int
    activation_bytes: int  # warm-up activation peak per rank
    usable_bytes: int  # memory_bytes * utilization - context - weights - activations (per rank)
    context_bytes: int = CUDA_CONTEXT_BYTES  # CUDA context per GPU
    overridden: bool = False  # num_blocks came from cfg.num_kv_blocks

    def __post_init__(self) -> None:
        if self.tokens != self.num_blocks * self.block_size_tokens:
            raise ValueError("KvCapacity: tokens must equal num_blocks * block_size_tokens")

    @property
    def kv_bytes(self) -> int:
        """Bytes of the KV cache tensor per rank."""
        return self.num_blocks * self.block_bytes

    def max_concurrent_seqs(self, seq_len_tokens: int) -> int:
        """How many sequences of ``seq_len_tokens`` tokens fit at once (no prefix sharing)."""
        if seq_len_tokens < 1:
            raise ValueError(f"seq_len_tokens must be >= 1, got {seq_len_tokens}")
        return self.num_blocks // _ceil_div(seq_len_tokens, self.block_size_tokens)


def activation_bytes(model: ModelSpec, cfg: EngineConfig, dtype_bytes: int = 2) -> int:
    """Estimated activation peak per rank of a warm-up forward (formula in the module doc)."""
    tp, T = cfg.tp, cfg.max_num_batched_tokens
    h, q, kv, inter, vocab = (model.hidden_size, model.q_size, model.kv_size,
                              model.intermediate_size, model.vocab_size)
    mlp = 5 * h + 3 * inter / tp
    attn_rope = 4 * h + (3 * q + 4 * kv) / tp
    attn_out = 5 * h + (3 * q + 3 * kv) / tp
    layer_peak = T * dtype_bytes * max(mlp, attn_rope, attn_out)
    rows = min(cfg.max_num_seqs, T)
    sampler_peak = 2 * h * T * dtype_bytes + rows * vocab * (dtype_bytes + 12)
    return int(max(layer_peak, sampler_peak))


def kv_capacity(model: ModelSpec, gpu: GpuSpec, cfg: EngineConfig, dtype_bytes: int = 2,
                context_bytes: int = CUDA_CONTEXT_BYTES) -> KvCapacity:
    """Blocks of ``cfg.block_size_tokens`` tokens that fit per rank (rule in the module doc).

    Raises ConfigError when tp does not divide the heads, when the weights alone do not
    fit in ``memory_bytes * gpu_memory_utilization``, or when not one ``max_model_len``
    sequence fits in the resulting (or overridden) cache.
    """
    tp, bs = cfg.tp, cfg.block_size_tokens
    check_tp(model, tp)
    budget = int(gpu.memory_bytes * cfg.gpu_memory_utilization)
    weights = _ceil_div(model.weight_bytes(dtype_bytes), tp)
    if weights + context_bytes >= budget:
        raise ConfigError(
            f"{model.name} weights need {weights / GB:.1f} GB per GPU at tp={tp}, but {gpu.name} "
            f"offers {budget / GB:.1f} GB ({gpu.memory_bytes / GB:.0f} GB x "
            f"gpu_memory_utilization {cfg.gpu_memory_utilization}, of which "
            f"{context_bytes / GB:.2f} GB CUDA context); raise tp or use a larger GPU")
    kv_tok = model.kv_bytes_per_token(dtype_bytes) // tp  # exact: check_tp divides kv heads
    block_bytes = bs * kv_tok
    act = activation_bytes(model, cfg, dtype_bytes)
    usable = budget - context_bytes - weights - act
    if cfg.num_kv_blocks is not None:
        num_blocks, overridden = cfg.num_kv_blocks, True
    else:
        num_blocks, overridden = max(usable, 0) // block_bytes, False
    need = _ceil_div(cfg.max_model_len, bs)
    if num_blocks < need:
        src = ("num_kv_blocks override" if overridden else
               f"{usable / GB:.2f} GB left of {budget / GB:.1f} GB after weights "
               f"{weights / GB:.2f} GB, activations {act / GB:.2f} GB and CUDA context "
               f"{context_bytes / GB:.2f} GB")
        raise ConfigError(
            f"KV cache too small for one max_model_len={cfg.max_model_len} sequence of "
            f"{model.name} on {gpu.name} (tp={tp}): it needs {need} blocks of {bs} tokens "
            f"({need * block_bytes / GB:.2f} GB per rank) but only {num_blocks} fit ({src}); "
            f"lower max_model_len or max_num_batched_tokens, raise gpu_memory_utilization or tp")
    return KvCapacity(num_blocks=num_blocks, block_size_tokens=bs, block_bytes=block_bytes,
                      tokens=num_blocks * bs,
                      kv_bytes_per_token_per_rank=kv_tok, weight_bytes_per_rank=weights,
                      activation_bytes=act, usable_bytes=usable, context_bytes=context_bytes,
                      overridden=overridden)


def format_capacity(cap: KvCapacity, model: ModelSpec, gpu: GpuSpec, cfg: EngineConfig,
                    seq_lens: tuple[int, ...] = (1024, 4096, 16384, 32768)) -> str:
    """Human-readable capacity report for ``nanosim memory``."""
    def gb(b: float) -> str:
        return f"{b / GB:8.2f} GB ({b / GiB:7.2f} GiB)"

    budget = gpu.memory_bytes * cfg.gpu_memory_utilization
    lines = [
        f"{model.name} on {gpu.name}, tp={cfg.tp}, block {cap.block_size_tokens} tokens, "
        f"gpu_memory_utilization {cfg.gpu_memory_utilization:g}  (per GPU)",
        f"  GPU memory        {gb(gpu.memory_bytes)}",
        f"  budget            {gb(budget)}",
        f"  CUDA context      {gb(cap.context_bytes)}",
        f"  weights           {gb(cap.weight_bytes_per_rank)}",
        f"  activation peak   {gb(cap.activation_bytes)}  "
        f"(warm-up forward of {cfg.max_num_batched_tokens} tokens)",
        f"  KV cache          {gb(cap.kv_bytes)}"
        + ("  (num_kv_blocks override)" if cap.overridden else ""),
        f"  blocks            {cap.num_blocks:,} x {cap.block_bytes / 2**20:.2f} MiB",
        f"  tokens            {cap.tokens:,}  ({cap.kv_bytes_per_token_per_rank / 1024:g} KiB "
        f"per token per GPU)",
        "  max concurrent sequences of length:",
    ]
    for n in seq_lens:
        flag = "" if n <= cfg.max_model_len else "  (> max_model_len)"
        lines.append(f"    {n:>8,} tokens  {cap.max_concurrent_seqs(n):>8,}{flag}")
    return "\n".join(lines)
