"""A runner's options (RunnerOptions) and its kernel switches (KernelOptions): frozen objects
with their defaults and why.

A ``KernelOptions`` is built once (ModelRunner's ``kernels=``, an A/B arm of a benchmark) and
handed down explicitly: the runner gives it to the attention backend, the model's layers and
the input packer, which pass it to each kernel launch. Nothing reads a module global, so two
runners in one process may differ and no switch changes while a runner runs. CUDA graphs
capture what the options said at capture. Imports nothing heavy (no torch).

Defaults are the H100 measurements of docs/performance.md (benchmarks named per field).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True, slots=True)
class KernelOptions:
    # Programmatic dependent launch of the decode chain's kernels (Hopper+; off on CPU and
    # before sm90 anyway): each launch's ramp-up overlaps the kernel before (decode_ab.py)
    pdl: bool = True
    # decode attention: programs take rows in the given order (longest first balances the
    # waves; False: row order); mixed graphs always follow it (gpu_throughput.py --no-order)
    decode_order: bool = True
    # decode-only batches hand the raw qkv projection to the decode kernel, whose prologue
    # does q/k RMSNorm, RoPE and the K/V store (one launch less per layer); False: the
    # separate fused_ops.qk_norm_rope launch
    qkv_prologue: bool = True
    # with the qkv prologue, batches of at most this many rows read their first K/V tile
    # before the PDL wait (0: never): 1-2 rows 5-7% faster at contexts 512-4000; 4 and 8
    # rows slower where each split walks 7+ tiles (decode_ab.py, graph replay)
    prewait_max_rows: int = 2
    # longest share of one sequence's context a decode program walks (tokens), via the split
    # count; 0 = split by batch shape only: 512 made batch 256 / 1024 context slower (14.7
    # vs 12.8 ms) and did not speed up mixed lengths (gpu_throughput.py)
    split_tokens: int = 0
    # programs per SM the decode split count aims for (read at capture)
    split_waves: int = 2
    # most splits of one row's context (the kernel's partial buffers are sized by it)
    max_splits: int = 16
    # skinny GEMM: K is split while the grid stays within this many programs per SM (the
    # H100 sweep's best o_proj/down configs at M = 1 used 2, i.e. split 8, standalone: 3.0
    # against 3.2 us; an A/B in decode_ab.py)
    skinny_programs_per_sm: int = 1
    # rows up to this take the split-K GEMM where the consumer adds partials (o_proj,
    # down_proj); 0: cuBLAS (gpu_throughput.py --no-splitk)
    splitk_max_m: int = 512
    # mixed CUDA graphs give one-token rows to the decode kernel (split-KV over their
    # context) instead of the varlen kernel's tiles (mixed_step.py --tile-decodes)
    mixed_decode_kernel: bool = True
    # decode splits of a mixed graph's one-token rows (fixed per graph)
    mixed_decode_splits: int = 4
    # flash backend: decode-only batches of at most this many rows run our split-KV decode
    # kernel (FA4 has no split-KV on Hopper: batch-1 step 1.09 ms against 0.94); 0: never
    flash_small_decode_rows: int = 16
    # torch.compile backend of compile_ops (tests use aot_eager: no C++ build)
    compile_backend: str = "inductor"

    def with_(self, **changes) -> "KernelOptions":
        return replace(self, **changes)

    @classmethod
    def parse(cls, assignments: str) -> "KernelOptions":
        """'field=value,field=value' (values as the field's type; bools 0/1/true/false) ->
        options; an unknown field or a bad value raises ValueError naming it."""
        types = {f.name: type(f.default) for f in fields(cls)}
        changes = {}
        for item in filter(None, (s.strip() for s in assignments.split(","))):
            name, sep, raw = item.partition("=")
            if not sep or name not in types:
                raise ValueError(f"{item!r}: expected FIELD=VALUE with FIELD one of {', '.join(types)}")
            t = types[name]
            try:
                if t is bool:
                    if raw.lower() not in ("0", "1", "true", "false"):
                        raise ValueError(raw)
                    changes[name] = raw.lower() in ("1", "true")
                else:
                    changes[name] = t(raw)
            except ValueError:
                raise ValueError(f"{item!r}: {name} takes a {t.__name__}") from None
        return cls(**changes)


KERNELS = KernelOptions()  # the defaults (kernels called outside a runner: tests, sweeps)


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """Everything a ModelRunner is built with besides the model spec, its device and its
    tensor-parallel group: one frozen object (LLM builds it; TP workers get a copy)."""

    dtype: object = "bfloat16"  # torch dtype or its name: weights, activations, KV cache
    block_size: int = 256  # KV block size in tokens (the engine's block_size_tokens)
    num_kv_blocks: int | None = None  # None: as many as gpu_memory_utilization leaves room for
    gpu_memory_utilization: float = 0.9  # share of the GPU for weights + activations + KV
    max_num_batched_tokens: int = 16384  # the largest step (input buffers are sized by it)
    max_num_seqs: int = 512  # the most rows of a step (decode graphs up to this batch)
    attention: str = "auto"  # attention backend: auto (triton on CUDA, torch on CPU), torch, triton, flash
    enforce_eager: bool = False  # no CUDA graphs (a debugging / A/B switch)
    weights_dir: object = None  # checkpoint folder (str or Path); None: seeded random weights
    seed: int = 0  # random weights and the sampler's seeds
    max_model_len: int | None = None  # longest sequence; None: the model's max positions
    # fused Triton elementwise kernels and GEMMs; None: on for CUDA (the torch paths on CPU)
    fused_ops: bool | None = None
    # CUDA graphs for steps with a prefill too; None: on whenever decode graphs are, with an
    # attention backend that takes a tile map
    mixed_graphs: bool | None = None
    # the torch elementwise paths under torch.compile instead of fused kernels (an A/B,
    # benchmarks/compile_ab.py)
    compile_ops: bool = False
    kernels: KernelOptions = KERNELS  # the kernel switches, handed down to every launch

    def with_(self, **changes) -> "RunnerOptions":
        return replace(self, **changes)
