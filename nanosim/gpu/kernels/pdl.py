"""Programmatic dependent launch (PDL, Hopper and later) for the decode chain's Triton kernels.

A kernel launched with ``launch_pdl=True`` may be scheduled while the kernel before it still
runs; it calls ``pdl_enter`` first, which waits until that kernel has finished and its writes
are visible (griddepcontrol.wait), then lets the next kernel be scheduled in turn. What it
saves is each launch's ramp-up (CTA scheduling, first loads), which dominates the ~2-6 us
kernels of a small decode batch. Every kernel launched with PDL must call pdl_enter before
it touches memory another kernel wrote; ordering stays transitive (each kernel completes
only after the one before it). Off on CPU (the Triton interpreter) and before Hopper.
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait



@functools.cache
def _hopper_or_later(index: int) -> bool:
    return torch.cuda.get_device_capability(index)[0] >= 9


def pdl_launch(device: torch.device, enabled: bool = True) -> dict:
    """Launch options for a kernel taking USE_PDL: {"USE_PDL": bool[, "launch_pdl": True]}.
    enabled: the runner's KernelOptions.pdl (off: plain launches, an A/B)."""
    on = (enabled and device.type == "cuda"
          and _hopper_or_later(device.index if device.index is not None else torch.cuda.current_device()))
    return {"USE_PDL": True, "launch_pdl": True} if on else {"USE_PDL": False}


@triton.jit
def pdl_enter(USE_PDL: tl.constexpr):
    if USE_PDL:
        gdc_wait()
        gdc_launch_dependents()
