"""Linear layers written for tensor parallelism (Megatron style, like vLLM / nano-vLLM).

Every layer holds only its rank's shard and has ``weight_loader(param, loaded_weight,
shard_id=None)`` that takes the FULL checkpoint tensor and copies this rank's slice.
Loaders raise ValueError on a shape mismatch; the checkpoint loader adds file/tensor names.

    ColumnParallelLinear       W (out/tp, in): output features split, no communication
    MergedColumnParallelLinear [gate; up] stacked, each split by rank (shard_id 0, 1, ...)
    QKVParallelLinear          [q; k; v] stacked, heads split by rank (shard_id "q"/"k"/"v")
    RowParallelLinear          W (out, in/tp): input split, partial sums all-reduced

``skinny = True`` (set by the model when fused kernels are on, CUDA) sends batches of at
most SKINNY_MAX_M rows to the Triton skinny GEMM (nanosim/gpu/kernels/skinny_gemm.py)
instead of cuBLAS; a RowParallelLinear with ``partial_sums = True`` (tp = 1 only) may then
return split-K partial sums (S, M, N) fp32, which its consumer (fused rms_norm) adds up,
and takes the split-K GEMM (splitk_gemm.py) up to KernelOptions.splitk_max_m rows.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from nanosim.gpu.options import KernelOptions


def check_shape(loaded: torch.Tensor, expected: tuple[int, ...]) -> None:
    if tuple(loaded.shape) != tuple(expected):
        raise ValueError(f"expected shape {tuple(expected)}, got {tuple(loaded.shape)}")


def default_weight_loader(param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
    """Replicated parameter (norm weights): the checkpoint tensor is copied whole."""
    check_shape(loaded, param.shape)
    param.data.copy_(loaded)


def divide(n: int, tp_size: int, what: str) -> int:
    if n % tp_size:
        raise ValueError(f"{what}={n} is not divisible by tp_size={tp_size}")
    return n // tp_size


def matmul(x: torch.Tensor, weight: torch.Tensor, kernels: KernelOptions | None,
           partials: bool = False) -> torch.Tensor:
    """x (M, K) @ weight (N, K)^T; with ``kernels`` (fused kernels on: their options), batches
    of at most SKINNY_MAX_M rows go to the Triton skinny GEMM (partials: its split-K fp32
    sums), and with partials up to kernels.splitk_max_m rows to the split-K GEMM."""
    if kernels is not None:
        from nanosim.gpu.kernels.skinny_gemm import SKINNY_MAX_M, skinny_linear

        if 0 < x.shape[0] <= SKINNY_MAX_M:
            return skinny_linear(x, weight, partials=partials, opts=kernels)
        if partials:  # the consumer adds split-K partials: fill the GPU by splitting K
            from nanosim.gpu.kernels import splitk_gemm

            if x.shape[0] <= kernels.splitk_max_m:
                return splitk_gemm.splitk_linear(x, weight, opts=kernels)
    return F.linear(x, weight)


class _ParallelLinear(nn.Module):
    """Shared plumbing: a (out_local, in_local) weight whose loader is ``self.weight_loader``."""

    def __init__(self, in_local: int, out_local: int, tp_rank: int, tp_size: int) -> None:
        super().__init__()
        self.tp_rank, self.tp_size = tp_rank, tp_size
        self.weight = nn.Parameter(torch.empty(out_local, in_local), requires_grad=False)
        self.weight.weight_loader = self.weight_loader
        self.kernels: KernelOptions | None = None  # fused kernels' options (the model sets it)

    def _matmul(self, x: torch.Tensor, partials: bool = False) -> torch.Tensor:
        return matmul(x, self.weight, self.kernels, partials)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._matmul(x)


class ColumnParallelLinear(_ParallelLinear):
    def __init__(self, in_features: int, out_features: int, tp_rank: int = 0, tp_size: int = 1):
        self.in_features, self.out_features = in_features, out_features
        super().__init__(in_features, divide(out_features, tp_size, "out_features"), tp_rank, tp_size)

    def weight_loader(self, param, loaded, shard_id=None) -> None:
        check_shape(loaded, (self.out_features, self.in_features))
        n = param.shape[0]
        param.data.copy_(loaded.narrow(0, self.tp_rank * n, n))


class MergedColumnParallelLinear(_ParallelLinear):
    """Several column-parallel outputs stacked in one matmul (gate_up: sizes [I, I])."""

    def __init__(self, in_features: int, out_sizes: list[int], tp_rank: int = 0, tp_size: int = 1):
        self.in_features, self.out_sizes = in_features, list(out_sizes)
        local = [divide(s, tp_size, "out_features") for s in out_sizes]
        super().__init__(in_features, sum(local), tp_rank, tp_size)

    def shard_ids(self) -> list:
        return list(range(len(self.out_sizes)))

    def weight_loader(self, param, loaded, shard_id=None) -> None:
        if shard_id not in self.shard_ids():
            raise ValueError(f"shard_id {shard_id!r} is not one of {self.shard_ids()}")
        check_shape(loaded, (self.out_sizes[shard_id], self.in_features))
        n = self.out_sizes[shard_id] // self.tp_size
        offset = sum(self.out_sizes[:shard_id]) // self.tp_size
        param.data.narrow(0, offset, n).copy_(loaded.narrow(0, self.tp_rank * n, n))


class QKVParallelLinear(_ParallelLinear):
    """[q (Hq*D); k (Hkv*D); v (Hkv*D)] per rank; heads are split across ranks."""

    def __init__(self, hidden_size: int, head_dim: int, num_q_heads: int, num_kv_heads: int,
                 tp_rank: int = 0, tp_size: int = 1) -> None:
        self.hidden_size, self.head_dim = hidden_size, head_dim
        self.num_q_heads = divide(num_q_heads, tp_size, "num_q_heads")  # local heads
        self.num_kv_heads = divide(num_kv_heads, tp_size, "num_kv_heads")
        out_local = (self.num_q_heads + 2 * self.num_kv_heads) * head_dim
        super().__init__(hidden_size, out_local, tp_rank, tp_size)

    def shard_ids(self) -> list:
        return ["q", "k", "v"]

    def weight_loader(self, param, loaded, shard_id=None) -> None:
        q, kv = self.num_q_heads * self.head_dim, self.num_kv_heads * self.head_dim
        spans = {"q": (0, q), "k": (q, kv), "v": (q + kv, kv)}  # (offset, local rows)
        if shard_id not in spans:
            raise ValueError(f"shard_id {shard_id!r} is not one of {self.shard_ids()}")
        offset, n = spans[shard_id]
        check_shape(loaded, (n * self.tp_size, self.hidden_size))
        param.data.narrow(0, offset, n).copy_(loaded.narrow(0, self.tp_rank * n, n))


class RowParallelLinear(_ParallelLinear):
    """y = x_local @ W_local^T, summed over ranks (all-reduce) when tp_size > 1."""

    def __init__(self, in_features: int, out_features: int, tp_rank: int = 0, tp_size: int = 1):
        self.in_features, self.out_features = in_features, out_features
        super().__init__(divide(in_features, tp_size, "in_features"), out_features, tp_rank, tp_size)
        self.partial_sums = False  # consumer adds split-K partials (see the module doc)

    def weight_loader(self, param, loaded, shard_id=None) -> None:
        check_shape(loaded, (self.out_features, self.in_features))
        n = param.shape[1]
        param.data.copy_(loaded.narrow(1, self.tp_rank * n, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """-> (M, out) or, with partial_sums and a skinny batch, (S, M, out) fp32 partials."""
        y = self._matmul(x, partials=self.partial_sums and self.tp_size == 1)
        if self.tp_size > 1:
            dist.all_reduce(y)
        return y
