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
specs give the source's prices exactly.

When the profile measured each point's device time beside its wall time (gpu_duration_s,
the runner's CUDA events; profile_schema.DEVICE_KEYS), the split is measured instead of
fitted: a second ProfileCostModel over the device times prices the step's device part d
(clamped to [0, the wall price t]), and

    predicted_s    = (t - d) + d x (target GPU phases / source GPU phases)

so the measured host part is kept whole and only the device part is scaled (the fitted
intercept's fixed GPU latency, all kept by the fitted split, is then scaled with the
rest of the device time). Either way the price is a function of the step's shape alone.
What it cannot see: host differences between the
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
from nanosim.sim.profile import ProfileCostModel, device_profile

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


def host_terms_s(rf: RooflineCostModel, padded: StepShape) -> float:
    """The host terms of ``rf``'s price of ``padded`` (the sum of breakdown()'s HOST_TERMS,
    without building the breakdown: the simulator's hot path)."""
    T = padded.prefill_tokens + padded.num_decode_seqs
    if T == 0:
        return rf.step_overhead_s if padded.swap_blocks else 0.0
    t = rf.step_overhead_s + (padded.num_prefill_seqs + padded.num_decode_seqs) * rf.per_seq_overhead_s
    return t + rf.eager_overhead_s if padded.prefill_tokens else t


def _device_model(source: ProfileCostModel) -> ProfileCostModel | None:
    """A ProfileCostModel of the source profile's device times (None: not every point has one)."""
    dev = device_profile(source.profile)
    if dev is None:
        return None
    rf = source.roofline
    prior = RooflineCostModel(source.model, source.gpu, source.tp, rf.dtype_bytes,
                              host_link_bytes_per_s=rf.host_link_bytes_per_s,
                              block_size_tokens=rf.block_size_tokens)
    return ProfileCostModel(dev, source.model, source.gpu, source.tp, prior=prior)


class CrossGpuCostModel:
    """A source GPU's ProfileCostModel, its prices carried to ``target`` (module doc).
    measured_split: scale the profile's measured device times (when every point has one;
    False: always the fitted roofline's split, as for a profile without them)."""

    name = "profile-from"

    def __init__(self, source, target: GpuSpec, measured_split: bool = True) -> None:
        self.source, self.gpu = source, target
        self.profile = source.profile  # its step jitter (a share of the step, kept as measured)
        self.src_roofline = source.roofline
        self.roofline = on_gpu(source.roofline, target)
        self.device = _device_model(source) if measured_split else None
        sg = source.gpu
        if self.device is not None:
            split = "host time kept (host/device split measured: the profile's device times)"
        else:
            split = ("host time kept (host/device split from the fitted roofline: "
                     + ("the profile records no device times)" if measured_split else "as asked)"))
        self.description = (
            f"profile-from {sg.name}: {source.description}; GPU phases scaled to {target.name}'s "
            f"roofline (HBM {target.hbm_bytes_per_s / sg.hbm_bytes_per_s:.2f}x, "
            f"bf16 {target.bf16_flops_per_s / sg.bf16_flops_per_s:.2f}x, "
            f"link {target.link_bytes_per_s / sg.link_bytes_per_s:.2f}x {sg.name}'s), {split}")

    def __copy__(self):  # a replica's copy: its own step counts in the source model
        new = object.__new__(CrossGpuCostModel)
        new.__dict__.update(self.__dict__)
        new.source = copy.copy(self.source)
        new.device = copy.copy(self.device)
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

    def gpu_scale(self, shape: StepShape) -> float:
        """Fitted GPU phases on the target / on the source, for the step as the runner runs it."""
        padded = self.source._padded(shape)
        host = host_terms_s(self.src_roofline, padded)
        gpu_src = self.src_roofline.step_time_s(padded) - host
        return (self.roofline.step_time_s(padded) - host) / gpu_src if gpu_src > 0 else 1.0

    def split_s(self, shape: StepShape) -> tuple[float, float]:
        """(host seconds, GPU seconds) of the step on the target: the source profile's price
        split by its measured device time (when the profile has them) or as the source's
        fitted roofline splits it, the GPU part scaled (module doc)."""
        padded = self.source._padded(shape)
        t = self.source.step_time_s(shape)
        if self.device is not None:
            d = min(max(self.device.step_time_s(shape), 0.0), t)
            return t - d, d * self.gpu_scale(shape)
        src = self.src_roofline.breakdown(padded)
        tgt = self.roofline.breakdown(padded)
        host = sum(src[k] for k in HOST_TERMS)
        if src["total"] <= 0:
            return t, 0.0
        host_s = t * host / src["total"]
        gpu_src = src["total"] - host
        scale = (tgt["total"] - host) / gpu_src if gpu_src > 0 else 1.0
        return host_s, (t - host_s) * scale

    def step_time_s(self, shape: StepShape) -> float:
        if self.device is not None:
            host, gpu = self.split_s(shape)
            return host + gpu
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

        if self.device is None:
            return t * (run(self.roofline) / run(self.src_roofline))
        # the measured split, step by step as split_s (the same float operations)
        d = self.device.decode_run_s(num_seqs, context_tokens, num_steps, max_context_tokens, first_path)
        d = np.minimum(np.maximum(d, 0.0), t)
        host = host_terms_s(self.src_roofline, StepShape(num_decode_seqs=b, decode_context_tokens=1))
        gpu_src = run(self.src_roofline) - host
        scale = np.where(gpu_src > 0, (run(self.roofline) - host) / np.where(gpu_src > 0, gpu_src, 1.0), 1.0)
        return (t - d) + d * scale

    def __repr__(self) -> str:
        return f"CrossGpuCostModel<{self.description}>"
