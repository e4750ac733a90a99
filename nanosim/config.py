"""Frozen, validated configuration: model shapes, GPU specs, engine limits.

Units are in field names. Nothing here imports torch or simpy. Presets are plain dicts
of frozen dataclasses keyed by a lower-case name (``MODELS["qwen3-8b"]``, ``GPUS["h100"]``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

GiB = 1024**3


class ConfigError(ValueError):
    """An impossible or inconsistent configuration; the message names the field."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass(frozen=True)
class ModelSpec:
    """Shapes of a dense Qwen3-style decoder (from its Hugging Face config.json)."""

    name: str
    hidden_size: int
    num_layers: int
    num_q_heads: int
    num_kv_heads: int
    head_dim: int  # explicit: q_heads * head_dim != hidden for several Qwen3 sizes
    intermediate_size: int
    vocab_size: int = 151936
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 40960
    rope_theta: float = 1e6
    rms_norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        for f in ("hidden_size", "num_layers", "num_q_heads", "num_kv_heads", "head_dim",
                  "intermediate_size", "vocab_size", "max_position_embeddings"):
            _check(getattr(self, f) >= 1, f"ModelSpec {self.name}: {f} must be >= 1")
        _check(self.num_q_heads % self.num_kv_heads == 0,
               f"ModelSpec {self.name}: num_q_heads {self.num_q_heads} is not a multiple of "
               f"num_kv_heads {self.num_kv_heads}")

    # --- parameter counts (elements) -------------------------------------------------
    @property
    def q_size(self) -> int:
        return self.num_q_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def layer_params(self) -> int:
        """Weights of one decoder layer: qkv + o projections, gated MLP, 2 RMSNorms + q/k norms."""
        h = self.hidden_size
        attn = h * (self.q_size + 2 * self.kv_size) + self.q_size * h
        mlp = 3 * h * self.intermediate_size
        norms = 2 * h + 2 * self.head_dim
        return attn + mlp + norms

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def num_params(self) -> int:
        lm_head = 0 if self.tie_word_embeddings else self.embedding_params
        return self.num_layers * self.layer_params + self.embedding_params + lm_head + self.hidden_size

    def weight_bytes(self, dtype_bytes: int = 2) -> int:
        return self.num_params * dtype_bytes

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """K and V for every layer: 2 * layers * kv_heads * head_dim * dtype bytes."""
        return 2 * self.num_layers * self.kv_size * dtype_bytes


# Shapes from each model's config.json on Hugging Face (Qwen/Qwen3-*; Qwen3 tech report,
# arXiv 2505.09388). All: vocab 151936, head_dim 128, rope_theta 1e6, max_pos 40960.
MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("qwen3-0.6b", 1024, 28, 16, 8, 128, 3072, tie_word_embeddings=True),
        ModelSpec("qwen3-1.7b", 2048, 28, 16, 8, 128, 6144, tie_word_embeddings=True),
        ModelSpec("qwen3-4b", 2560, 36, 32, 8, 128, 9728, tie_word_embeddings=True),
        ModelSpec("qwen3-8b", 4096, 36, 32, 8, 128, 12288),
        ModelSpec("qwen3-14b", 5120, 40, 40, 8, 128, 17408),
        ModelSpec("qwen3-32b", 5120, 64, 64, 8, 128, 25600),
    )
}


@dataclass(frozen=True)
class GpuSpec:
    """Vendor peak figures of one GPU. Cited per preset below."""

    name: str
    memory_bytes: int
    hbm_bytes_per_s: float
    bf16_flops_per_s: float  # dense (no sparsity)
    link_bytes_per_s: float  # GPU-GPU, one direction, per GPU (what a ring all-reduce sees)
    link_latency_s: float = 5e-6  # per all-reduce hop (NCCL small-message latency order)

    def __post_init__(self) -> None:
        for f in ("memory_bytes", "hbm_bytes_per_s", "bf16_flops_per_s", "link_bytes_per_s"):
            _check(getattr(self, f) > 0, f"GpuSpec {self.name}: {f} must be > 0")


