"""The real half of a validation on a loaded LLM: replay requests on its runner (virtual
clock, each step measured) and in the simulator with the same engine config and KV blocks,
then compare (validate.py). `nanosim validate` runs it once; `nanosim validate --suite` once
per run, on one runner per model and tp."""
from __future__ import annotations

import dataclasses


def device_name(llm) -> str:
    """The CUDA device's name (what gpu_preset reads), or "cpu"."""
    if llm.device.type != "cuda":
        return llm.device.type
    import torch

    return torch.cuda.get_device_name(llm.device)


def validate_on(llm, requests, cost, *, num_kv_blocks: int | None = None, step_jitter: bool = True,
                temperature: float = 0.0, progress=None):
    """(Validation, record) of ``requests`` replayed on ``llm``'s runner and simulated with
    ``cost``. num_kv_blocks: the engine's KV blocks (at most the runner's; None: all of
    them). Each call drives the runner through a fresh GpuBackend, so no state of an earlier
    replay (made-up prompts by sequence id, the decode fast path) carries over. record: what
    validation.json records of the run (benchmarks/resimulate.py re-runs the simulated half
    from it)."""
    from nanosim.calibrate.validate import RecordingBackend, validate_replay
    from nanosim.core.engine import Engine
    from nanosim.gpu.backend import GpuBackend, SamplingParams
    from nanosim.sim.backend import SimBackend

    have = llm.runner.num_kv_blocks
    blocks = have if num_kv_blocks is None else num_kv_blocks
    if blocks > have:
        raise ValueError(f"--num-kv-blocks {blocks} is more than the runner's {have} KV blocks")
    cfg = llm.cfg.with_(num_kv_blocks=blocks)
    host = llm.host_blocks
    real = Engine(cfg, RecordingBackend(GpuBackend(llm.runner, host)), blocks, host)
    sim = Engine(cfg, SimBackend.for_cost(cost, step_jitter, [cfg.seed, 0]), blocks, host)
    v = validate_replay(requests, real, sim, progress,
                        SamplingParams(temperature=temperature, ignore_eos=True))
    record = {"model": llm.spec.name, "tp": llm.tp, "gpu": device_name(llm),
              "attention": llm.runner.backend.name, "engine": dataclasses.asdict(cfg),
              "kv_blocks": {"gpu": blocks, "host": host}, "step_jitter": step_jitter,
              "cost_model": getattr(cost, "description", cost.name),
              "extrapolated_steps": getattr(cost, "extrapolated_steps", None),
              "predicted_steps": getattr(cost, "total_steps", None),
              "preemptions_real": int(v.real_requests.preemptions.sum())}
    return v, record
