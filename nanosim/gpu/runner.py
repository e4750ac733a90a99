"""ModelRunner: one Qwen3 model, its paged KV cache and its CUDA graphs on one device.

    runner = ModelRunner(MODELS["qwen3-0.6b"], "cuda", RunnerOptions(block_size=256, ...))
    out = runner.step([SeqWork(token_ids, start_pos, block_table, samples, ...), ...])
    out.token_ids  # one sampled token per SeqWork with samples=True, in order
    out.duration_s # GPU time of the step (CUDA events; perf_counter on CPU)
    out = runner.step_next(keep)  # the next decode step of (a subset of) the same rows

step_next is the steady-state decode fast path: after a decode step replayed by a CUDA graph,
the next step of the same sequences (or of those that did not finish) edits the packed
inputs in place (positions + 1, the sampled tokens, a block id where a block starts) instead
of packing them anew (a few numpy operations on B-row arrays; the packing it replaces took
0.17-0.27 ms at batch 1 and 0.7-0.84 ms at batch 256 on our H100 hosts, profile_decode.py).

Lookahead (step_next(keep, ahead=True), the engine's async decoding): before waiting for
a decode step's tokens, the runner launches the step after it for all of its rows, fed the
sampled token ids on the device, so the GPU has that step queued while the host reads the
tokens and the scheduler plans the next step. When that plan is those rows (or some of
them: a sequence finished), the next step_next only waits for it; any other step (a
prefill, swaps, a new row) first waits the queued step out and ignores it. It is launched
only when every row's next position lies in a block its table already holds, so its K/V
writes land in each row's own last, partial block, at a slot no step reads before writing
it again: an ignored step leaves nothing any later step sees.

The runner owns no scheduling state: block tables come from the caller's block manager,
and a block id is an index into the cache's first dim (0 .. num_kv_blocks - 1).

Tensor parallelism: pass ``group`` (nanosim/gpu/dist.py RankGroup) and the runner holds only
its rank's shard of the weights and of the KV heads; every rank runs step() on the same
SeqWorks (nanosim/gpu/tp.py sends them) and only rank 0 samples.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from nanosim.config import ModelSpec
from nanosim.gpu.attention import select_backend
from nanosim.gpu.cuda_graphs import DecodeGraphs, MixedGraphs, graph_batch_sizes, mixed_token_buckets
from nanosim.gpu.inputs import InputPacker, SeqWork, StepInputs
from nanosim.gpu.kv_cache import (HostKVPool, allocate_kv_cache, blocks_from_memory, check_fits,
                                  kv_block_bytes)
from nanosim.gpu.loader import build_model
from nanosim.gpu.options import RunnerOptions
from nanosim.gpu.sampler import sample
from nanosim.gpu.step_timer import StepTimer

__all__ = ["ModelRunner", "SeqWork", "StepOutput"]


@dataclass(frozen=True, slots=True)
class StepOutput:
    token_ids: list[int]  # sampled tokens of the SeqWorks with samples=True, in order
    duration_s: float  # device time from the input copy to the sampled tokens' copy back
    wall_s: float  # host wall time of the whole step() call, input packing included
    ahead: bool = False  # launched by the call before (lookahead): it ran while the host planned


@dataclass(slots=True)
class _Launch:
    """A step on the stream whose tokens the host has not read yet."""
    ids: torch.Tensor | None  # (S,) int64 sampled token ids on the device (None: no sampling)
    host: torch.Tensor  # (S,) int64 pinned: their copy
    timer: StepTimer  # its own CUDA events (two launches may be in flight)
    t0: float  # perf_counter when its step call began


def _dtype(dtype: torch.dtype | str) -> torch.dtype:
    return getattr(torch, dtype) if isinstance(dtype, str) else dtype


class ModelRunner:
    supports_lookahead = True  # step_next(ahead=True) (GpuBackend's async_decode)

    def __init__(self, spec: ModelSpec, device: str | torch.device = "cuda",
                 options: RunnerOptions = RunnerOptions(), group=None) -> None:
        """options: everything else it is built with (nanosim/gpu/options.py), fixed for the
        runner's life; its kernel switches go to the attention backend, the model's fused
        layers and the input packer. group: the RankGroup when tensor-parallel. Start-up
        reads as its steps: sizes, load the weights, plan the graphs, the input packer, warm
        up (activation peak), allocate the KV cache, the step state, capture the graphs."""
        o = self.options = options
        self._set_sizes(spec, device, group)
        self._init_token_buffers()  # before the warm-up: its forward records the upload event
        self.backend = select_backend(o.attention, self.device, o.block_size, self.kernels)
        self.model = self._build_model(o.weights_dir, o.seed, o.fused_ops, o.compile_ops)
        if group is not None:  # every rank loaded, before the first collective
            group.arrive("built")
        graph_sizes, buckets = self._plan_graphs()
        self.packer = self._make_packer(graph_sizes, buckets)
        if self.device.type == "cuda":  # warm up: JIT-compiles the kernels, measures the peak
            self._profile_peak_memory()
        self._allocate_kv(o.num_kv_blocks, o.gpu_memory_utilization)
        self._init_step_state()
        self.graphs = self.mixed_graphs = None
        if self.use_graphs:
            self._capture_graphs(graph_sizes, buckets)

    # ---- start-up: build the model (load weights), warm up, allocate KV, capture graphs -------

    def _set_sizes(self, spec: ModelSpec, device, group) -> None:
        """The model, device, dtype and sizes every later step reads; checks max_model_len."""
        o = self.options
        self.kernels = o.kernels
        self.spec, self.device, self.dtype = spec, torch.device(device), _dtype(o.dtype)
        self.group = group  # RankGroup when tensor-parallel, else None
        self.tp_rank, self.tp_size = (group.rank, group.size) if group else (0, 1)
        self.block_size, self.max_num_seqs = o.block_size, o.max_num_seqs
        self.max_model_len = o.max_model_len or spec.max_position_embeddings
        if o.block_size < 1 or self.max_model_len > spec.max_position_embeddings:
            raise ValueError(f"need block_size >= 1 and max_model_len <= {spec.max_position_embeddings}")

    def _plan_graphs(self) -> tuple[list[int], list[int]]:
        """(decode graph batch sizes, mixed graph token buckets): empty without CUDA graphs;
        mixed graphs need the triton backend's tile map."""
        o = self.options
        self.use_graphs = (self.device.type == "cuda" and not o.enforce_eager
                           and self.backend.supports_cuda_graphs)
        graph_sizes = graph_batch_sizes(self.max_num_seqs) if self.use_graphs else []
        tiles = getattr(self.backend, "supports_tile_map", False)
        use_mixed = self.use_graphs and tiles and (o.mixed_graphs is None or o.mixed_graphs)
        if o.mixed_graphs and not (self.use_graphs and tiles):
            raise ValueError(f"mixed_graphs needs CUDA graphs (not enforce_eager, a CUDA device) "
                             f"and the triton attention backend, not {self.backend.name}")
        buckets = mixed_token_buckets(o.max_num_batched_tokens, self.max_num_seqs) if use_mixed else []
        return graph_sizes, buckets

    def _make_packer(self, graph_sizes: list[int], buckets: list[int]) -> InputPacker:
        """One pinned host buffer and its device copy for every step's inputs, laid out for the
        largest decode graph and token bucket."""
        o = self.options
        max_width = -(-self.max_model_len // self.block_size)  # blocks of the longest sequence
        return InputPacker(self.device, self.block_size, o.max_num_batched_tokens, self.max_num_seqs,
                           max_width, max(graph_sizes, default=0), o.seed,
                           mixed_max_tokens=max(buckets, default=0),
                           tile_block_m=getattr(self.backend, "block_m", 64),
                           mixed_decode_kernel=self.kernels.mixed_decode_kernel)

    def _init_token_buffers(self) -> None:
        """The sampled tokens' pinned host copies and the upload event every forward uses."""
        cuda = self.device.type == "cuda"
        # two of each: a step launched ahead copies its tokens back while the host reads the last
        self._tokens_host = [torch.zeros(self.max_num_seqs, dtype=torch.int64, pin_memory=cuda)
                             for _ in range(2)]
        # the last upload's host-to-device copy is done (the host staging may be edited again)
        self._uploaded = torch.cuda.Event() if cuda else None

    def _init_step_state(self) -> None:
        """State the steps reuse: CUDA-event timers, the armed fast path, the step launched
        ahead, the rows a subset step keeps."""
        cuda = self.device.type == "cuda"
        g = self.packer.graph  # the decode graphs' input ids (int32 device view)
        self._graph_ids = None if g is None else g.dev[slice(*self.packer.graph_layout["input_ids"])]
        self._host_pool: HostKVPool | None = None
        self._timers = [StepTimer(self.device) for _ in range(2)]  # CUDA events, reused in turn
        self._slot = 0  # which timer / token buffer the last launch used
        # armed by a decode-graph step that sampled every row: (its block tables, its tokens,
        # its rows among those of the packer's last pack: None = the same rows)
        self._next: tuple[list, np.ndarray, list[int] | None] | None = None
        self._pending: _Launch | None = None  # the step launched ahead, all rows of the last
        self._rows_host = torch.zeros(self.max_num_seqs, dtype=torch.int64, pin_memory=cuda)
        self._rows_dev = self._rows_host.to(self.device)

    def _allocate_kv(self, num_kv_blocks: int | None, utilization: float) -> None:
        """The paged KV cache: num_kv_blocks, or as many as fit in ``utilization`` of the GPU
        after the warm-up's activation peak."""
        self.num_kv_blocks = num_kv_blocks or self._blocks_from_memory(utilization)
        self.kv_caches = allocate_kv_cache(self.spec, self.num_kv_blocks, self.block_size,
                                           self.dtype, self.device, self.tp_size)

    def _capture_graphs(self, graph_sizes: list[int], buckets: list[int]) -> None:
        """Decode CUDA graphs (one per padded batch size) and mixed ones (one per token bucket)."""
        h = self.spec.hidden_size
        with torch.inference_mode():
            self.graphs = DecodeGraphs(self.model, self.kv_caches, self.packer, graph_sizes, h,
                                       self.dtype, self.max_model_len, self.num_kv_blocks)
            if buckets:
                self.mixed_graphs = MixedGraphs(self.model, self.kv_caches, self.packer, buckets, h,
                                                self.dtype, self.num_kv_blocks)

    def _build_model(self, weights_dir, seed: int, fused_ops: bool | None, compile_ops: bool):
        """The Qwen3 model on the runner's device: fused Triton elementwise kernels (default on
        CUDA), or with compile_ops the torch paths under torch.compile (compiled before the
        warm-up and graph capture, which then run the compiled code)."""
        if compile_ops and fused_ops:
            raise ValueError("compile_ops runs the torch elementwise paths under torch.compile; "
                             "it replaces fused_ops (pass fused_ops=False or leave it unset)")
        fused = (self.device.type == "cuda" if fused_ops is None else fused_ops) and not compile_ops
        model = build_model(self.spec, self.backend, self.device, self.dtype, weights_dir, seed,
                            self.tp_rank, self.tp_size, fused=self.kernels if fused else None)
        if compile_ops:
            from nanosim.gpu.layers import compile_elementwise

            compile_elementwise(model, self.kernels.compile_backend)
        return model

    def _blocks_from_memory(self, utilization: float) -> int:
        if self.device.type != "cuda":
            raise ValueError("num_kv_blocks is required on CPU (KV sizing reads free GPU memory)")
        block_bytes = kv_block_bytes(self.spec, self.block_size, self.dtype, self.tp_size)
        n = blocks_from_memory(self.device, block_bytes, utilization)  # this rank's free memory
        if self.group is not None:  # every rank holds the same block ids: the smallest wins
            n = self.group.min_int(n, self.device)
        check_fits(n, self.block_size, self.max_model_len, block_bytes, utilization)
        return n

    @torch.inference_mode()
    def _profile_peak_memory(self) -> None:
        """Forward max_num_batched_tokens tokens (sequences of max_model_len, like nano-vLLM)
        and sample max_num_seqs rows, so the peak-memory stat covers a step's activations.
        A temporary one-layer cache, shared by all layers, stands in for the real KV cache."""
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        n_tok = self.packer.max_tokens
        seq_len = min(self.max_model_len, n_tok)
        n_seq = max(1, min(self.max_num_seqs, n_tok // seq_len))
        per_seq = -(-seq_len // self.block_size)
        kv = allocate_kv_cache(self.spec, n_seq * per_seq, self.block_size, self.dtype, self.device,
                               self.tp_size)[0]
        works = [SeqWork([0] * seq_len, 0, range(i * per_seq, (i + 1) * per_seq)) for i in range(n_seq)]
        inp = self.packer.pack(works, n_seq * per_seq)
        self._logits(inp, [kv] * self.spec.num_layers, None, n_seq)
        ones = torch.ones(self.max_num_seqs, device=self.device)
        logits = torch.zeros(self.max_num_seqs, self.spec.vocab_size, device=self.device)
        sample(logits, ones, ones.int(), ones * 0.9, ones * 0.5)
        del kv, logits
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()

    # ---- one step ------------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self, works: list[SeqWork], sample_tokens: bool = True) -> StepOutput:
        """Compute every SeqWork's tokens (prefill chunks and decodes, mixed in any order)
        and sample one token for each with samples=True. Decode-only batches that fit a
        captured size replay a decode graph, other batches of up to the largest token bucket
        a mixed graph; the rest run eagerly. TP workers pass sample_tokens=False (no tokens)."""
        t0 = time.perf_counter()
        self._drain()
        graph_bs = mixed = None
        if self.graphs is not None and all(len(w.token_ids) == 1 for w in works):
            graph_bs = self.graphs.batch_size_for(len(works))
        if graph_bs is None and self.mixed_graphs is not None:
            mixed = self.mixed_graphs.size_for(sum(len(w.token_ids) for w in works))
        self._next = None
        inp = self.packer.pack(works, self.num_kv_blocks, graph_bs, mixed)
        out = self._collect(self._launch(inp, graph_bs, len(works), mixed, sample_tokens, t0))
        if graph_bs is not None and sample_tokens and inp.num_samples == len(works):
            self._next = ([w.block_table for w in works], np.asarray(out.token_ids, dtype=np.int64), None)
        return out

    @property
    def can_step_next(self) -> bool:
        """A step_next may follow: the last step was a decode graph that sampled every row."""
        return self._next is not None

    @torch.inference_mode()
    def step_next(self, keep: list[int] | None = None, ahead: bool = False) -> StepOutput:
        """The decode step after the last one (see the module doc): rows ``keep`` of it (None:
        all) in that order, each fed its sampled token at the next position. The caller
        promises that each kept row's sequence advanced by exactly that token and that its
        block table (the same list object) holds the block a new position needs.
        ahead: also launch the step after this one for all of its rows before waiting for
        this one's tokens (the module doc's lookahead), when every block it needs is there."""
        t0 = time.perf_counter()
        if self._next is None:
            raise RuntimeError("step_next must follow a step() or step_next() of decode rows "
                               "replayed by a CUDA graph")
        (tables, tokens, base), self._next = self._next, None
        cur, self._pending = self._pending, None  # launched ahead: the packer's rows, one further
        if keep is not None:
            tables, tokens = [tables[i] for i in keep], tokens[keep]
        graph_bs = self.graphs.batch_size_for(len(tables))
        if not tables or graph_bs is None:
            raise ValueError(f"step_next needs 1..{self.graphs.sizes[-1]} rows, got {len(tables)}")
        # this step's rows among the rows of the packer's last pack (None: the same rows)
        sel = keep if base is None else (base if keep is None else [base[i] for i in keep])
        rows = sel  # ... and among cur's rows
        if cur is None:
            inp = self.packer.pack_next(tables, sel, tokens, self.num_kv_blocks, graph_bs)
            cur, rows, sel = self._launch(inp, graph_bs, len(tables), None, True, t0), None, None
        if ahead and self.packer.next_blocks_ready(tables, sel):
            if self._uploaded is not None:  # cur's inputs are on the device: the staging is free
                self._uploaded.synchronize()
            # cur's sampler wrote its ids where the graph reads input ids; a subset of its rows
            # (rows) is gathered there after the upload instead
            feed = None if rows is None else cur.ids[self._rows_on_device(rows)]
            inp = self.packer.pack_next(tables, sel, None, self.num_kv_blocks, graph_bs)
            self._pending, sel = self._launch(inp, graph_bs, len(tables), None, True, t0, feed), None
        out = self._collect(cur)
        ids = out.token_ids if rows is None else [out.token_ids[i] for i in rows]
        self._next = (tables, np.asarray(ids, dtype=np.int64), sel)
        return StepOutput(ids, out.duration_s, time.perf_counter() - t0, cur.t0 < t0)

    def _rows_on_device(self, rows: list[int]) -> torch.Tensor:
        """Row indices on the device, copied from a pinned buffer without waiting (a pageable
        copy would wait for the stream). The next use of the buffer comes after a wait for
        the upload that follows this copy on the stream."""
        n = len(rows)
        self._rows_host[:n].numpy()[:] = rows
        return self._rows_dev[:n].copy_(self._rows_host[:n], non_blocking=True)

    def _drain(self) -> None:
        """Wait out a step launched ahead that the caller did not take (its tokens unused)."""
        if self._pending is not None:
            self._pending.timer.wait()
            self._pending = None

    def _launch(self, inp: StepInputs, graph_bs, num_seqs: int, mixed, sample_tokens: bool,
                t0: float, feed: torch.Tensor | None = None) -> _Launch:
        """Upload, forward, sample and queue the tokens' copy back; does not wait.
        feed: (num_seqs,) device token ids that replace the uploaded input ids (lookahead)."""
        self._slot ^= 1
        timer = self._timers[self._slot].start()
        logits = self._logits(inp, self.kv_caches, graph_bs, num_seqs, mixed, feed)  # (S, V)
        out = self._tokens_host[self._slot][:inp.num_samples if sample_tokens else 0]
        ids = None
        if inp.num_samples and sample_tokens:
            # a decode-graph step's ids also go where the graph reads input ids: a step
            # launched ahead of the next one reads them there (its upload leaves them out)
            ids = sample(logits, inp.temperature, inp.top_k, inp.top_p, inp.u, inp.all_greedy,
                         inp.needs_sort, self._graph_ids if graph_bs is not None else None)
            out.copy_(ids, non_blocking=True)
        timer.record_end()
        return _Launch(ids, out, timer, t0)

    @staticmethod
    def _collect(launch: _Launch) -> StepOutput:
        """Wait for a launched step's tokens."""
        duration = launch.timer.wait()  # `host` is filled now
        return StepOutput(launch.host.tolist(), duration, time.perf_counter() - launch.t0)

    @torch.inference_mode()
    def logits(self, works: list[SeqWork]) -> torch.Tensor:
        """(S, vocab) logits of the sampling rows, computed eagerly (no graph, no sampling).
        Like step(), it writes the works' K/V into the cache. For parity checks."""
        self._drain()
        inp = self.packer.pack(works, self.num_kv_blocks)
        logits = self._logits(inp, self.kv_caches, None, len(works))
        if self.device.type == "cuda":  # the pinned inputs must not be repacked mid-copy
            torch.cuda.current_stream(self.device).synchronize()
        return logits

    def swap_kv(self, pairs: list[tuple[int, int]], to_host: bool, num_host_blocks: int) -> None:
        """Copy KV blocks (src, dst) to (to_host) or from the pinned host pool."""
        self._drain()
        if self._host_pool is None:
            self._host_pool = HostKVPool(self.kv_caches, num_host_blocks)
        self._host_pool.swap(pairs, to_host)

    def shard_summary(self) -> dict[str, tuple[tuple[int, ...], float, float]]:
        """{parameter name: (this rank's shape, sum, position-weighted sum)} in float64: a
        checksum of what each TP rank holds (the weighted sum also sees rows in a wrong order)."""
        out = {}
        for name, p in self.model.named_parameters():
            x = p.detach().double().flatten().cpu()
            w = torch.arange(1, x.numel() + 1, dtype=torch.float64) / x.numel()
            out[name] = (tuple(p.shape), float(x.sum()), float((x * w).sum()))
        return out

    def _logits(self, inp: StepInputs, kv_caches, graph_bs: int | None, num_seqs: int,
                mixed: int | None = None, feed: torch.Tensor | None = None) -> torch.Tensor:
        """Upload the packed inputs (then ``feed``, device token ids, over the first input
        ids), run the model (a decode or mixed graph, or eagerly) -> logits (S, V) of the
        sampling rows only (the LM head never sees the other rows)."""
        inp.upload()
        if self._uploaded is not None:
            self._uploaded.record()
        if feed is not None:
            inp.input_ids[:feed.numel()].copy_(feed)
        if graph_bs is not None:
            hidden = self.graphs.replay(graph_bs)[:num_seqs]  # one row per sequence
            if inp.num_samples == num_seqs:
                return self.model.compute_logits(hidden)
        elif mixed is not None:
            hidden = self.mixed_graphs.replay(mixed)  # (bucket, H); padding rows unused
        else:
            hidden = self.model(inp.input_ids, inp.positions, inp.meta, kv_caches)
        return self.model.compute_logits(hidden.index_select(0, inp.logits_indices))
