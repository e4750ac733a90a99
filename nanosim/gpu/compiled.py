"""torch.compile of the elementwise torch paths (norms, activation, rotary embedding): the
runner's ``compile_ops`` (layers.compile_elementwise), an A/B against the fused kernels. The
backend comes from the runner's KernelOptions.compile_backend."""
from __future__ import annotations

import functools

import torch


@functools.cache
def compiled(fn, backend: str):
    """fn under torch.compile, dynamic shapes (one graph for every token count)."""
    return torch.compile(fn, dynamic=True, backend=backend)


def maybe_compiled(fn, backend: str | None):
    """fn under torch.compile with ``backend``, or fn itself (None)."""
    return compiled(fn, backend) if backend else fn
