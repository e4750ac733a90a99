"""User API in the style of nano-vLLM / vLLM:

    from nanosim import LLM, SamplingParams
    llm = LLM("qwen3-0.6b")                      # a preset (random weights) or a local HF dir
    outs = llm.generate(["Hello"], SamplingParams(temperature=0.6, max_tokens=32))
    outs[0].outputs[0].text, outs[0].token_ids, outs[0].metrics.ttft_s   # vLLM's RequestOutput

The LLM drives the same Engine / Scheduler / BlockManager as the simulator; its backend is
a GpuBackend over a ModelRunner. String prompts need a tokenizer in the model directory.

tensor_parallel_size=N > 1 starts N - 1 worker processes (nanosim/gpu/tp.py); release them
with llm.close() or ``with LLM(...) as llm:`` (they are also stopped at interpreter exit).
Scripts that use it need the ``if __name__ == "__main__":`` guard (workers are spawned).
"""
from __future__ import annotations

import copy
from dataclasses import fields, replace
from pathlib import Path

import torch

from nanosim.config import EngineConfig, get_model
from nanosim.core.engine import Engine
from nanosim.core.request import Request
from nanosim.core.sequence import Status
from nanosim.gpu.backend import GpuBackend, SamplingParams
from nanosim.gpu.options import RunnerOptions
from nanosim.gpu.outputs import CompletionOutput, RequestOutput, request_output

__all__ = ["LLM", "CompletionOutput", "RequestOutput", "SamplingParams", "resolve_model"]

RUNNER_OPTIONS = ("enforce_eager", "attention", "gpu_memory_utilization", "num_kv_blocks", "fused_ops",
                  "mixed_graphs", "compile_ops", "kernels")


def resolve_model(model: str):
    """(ModelSpec, weights dir or None, tokenizer or None) for a preset name or a local dir."""
    path = Path(model)
    if path.is_dir():
        from nanosim.gpu.loader import read_spec

        return read_spec(path), path, _tokenizer(path)
    return get_model(model), None, None


def _tokenizer(path: Path):
    if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def check_device(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but no CUDA GPU is available here; use device='cpu' "
                           "(slow, for tiny models) or run on a GPU machine")
    return dev


def config_kwargs(cfg: EngineConfig) -> dict:
    """LLM keyword arguments that give an LLM the engine config ``cfg``, every field of it:
    vLLM's ``block_size`` for block_size_tokens; tp is the LLM's tensor_parallel_size; an
    unset num_kv_blocks is left out (the LLM sizes the cache)."""
    kw = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in ("block_size_tokens", "tp")}
    kw["block_size"] = cfg.block_size_tokens
    if kw["num_kv_blocks"] is None:
        del kw["num_kv_blocks"]
    return kw