GPUS: dict[str, GpuSpec] = {
    g.name: g
    for g in (
        # NVIDIA H100 SXM5 datasheet: 80 GB HBM3, 3.35 TB/s, 989 TFLOP/s dense bf16,
        # NVLink 4 900 GB/s total (450 GB/s each way). Memory: the 85,017,493,504 bytes that
        # torch reports as total_memory on our H100 80GB HBM3 (the "80 GB" is ~80 GiB).
        GpuSpec("h100", 85_017_493_504, 3.35e12, 989e12, 450e9),
        # NVIDIA H200 SXM datasheet: 141 GB HBM3e, 4.8 TB/s, 989 TFLOP/s, NVLink 900 GB/s.
        # Memory: 143,771 MiB as nvidia-smi shows on our H200 machine.
        GpuSpec("h200", 143_771 * 2**20, 4.8e12, 989e12, 450e9),
        # NVIDIA A100 SXM 80GB datasheet: HBM2e 2,039 GB/s, 312 TFLOP/s bf16, NVLink 3 600 GB/s.
        GpuSpec("a100-80gb", 80 * 10**9, 2.039e12, 312e12, 300e9),
        # NVIDIA L40S datasheet: 48 GB GDDR6, 864 GB/s, 362 TFLOP/s bf16 dense; PCIe 4.0 x16
        # (32 GB/s each way).
        GpuSpec("l40s", 48 * 10**9, 864e9, 362e12, 32e9, link_latency_s=10e-6),
        # GeForce RTX 4070 Laptop: 8 GB GDDR6 on a 128-bit bus at 16 Gbps = 256 GB/s;
        # 36 SMs x 512 bf16 FLOP/clk/SM (Ada, fp32 accumulate) x 2.175 GHz boost ~ 40 TFLOP/s.
        # PCIe 4.0 x8 (16 GB/s each way).
        GpuSpec("rtx-4070-laptop", 8 * GiB, 256e9, 40e12, 16e9, link_latency_s=10e-6),
    )
}

# torch.cuda.get_device_name() -> preset: (words that must all appear, words that must not).
# Variants with other memory or bandwidth (H100 PCIe/NVL, H200 NVL, A100 40GB) get none.
DEVICE_PRESETS = ((("H100",), ("PCIe", "NVL"), "h100"), (("H200",), ("NVL",), "h200"),
                  (("A100",), ("40GB", "PCIE-40"), "a100-80gb"), (("L40S",), (), "l40s"),
                  (("4070", "Laptop"), (), "rtx-4070-laptop"))


def gpu_for_device(device_name: str) -> GpuSpec:
    """Our preset for a CUDA device name (e.g. "NVIDIA H200" -> h200); ConfigError if none."""
    for need, avoid, preset in DEVICE_PRESETS:
        if all(w in device_name for w in need) and not any(w in device_name for w in avoid):
            return GPUS[preset]
    raise ConfigError(f"no GPU preset for device {device_name!r}; pass --gpu with one of "
                      f"{', '.join(GPUS)}")


POLICIES = ("fcfs", "priority", "sjf")
# More KV blocks than any preset holds (Qwen3-0.6B on an H200 at 1-token blocks: ~1.1M);
# the block manager keeps per-block lists, so 2^31 of them would exhaust host memory.
MAX_KV_BLOCKS = 2**22
PREEMPTION_MODES = ("recompute", "swap")


def _flag(flag: str, help: str | None = None, *, kind: str = "count",
          choices: tuple[str, ...] | None = None) -> dict:
    """A config field's CLI metadata: its flag, help and kind (count: an integer >= 1;
    count0: >= 0; fraction: in (0, 1]; switch: --x / --no-x; choice: one of ``choices``)."""
    return {"flag": flag, "help": help, "kind": kind, "choices": choices}


