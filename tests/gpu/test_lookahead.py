"""Async decoding on CPU: ModelRunner.step_next(ahead=True) launches the next decode step
before the tokens of this one are read, feeding it the sampled ids on the device. An engine
run with it must give exactly the tokens of one without it and of a runner with no fast path
at all, while rows finish (max_tokens and stop tokens), new requests join (the step launched
ahead is then ignored) and sequences are preempted.

CUDA graphs do not exist on CPU; EagerGraphs stands in for them: it runs the tiny fp32 model
eagerly on the fixed graph layout, as a replay would, so the runner's graph paths (packing
into that layout, step_next, lookahead) run here as they do on the GPU.
"""
from dataclasses import replace

import numpy as np
import pytest
import torch

from nanosim.config import EngineConfig, ModelSpec
from nanosim.core.engine import Engine
from nanosim.core.request import Request
from nanosim.gpu.backend import GpuBackend, SamplingParams
from nanosim.gpu.inputs import InputPacker
from nanosim.gpu.options import RunnerOptions
from nanosim.gpu.runner import ModelRunner

TINY = ModelSpec("tiny", hidden_size=32, num_layers=2, num_q_heads=2, num_kv_heads=1, head_dim=16,
                 intermediate_size=64, vocab_size=61, max_position_embeddings=128)
BS, MAX_SEQS, MAX_LEN = 4, 8, 64
SIZES = [1, 2, 4, 8]


class EagerGraphs:
    """The DecodeGraphs interface, computed eagerly from the graph layout's inputs."""

    def __init__(self, runner: ModelRunner) -> None:
        self.runner, self.sizes = runner, SIZES

    def batch_size_for(self, n: int) -> int | None:
        return next((s for s in self.sizes if s >= n), None)

    def replay(self, n: int) -> torch.Tensor:
        r = self.runner
        inp = r.packer._graph_inputs(n, n)
        lens = inp.meta.seq_lens.numpy()[:n].tolist()
        meta = replace(inp.meta, query_lens_host=[1] * n, seq_lens_host=lens, max_seq_len=max(lens))
        return r.model(inp.input_ids, inp.positions, meta, r.kv_caches)


def make_runner(graphs: bool, num_blocks: int) -> ModelRunner:
    r = ModelRunner(TINY, "cpu", RunnerOptions(dtype=torch.float32, block_size=BS, num_kv_blocks=num_blocks,
                    max_num_batched_tokens=64, max_num_seqs=MAX_SEQS, max_model_len=MAX_LEN, seed=3))
    if graphs:
        r.packer = InputPacker(r.device, BS, 64, MAX_SEQS, MAX_LEN // BS, max(SIZES), 3)
        r._graph_ids = r.packer.graph.dev[slice(*r.packer.graph_layout["input_ids"])]
        r.graphs = EagerGraphs(r)
    return r


def run_engine(graphs: bool, async_decode: bool, num_blocks: int = 48):
    runner = make_runner(graphs, num_blocks)
    backend = GpuBackend(runner, async_decode=async_decode)
    cfg = EngineConfig(block_size_tokens=BS, max_num_seqs=MAX_SEQS, max_num_batched_tokens=64,
                       max_model_len=MAX_LEN)
    eng = Engine(cfg, backend, num_blocks)
    rng = np.random.default_rng(5)
    arrivals = {0: 4, 9: 2, 20: 3}  # step -> new requests (their prefill ignores a step ahead)
    seqs, t, rid, ahead = [], 0.0, 0, 0
    calls = {"step": 0, "step_next": 0}
    for name in calls:
        def counted(*a, _f=getattr(runner, name), _n=name, **k):
            calls[_n] += 1
            return _f(*a, **k)
        setattr(runner, name, counted)
    for step in range(400):
        for _ in range(arrivals.get(step, 0)):
            p, o = int(rng.integers(3, 11)), int(rng.integers(6, 30))
            sp = SamplingParams(temperature=0.0 if rid % 2 else 0.8, max_tokens=o, seed=rid,
                                stop_token_ids=(7, 11))
            seqs.append(eng.add_request(Request(rid, t, p, o), o, sp))
            rid += 1
        if not eng.has_work:
            break
        ahead += runner._pending is not None
        t += eng.step(t)
    return [s.output_ids for s in seqs], [s.finish_reason for s in seqs], calls, ahead, eng


@pytest.mark.parametrize("num_blocks", [48, 13])  # 13 blocks: preemptions
def test_async_decode_gives_the_tokens_of_synchronous_decoding(num_blocks):
    ref, reasons, calls_ref, _, _ = run_engine(False, False, num_blocks)
    sync, _, calls_sync, ahead_sync, _ = run_engine(True, False, num_blocks)
    got, got_reasons, calls, ahead, eng = run_engine(True, True, num_blocks)
    assert sync == ref and got == ref and got_reasons == reasons
    assert calls_ref["step_next"] == 0 and calls_sync["step_next"] > 0
    # 4-token blocks: a row starts a block every 4th step, and no step goes ahead then
    assert ahead_sync == 0 and ahead >= 10 and calls["step_next"] > 20
    assert "stop" in reasons and "length" in reasons  # rows ended both ways
    if num_blocks == 13:
        assert eng.results()[0].preemptions.sum() > 0


def test_a_step_launched_ahead_is_ignored_by_a_different_next_step():
    r = make_runner(True, 48)
    from nanosim.gpu.inputs import SeqWork

    works = [SeqWork([5], 4, [0, 1], True), SeqWork([9], 0, [2], True)]  # room for 3 more
    first = r.step(works).token_ids
    second = r.step_next(ahead=True)
    assert r._pending is not None and second.ahead is False
    third = r.step_next([1], ahead=True)  # the second row only: served by the step ahead
    assert third.ahead and len(third.token_ids) == 1
    # a fresh runner without lookahead gives the same tokens
    ref = make_runner(True, 48)
    assert ref.step(works).token_ids == first
    assert ref.step_next().token_ids == second.token_ids
    assert ref.step_next([1]).token_ids == third.token_ids
    r.step([SeqWork([3, 4, 5], 0, [5], True)])  # not a continuation: the pending step is dropped
    assert r._pending is None and not r.can_step_next


def test_no_step_ahead_when_a_row_needs_a_block_it_does_not_have():
    from nanosim.gpu.inputs import SeqWork

    r = make_runner(True, 48)
    r.step([SeqWork([5], 2, [0], True)])  # position 2; the next is 3, the one after 4 = block 1
    r.step_next(ahead=True)  # computes position 3; ahead would be 4: not in the table
    assert r._pending is None
    r._next[0][0].append(1)  # the scheduler appends block 1
    r.step_next(ahead=True)
    assert r._pending is not None


def test_async_decode_is_refused_where_it_cannot_run():
    class NoLookahead:  # e.g. TPRunner: declares it cannot run a step ahead
        spec, supports_lookahead = TINY, False

    with pytest.raises(ValueError, match="single-GPU runner"):
        GpuBackend(NoLookahead(), async_decode=True)
