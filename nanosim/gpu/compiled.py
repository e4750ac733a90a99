"""torch.compile of the elementwise torch paths (norms, activation, rotary embedding): the
runner's ``compile_ops`` (layers.compile_elementwise), an A/B against the fused kernels."""
from __future__ import annotations

import functools

import torch

COMPILE_BACKEND = "inductor"  # torch.compile backend of compile_elementwise (tests: aot_eager)


@functools.cache
def compiled(fn, backend: str):
    """fn under torch.compile, dynamic shapes (one graph for every token count)."""
    return torch.compile(fn, dynamic=True, backend=backend)


def maybe_compiled(fn, on: bool):
    return compiled(fn, COMPILE_BACKEND) if on else fn