@dataclass(frozen=True)
class EngineConfig:
    """Scheduler and KV-cache limits shared by the simulator and the GPU runner.

    Defaults follow vLLM v1 where vLLM and nano-vLLM differ (chunked prefill on), except
    block_size_tokens=256 (nano-vLLM's) as agreed in DESIGN.md. chunked_prefill=False is
    nano-vLLM's prefill-first scheduling (see core/scheduler.py).
    """

    # Each field's metadata names its `nanosim` flag, help and kind (cli_args.add_config_args
    # makes the flags from it; a field without a flag is API-only): adding a field is one edit.
    block_size_tokens: int = field(default=256, metadata=_flag("--block-size", "KV block size in tokens"))
    max_num_seqs: int = field(default=256, metadata=_flag("--max-num-seqs"))
    max_num_batched_tokens: int = field(default=8192, metadata=_flag("--max-num-batched-tokens"))
    max_model_len: int = field(default=32768, metadata=_flag("--max-model-len"))
    chunked_prefill: bool = field(default=True, metadata=_flag(
        "--chunked-prefill", "vLLM v1 mixed steps (default); --no-chunked-prefill = nano-vLLM "
        "prefill-first", kind="switch"))
    policy: str = field(default="fcfs", metadata=_flag("--policy", kind="choice", choices=POLICIES))
    preemption_mode: str = field(default="recompute", metadata=_flag(
        "--preemption", kind="choice", choices=PREEMPTION_MODES))
    enable_prefix_caching: bool = field(default=True, metadata=_flag("--prefix-caching", kind="switch"))
    # > 0: cap each prompt chunk per step (vLLM v1; 0 = off)
    long_prefill_token_threshold: int = field(default=0, metadata=_flag(
        "--long-prefill-token-threshold", "cap each prompt chunk per step at N tokens (vLLM v1; 0 = off)",
        kind="count0"))
    gpu_memory_utilization: float = field(default=0.9, metadata=_flag("--gpu-memory-utilization",
                                                                      kind="fraction"))
    swap_space_bytes: int = 4 * GiB  # host-memory pool for preemption by swap (vLLM default)
    # override: skip the memory-derived capacity
    num_kv_blocks: int | None = field(default=None, metadata=_flag(
        "--num-kv-blocks", "override the derived KV capacity"))
    tp: int = field(default=1, metadata=_flag("--tp", "tensor-parallel ranks"))
    seed: int = field(default=0, metadata=_flag(
        "--seed", "seeds everything random: synthetic arrivals, step jitter, sampling", kind="count0"))

    def __post_init__(self) -> None:
        _check(self.block_size_tokens >= 1, "block_size_tokens must be >= 1")
        _check(self.max_num_seqs >= 1, "max_num_seqs must be >= 1")
        _check(self.max_model_len >= 1, "max_model_len must be >= 1")
        _check(self.max_num_batched_tokens >= self.max_num_seqs,
               f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= max_num_seqs "
               f"({self.max_num_seqs}) so every running decode fits one step")
        _check(self.policy in POLICIES, f"policy {self.policy!r} is not one of {POLICIES}")
        _check(self.preemption_mode in PREEMPTION_MODES,
               f"preemption_mode {self.preemption_mode!r} is not one of {PREEMPTION_MODES}")
        _check(self.long_prefill_token_threshold >= 0,
               f"long_prefill_token_threshold must be >= 0 (0 = off), got {self.long_prefill_token_threshold}")
        _check(0.0 < self.gpu_memory_utilization <= 1.0, "gpu_memory_utilization must be in (0, 1]")
        _check(self.swap_space_bytes >= 0, "swap_space_bytes must be >= 0")
        _check(self.num_kv_blocks is None or 1 <= self.num_kv_blocks <= MAX_KV_BLOCKS,
               f"num_kv_blocks must be in [1, {MAX_KV_BLOCKS:,}] (got {self.num_kv_blocks})")
        _check(self.tp >= 1, "tp must be >= 1")

    def with_(self, **changes) -> "EngineConfig":
        """A validated copy with some fields changed (configs are never mutated)."""
        return replace(self, **changes)


def get_model(name: str) -> ModelSpec:
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


def get_gpu(name: str) -> GpuSpec:
    aliases = {"h100-sxm": "h100", "a100": "a100-80gb", "rtx4070-laptop": "rtx-4070-laptop"}
    key = aliases.get(name.lower(), name.lower())
    try:
        return GPUS[key]
    except KeyError:
        raise ConfigError(f"unknown gpu {name!r}; known: {', '.join(GPUS)}") from None


def check_tp(model: ModelSpec, tp: int) -> None:
    """Tensor parallelism splits q and kv heads evenly across ranks."""
    _check(tp >= 1, "tp must be >= 1")
    _check(model.num_q_heads % tp == 0 and model.num_kv_heads % tp == 0,
           f"tp={tp} does not divide {model.name}'s heads (q {model.num_q_heads}, "
           f"kv {model.num_kv_heads})")

