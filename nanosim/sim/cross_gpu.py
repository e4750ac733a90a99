"""Prediction for a GPU that was not profiled (`--profile-from SOURCE`): price each step with
the SOURCE GPU's measured profile, then scale the step's GPU time by the roofline of the
target GPU and keep its host time.

The profile's fitted roofline (nanosim/sim/fit.py) splits a step into host terms, fitted on
the source machine (step overhead, per-sequence overhead, the extra of an eager step), and
GPU phases, each the max of its compute and its traffic at the fitted efficiencies (GEMMs,
prefill attention, decode attention, all-reduces, swaps). On the target GPU the same
efficiencies apply to the target's datasheet peaks, phase by phase: a memory-bound decode
step's GEMM and attention scale with HBM bandwidth, a compute-bound prefill's with FLOP/s,
and a phase that changes regime takes the target's slower side. So

    host_s, gpu_s  = the source profile's price, split in the proportion its fitted
                     roofline puts in host terms and in GPU phases
    predicted_s    = host_s + gpu_s x (target GPU phases / source GPU phases)

which is the profile's price times (fitted roofline on the target / on the source): equal
specs give the source's prices exactly. What it cannot see: host differences between the
machines (a faster or slower CPU, driver, launch latency: the host part is kept as
measured), efficiencies that differ between the GPUs (another memory system's achieved
fraction of peak, kernels tuned for one GPU, cache sizes), and anything the roofline does
not model (the split-KV tail of long rows is scaled like the rest of the step).
"""
from __future__ import annotations

import copy

import numpy as np

from nanosim.config import GpuSpec
from nanosim.core.batch import PACKED, StepShape
from nanosim.sim.costmodel import RooflineCostModel
from nanosim.sim.fit import _theta, model_from_theta

HOST_TERMS = ("overhead", "eager", "per_seq")  # RooflineCostModel.breakdown keys that are host time
GPU_TERMS = ("gemm", "prefill_attn", "decode_attn", "comm", "swap")


def on_gpu(fitted: RooflineCostModel, target: GpuSpec) -> RooflineCostModel:
    """``fitted`` with the same efficiencies and host terms on ``target``'s peaks."""
    src = fitted.gpu
    th = _theta(fitted).copy()  # seconds per FLOP / byte at the source's peaks
    th[2] *= src.bf16_flops_per_s / target.bf16_flops_per_s  # u_gemm
    th[3] *= src.hbm_bytes_per_s / target.hbm_bytes_per_s  # u_bytes
    th[4] *= src.bf16_flops_per_s / target.bf16_flops_per_s  # u_attn
    th[5] *= src.link_bytes_per_s / target.link_bytes_per_s  # u_link
    prior = RooflineCostModel(fitted.model, target, fitted.tp, fitted.dtype_bytes,
                              host_link_bytes_per_s=fitted.host_link_bytes_per_s,
                              block_size_tokens=fitted.block_size_tokens)
    return model_from_theta(prior, th)


class CrossGpuCostModel:
    """A source GPU's ProfileCostModel, its prices carried to ``target`` (module doc)."""

    name = "profile-from"

    def __init__(self, source, target: GpuSpec) -> None:
        self.source, self.gpu = source, target
        self.profile = source.profile  # its step jitter (a share of the step, kept as measured)
        self.src_roofline = source.roofline
        self.roofline = on_gpu(source.roofline, target)
        sg = source.gpu
        self.description = (
            f"profile-from {sg.name}: {source.description}; GPU phases scaled to {target.name}'s "
            f"roofline (HBM {target.hbm_bytes_per_s / sg.hbm_bytes_per_s:.2f}x, "
            f"bf16 {target.bf16_flops_per_s / sg.bf16_flops_per_s:.2f}x, "
            f"link {target.link_bytes_per_s / sg.link_bytes_per_s:.2f}x {sg.name}'s), host time kept")

    def __copy__(self):  # a replica's copy: its own step counts in the source model
        new = object.__new__(CrossGpuCostModel)
        new.__dict__.update(self.__dict__)
        new.source = copy.copy(self.source)
        return new

    @property
    def total_steps(self) -> int:
        return self.source.total_steps

    @property
    def extrapolated_steps(self) -> int:
        return self.source.extrapolated_steps

    def reset_counts(self) -> None:
        self.source.reset_counts()

    def ratio(self, shape: StepShape) -> float:
        """Fitted roofline on the target / on the source, for the step as the runner runs it."""
        padded = self.source._padded(shape)
        src = self.src_roofline.step_time_s(padded)
        return self.roofline.step_time_s(padded) / src if src > 0 else 1.0

    def split_s(self, shape: StepShape) -> tuple[float, float]:
        """(host seconds, GPU seconds) of the step on the target: the source profile's price
        split as the source's fitted roofline splits it, the GPU part scaled (module doc)."""
        padded = self.source._padded(shape)
        src = self.src_roofline.breakdown(padded)
        tgt = self.roofline.breakdown(padded)
        t = self.source.step_time_s(shape)
        host = sum(src[k] for k in HOST_TERMS)
        if src["total"] <= 0:
            return t, 0.0
        host_s = t * host / src["total"]
        gpu_src = src["total"] - host
        scale = (tgt["total"] - host) / gpu_src if gpu_src > 0 else 1.0
        return host_s, (t - host_s) * scale

    def step_time_s(self, shape: StepShape) -> float:
        return self.source.step_time_s(shape) * self.ratio(shape)

    def decode_run_s(self, num_seqs: int, context_tokens: int, num_steps: int,
                     max_context_tokens: int = 0, first_path: str = PACKED) -> np.ndarray:
        t = self.source.decode_run_s(num_seqs, context_tokens, num_steps, max_context_tokens, first_path)
        if num_steps == 0 or num_seqs <= 0:
            return t
        b = self.source._graph_size(num_seqs)
        ctx = context_tokens + np.arange(num_steps, dtype=np.float64) * num_seqs

        def run(rf: RooflineCostModel) -> np.ndarray:
            return rf._fixed_s(0, 0, 0.0, 0, b, 0) + rf._decode_attn_s(b, ctx)

        return t * (run(self.roofline) / run(self.src_roofline))

    def __repr__(self) -> str:
        return f"CrossGpuCostModel<{self.description}>"
