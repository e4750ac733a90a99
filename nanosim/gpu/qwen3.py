"""Qwen3 dense decoder on flat, packed (varlen) tokens.

    input_ids (T,) ─► embed ─► L × [RMSNorm ─► attention ─► +res ─► RMSNorm ─► SwiGLU MLP ─► +res]
                  ─► final RMSNorm ─► hidden (T, H);   compute_logits(hidden[rows]) ─► (S, V)

Attention: qkv projection, per-head RMSNorm of q and k, neox RoPE at the given positions,
GQA paged attention through the chosen backend. Module names mirror Hugging Face's
(``model.layers.0.self_attn.qkv_proj``) so the loader only has to pack q/k/v and gate/up.
"""
from __future__ import annotations

import torch
from torch import nn

from nanosim.config import ModelSpec
from nanosim.gpu.attention.metadata import AttentionMetadata
from nanosim.gpu.embedding import ParallelLMHead, VocabParallelEmbedding
from nanosim.gpu.layers import RMSNorm, SiluAndMul
from nanosim.gpu.linear import MergedColumnParallelLinear, QKVParallelLinear, RowParallelLinear
from nanosim.gpu.options import KernelOptions
from nanosim.gpu.rotary import RotaryEmbedding

KVCache = tuple[torch.Tensor, torch.Tensor]  # K, V of one layer: (num_blocks, block_size, Hkv, D)


class Qwen3Attention(nn.Module):
    def __init__(self, spec: ModelSpec, backend, rotary: RotaryEmbedding, tp_rank: int,
                 tp_size: int, fused: KernelOptions | None) -> None:
        super().__init__()
        d = spec.head_dim
        self.qkv_proj = QKVParallelLinear(spec.hidden_size, d, spec.num_q_heads, spec.num_kv_heads,
                                          tp_rank, tp_size)
        self.num_heads, self.num_kv_heads = self.qkv_proj.num_q_heads, self.qkv_proj.num_kv_heads
        self.head_dim, self.scale, self.eps = d, d ** -0.5, spec.rms_norm_eps
        self.o_proj = RowParallelLinear(spec.q_size, spec.hidden_size, tp_rank, tp_size)
        self.q_norm = RMSNorm(d, spec.rms_norm_eps)
        self.k_norm = RMSNorm(d, spec.rms_norm_eps)
        self.rotary = rotary  # shared by all layers (one cos/sin cache)
        self.backend, self.fused = backend, fused
        self.qkv_proj.kernels = self.o_proj.kernels = fused
        self.o_proj.partial_sums = fused is not None

    def forward(self, positions: torch.Tensor, h: torch.Tensor, kv: KVCache,
                meta: AttentionMetadata) -> torch.Tensor:
        T, d = h.shape[0], self.head_dim
        q_end, k_end = self.num_heads * d, (self.num_heads + self.num_kv_heads) * d
        qkv = self.qkv_proj(h)  # (T, (Hq + 2 Hkv) * D)
        v = qkv[:, k_end:].view(T, self.num_kv_heads, d)
        if self.fused is not None and getattr(self.backend, "takes_qkv", None) and self.backend.takes_qkv(meta):
            from nanosim.gpu.kernels.qkv_prologue import QKVPrologue

            # decode rows: norms, RoPE and the K/V store run in the attention kernel's prologue
            pro = QKVPrologue(self.num_heads, self.q_norm.weight, self.k_norm.weight,
                              self.rotary.cos_sin_cache, positions, meta.slot_mapping, self.eps)
            o = self.backend.forward_qkv(qkv, pro, kv[0], kv[1], meta, self.scale)
            return self.o_proj(o.view(T, self.num_heads * d))
        if self.fused is not None:
            from nanosim.gpu.kernels.fused_ops import qk_norm_rope

            q = qk_norm_rope(qkv, self.q_norm.weight, self.k_norm.weight,
                             self.rotary.cos_sin_cache, positions, self.num_heads,
                             self.num_kv_heads, d, self.eps, kv, meta.slot_mapping, self.fused)
            k = v = None  # already in the cache: the backend skips its store
        else:
            q = self.q_norm(qkv[:, :q_end].view(T, self.num_heads, d))
            k = self.k_norm(qkv[:, q_end:k_end].view(T, self.num_kv_heads, d))
            q, k = self.rotary(positions, q, k)
        o = self.backend.forward(q, k, v, kv[0], kv[1], meta, self.scale)  # (T, Hq, D)
        return self.o_proj(o.reshape(T, self.num_heads * d))  # (T, H) or split-K partials