def cpu_default_blocks(cfg: EngineConfig) -> int:
    """On CPU there is no free-memory reading: room for 4 max_model_len sequences."""
    return 4 * -(-cfg.max_model_len // cfg.block_size_tokens)


class LLM:
    def __init__(self, model: str, device: str = "cuda", dtype: str | torch.dtype = "bfloat16",
                 tensor_parallel_size: int = 1, seed: int = 0, block_size: int = 256,
                 weights: str | None = None, dist_timeout_s: float = 300.0,
                 async_decode: bool | None = None, fast_decode: bool = True, **engine_options) -> None:
        """dist_timeout_s bounds each tensor-parallel collective and command hand-off (start-up
        stages wait while the ranks are alive; a dead rank is reported at once).
        async_decode: steady decode steps are launched one step ahead, so the GPU is not idle
        while the scheduler plans (backend.py). None (default): on where it runs (one GPU with
        CUDA graphs), as in vLLM; the virtual-clock replays of `nanosim run` turn it off.
        fast_decode=False: every step packs its inputs anew (an A/B arm; see with_decoding)."""
        from nanosim.gpu.dist import check_tp_config

        self.runner = None
        self.device = check_device(device)
        self.spec, weights_dir, self.tokenizer = resolve_model(model)
        check_tp_config(self.spec, tensor_parallel_size, self.device)  # before any process starts
        self.tp = tensor_parallel_size
        if async_decode and tensor_parallel_size > 1:
            raise ValueError("async_decode needs tensor_parallel_size=1")
        if weights is not None:  # a preset's shapes with a local checkpoint's values
            from nanosim.gpu.loader import check_spec

            check_spec(self.spec, weights)
            weights_dir, self.tokenizer = Path(weights), _tokenizer(Path(weights))
        runner_kw = {k: engine_options.pop(k) for k in RUNNER_OPTIONS if k in engine_options}
        engine_options.setdefault("max_model_len", min(4096, self.spec.max_position_embeddings))
        cfg = EngineConfig(block_size_tokens=block_size, seed=seed, tp=self.tp, **engine_options)
        if self.device.type == "cpu":
            runner_kw.setdefault("num_kv_blocks", cpu_default_blocks(cfg))
        runner_kw.update(dtype=dtype, block_size=block_size, weights_dir=weights_dir, seed=seed,
                         max_num_batched_tokens=cfg.max_num_batched_tokens,
                         max_num_seqs=cfg.max_num_seqs, max_model_len=cfg.max_model_len)
        self.runner = _make_runner(self.spec, self.device, self.tp, dist_timeout_s,
                                   RunnerOptions(**runner_kw))
        if async_decode is None:  # where step_next runs: a single runner with decode graphs
            async_decode = self.tp == 1 and getattr(self.runner, "graphs", None) is not None
        try:
            self._start_engine(cfg, block_size, async_decode, fast_decode)
        except BaseException:
            self.close()
            raise

    def _start_engine(self, cfg: EngineConfig, block_size: int, async_decode: bool,
                      fast_decode: bool) -> None:
        from nanosim.gpu.kv_cache import check_fits, kv_block_bytes

        self.cfg = cfg.with_(num_kv_blocks=self.runner.num_kv_blocks)
        block_bytes = kv_block_bytes(self.spec, block_size, self.runner.dtype, self.tp)  # per rank
        check_fits(self.runner.num_kv_blocks, block_size, cfg.max_model_len, block_bytes,
                   cfg.gpu_memory_utilization)  # also when num_kv_blocks was given
        host_blocks = cfg.swap_space_bytes // block_bytes if cfg.preemption_mode == "swap" else 0
        self.host_blocks = host_blocks
        self.eos_token_id = getattr(self.tokenizer, "eos_token_id", None)
        self._start_backend(async_decode, fast_decode)
        _freeze_heap()

    def _start_backend(self, async_decode: bool, fast_decode: bool) -> None:
        self.async_decode, self.fast_decode = async_decode, fast_decode
        self.backend = GpuBackend(self.runner, self.host_blocks, async_decode, fast_decode=fast_decode)
        self.reset()

    def with_decoding(self, async_decode: bool | None = None, fast_decode: bool | None = None) -> "LLM":
        """An LLM over this one's runner (weights, KV cache, CUDA graphs: nothing loaded or
        captured again) whose backend is built with these decoding options (None: this one's),
        with a fresh engine: the arms of an A/B. Use one at a time (they share the KV cache);
        close() either to stop the shared tensor-parallel workers."""
        other = copy.copy(self)
        other._start_backend(self.async_decode if async_decode is None else async_decode,
                             self.fast_decode if fast_decode is None else fast_decode)
        return other

    def reset(self) -> None:
        """A fresh engine (empty queues, KV block manager, metrics) on the same runner."""
        self.engine = Engine(self.cfg, self.backend, self.runner.num_kv_blocks, self.host_blocks)
        self._next_id = 0

    def reset_prefix_cache(self) -> bool:
        """Forget every cached prefix, e.g. between benchmark rounds (vLLM's
        LLM.reset_prefix_cache). Returns False, and changes nothing, while a request still
        holds KV blocks."""
        return self.engine.reset_prefix_cache()

    def warmup(self) -> None:
        """Run prefill-only, mixed and decode steps over block tables of several widths, so
        that no step of a measured replay pays a one-time kernel compile; then reset()."""
        bs, top = self.cfg.block_size_tokens, self.cfg.max_model_len - 8
        # token counts 1, multiples of 16 and others; block tables of 1, 3 and 17 blocks
        lens = sorted({max(1, min(n, top)) for n in (1, 16, 64, bs // 2 + 1, 2 * bs + 1, 16 * bs + 1)})
        budget = self.cfg.max_num_batched_tokens
        greedy = SamplingParams(temperature=0.0, max_tokens=4, ignore_eos=True)
        for n in lens:
            self.generate([[1 + n % 97] * n], greedy)
        mixed = [[2 + n % 89] * n for n in lens if n <= budget]
        self.generate(mixed, SamplingParams(temperature=0.6, max_tokens=8, ignore_eos=True))
        self.reset()
        _freeze_heap()

    def close(self) -> None:
        """Stop the tensor-parallel workers and let go of the runner: weights, KV cache and
        CUDA graphs go back to the device, so another LLM can be loaded in this process (the
        validation suite loads one per model). The LLM is unusable after. Idempotent."""
        runner, self.runner, self.backend, self.engine = self.runner, None, None, None
        if runner is None:
            return
        close = getattr(runner, "close", None)
        if close is not None:
            close()
        del runner
        _release_heap(self.device)

    def __enter__(self) -> "LLM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def generate(self, prompts, sampling_params: SamplingParams | list[SamplingParams] | None = None,
                 use_tqdm: bool = False) -> list[RequestOutput]:
        """prompts: a string or a list of token ids (one prompt), or a list of them; vLLM's
        ``{"prompt": str}`` / ``{"prompt_token_ids": [...]}`` work too. Strings need a
        tokenizer in the checkpoint. Returns one RequestOutput per prompt, in order
        (outputs.py: .outputs[0].text / .token_ids, .metrics); use_tqdm: a progress bar."""
        if self.runner is None:
            raise RuntimeError("this LLM is unusable: it was closed (LLM.close()); build another")
        if isinstance(prompts, (str, tuple, dict)) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        params = sampling_params or SamplingParams()
        params = params if isinstance(params, list) else [params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError(f"{len(params)} sampling params for {len(prompts)} prompts")
        texts = [self._text(p) for p in prompts]
        seqs = [self._add(p, sp, i) for i, (p, sp) in enumerate(zip(prompts, params))]
        bar = None
        if use_tqdm:
            from tqdm import tqdm

            bar = tqdm(total=len(seqs), desc="generate", unit="req")
        done_rows = self.engine.metrics.requests["request_id"]
        start, now = len(done_rows), 0.0
        while self.engine.has_work:
            now += self.engine.step(now)
            if bar is not None:
                bar.update(len(done_rows) - start - bar.n)
        if bar is not None:
            bar.close()
        return [self._output(s, t) for s, t in zip(seqs, texts)]

    @staticmethod
    def _text(prompt) -> str | None:
        if isinstance(prompt, dict):
            prompt = prompt.get("prompt")
        return prompt if isinstance(prompt, str) else None

    def _add(self, prompt, sp: SamplingParams, index: int):
        ids = self._encode(prompt, index)
        if len(ids) + 1 > self.cfg.max_model_len:
            raise ValueError(f"prompt {index} has {len(ids)} tokens; max_model_len is "
                             f"{self.cfg.max_model_len} (prompt + at least one output token)")
        sp = replace(sp, eos_token_id=self.eos_token_id,
                     max_tokens=min(sp.max_tokens, self.cfg.max_model_len - len(ids)))
        req = Request(self._next_id, 0.0, len(ids), sp.max_tokens, prompt_token_ids=tuple(ids))
        self._next_id += 1
        return self.engine.add_request(req, sp.max_tokens, sp)

    def _encode(self, prompt, index: int) -> list[int]:
        if isinstance(prompt, dict):
            if ("prompt" in prompt) == ("prompt_token_ids" in prompt):
                raise ValueError(f"prompt {index}: a dict prompt needs 'prompt' or 'prompt_token_ids'")
            prompt = prompt.get("prompt", prompt.get("prompt_token_ids"))
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError("string prompts need a tokenizer in the model directory; "
                                 "pass lists of token ids instead")
            return list(self.tokenizer.encode(prompt))
        ids = [int(t) for t in prompt]
        if not ids or min(ids) < 0 or max(ids) >= self.spec.vocab_size:
            raise ValueError(f"prompt {index}: token ids must be non-empty and in "
                             f"[0, {self.spec.vocab_size})")
        return ids

    def _output(self, seq, prompt: str | None) -> RequestOutput:
        if seq.status is Status.REJECTED:
            raise ValueError(f"request {seq.seq_id} rejected: {seq.reject_reason}")
        return request_output(seq, prompt, self.tokenizer)


def _freeze_heap() -> None:
    """Move everything alive now (model, modules, graphs' Python objects) out of the garbage
    collector's reach (gc.freeze, as vLLM does after start-up): a full collection during a
    step then walks only the objects made since, not the whole start-up heap."""
    import gc

    gc.collect()
    gc.freeze()


def _release_heap(device) -> None:
    """Collect what _freeze_heap put out of the collector's reach (the model's modules hold
    reference cycles, so a closed LLM's weights outlive it otherwise), freeze the survivors
    again, and hand the freed CUDA blocks back to the device."""
    import gc

    gc.unfreeze()
    gc.collect()
    gc.freeze()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _make_runner(spec, device, tp: int, timeout_s: float, options: RunnerOptions):
    """A ModelRunner (tp=1) or rank 0 of a tensor-parallel group (tp>1)."""
    if tp == 1:
        from nanosim.gpu.runner import ModelRunner

        return ModelRunner(spec, device, options)
    from nanosim.gpu.tp import TPRunner

    return TPRunner(spec, device, tp, options, timeout_s=timeout_s)
