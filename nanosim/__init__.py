"""nanosim: one scheduler and paged-KV block manager, driven by a simulated or a real GPU.

    from nanosim import LLM, SamplingParams      # real mode, vLLM-style (imports torch then)

The names below are imported on first use (module ``__getattr__``), so ``import nanosim``
and ``nanosim.core`` stay free of torch.
"""
__version__ = "0.1.0"

_LAZY = {"LLM": "nanosim.gpu.llm", "SamplingParams": "nanosim.gpu.sampling_params",
         "RequestOutput": "nanosim.gpu.outputs", "CompletionOutput": "nanosim.gpu.outputs",
         "RequestMetrics": "nanosim.gpu.outputs", "load_trace": "nanosim.workload"}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nanosim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