class Qwen3MLP(nn.Module):
    def __init__(self, spec: ModelSpec, tp_rank: int, tp_size: int, fused: KernelOptions | None) -> None:
        super().__init__()
        i = spec.intermediate_size
        self.gate_up_proj = MergedColumnParallelLinear(spec.hidden_size, [i, i], tp_rank, tp_size)
        self.down_proj = RowParallelLinear(i, spec.hidden_size, tp_rank, tp_size)
        self.act = SiluAndMul(fused)
        self.fused = fused
        self.gate_up_proj.kernels = self.down_proj.kernels = fused
        self.down_proj.partial_sums = fused is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (T, H) -> (T, H), or split-K partials (S, T, H) fp32 for the next fused norm."""
        if self.fused is not None:
            from nanosim.gpu.kernels.skinny_gemm import SKINNY_MAX_M, skinny_gate_up_silu

            if 0 < x.shape[0] <= SKINNY_MAX_M:  # SwiGLU in the GEMM's epilogue
                return self.down_proj(skinny_gate_up_silu(x, self.gate_up_proj.weight,
                                                          opts=self.fused))
        return self.down_proj(self.act(self.gate_up_proj(x)))


class Qwen3DecoderLayer(nn.Module):
    def __init__(self, spec: ModelSpec, backend, rotary: RotaryEmbedding, tp_rank: int,
                 tp_size: int, fused: KernelOptions | None) -> None:
        super().__init__()
        self.self_attn = Qwen3Attention(spec, backend, rotary, tp_rank, tp_size, fused)
        self.mlp = Qwen3MLP(spec, tp_rank, tp_size, fused)
        self.input_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps, fused)
        self.post_attention_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps, fused)

    def forward(self, positions, h, residual, kv: KVCache, meta: AttentionMetadata):
        """h (T, H) -> (h, residual); the residual add is folded into the next norm."""
        if residual is None:
            residual, h = h, self.input_layernorm(h)
        else:
            h, residual = self.input_layernorm(h, residual)
        h = self.self_attn(positions, h, kv, meta)
        h, residual = self.post_attention_layernorm(h, residual)
        return self.mlp(h), residual


class Qwen3Model(nn.Module):
    def __init__(self, spec: ModelSpec, backend, tp_rank: int, tp_size: int, fused: KernelOptions | None) -> None:
        super().__init__()
        self.embed_tokens = VocabParallelEmbedding(spec.vocab_size, spec.hidden_size, tp_rank, tp_size)
        rotary = RotaryEmbedding(spec.head_dim, spec.max_position_embeddings, spec.rope_theta)
        self.layers = nn.ModuleList(Qwen3DecoderLayer(spec, backend, rotary, tp_rank, tp_size, fused)
                                    for _ in range(spec.num_layers))
        self.norm = RMSNorm(spec.hidden_size, spec.rms_norm_eps, fused)

    def forward(self, input_ids, positions, meta: AttentionMetadata, kv_caches: list[KVCache]):
        h, residual = self.embed_tokens(input_ids), None
        for layer, kv in zip(self.layers, kv_caches, strict=True):
            h, residual = layer(positions, h, residual, kv, meta)
        h, _ = self.norm(h, residual)
        return h


class Qwen3ForCausalLM(nn.Module):
    """forward(input_ids (T,), positions (T,), meta, kv_caches) -> hidden (T, H);
    compute_logits(hidden (S, H)) -> (S, vocab). Call the latter only on rows that sample."""

    def __init__(self, spec: ModelSpec, backend, tp_rank: int = 0, tp_size: int = 1,
                 fused: KernelOptions | None = None) -> None:
        """fused: the fused Triton kernels' options (None: the torch paths and cuBLAS)."""
        super().__init__()
        self.spec = spec
        self.model = Qwen3Model(spec, backend, tp_rank, tp_size, fused)
        tied = self.model.embed_tokens if spec.tie_word_embeddings else None
        self.lm_head = ParallelLMHead(spec.vocab_size, spec.hidden_size, tp_rank, tp_size, tied=tied)
        self.lm_head.kernels = fused

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata,
                kv_caches: list[KVCache]) -> torch.Tensor:
        return self.model(input_ids, positions, meta, kv_caches)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)
