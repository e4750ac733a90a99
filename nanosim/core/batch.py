"""The seam between the engine and the hardware: what one step computes, and its result.

``StepShape`` is all a cost model needs (counts only). ``ScheduledBatch`` adds the sequences
themselves for a backend that runs real tokens. ``Backend`` is the protocol both implement.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from nanosim.core.sequence import Sequence


PACKED, STEADY, SUBSET = "packed", "steady", "subset"  # StepShape.decode_path values
DECODE_PATHS = (PACKED, STEADY, SUBSET)


def decode_path_after(prev_decode_rows: int, rows: int) -> str:
    """The path of a decode-only step of ``rows`` rows after a step with ``prev_decode_rows``
    (0 when that step was not decode-only: it had a prefill, or no decode rows). Decode rows
    only leave between decode-only steps (a sequence joins decoding after its last prefill
    chunk, or with a swap-in), so fewer rows are a subset of the previous step's."""
    if rows > prev_decode_rows:
        return PACKED
    return SUBSET if rows < prev_decode_rows else STEADY


def decode_rows_after(shape: "StepShape") -> int:
    """What ``decode_path_after`` needs of a step to decide the next one's path: its decode
    rows when it was decode-only (swaps allowed: the runner's decode graph still ran), else 0."""
    if shape.prefill_tokens or shape.num_prefill_seqs:
        return 0
    return shape.num_decode_seqs


def with_decode_paths(shapes) -> list["StepShape"]:
    """``shapes`` (consecutive steps of one engine, in order) with the decode path each took,
    decided as the scheduler does: for step shapes recorded without it."""
    out, prev = [], 0
    for s in shapes:
        path = PACKED if s.swap_blocks or decode_rows_after(s) == 0 else \
            decode_path_after(prev, s.num_decode_seqs)
        out.append(s if s.decode_path == path else replace(s, decode_path=path))
        prev = decode_rows_after(s)
    return out


@dataclass(frozen=True, slots=True)
class StepShape:
    """Counts describing one engine step (both modes).

    prefill_tokens        tokens computed by prefill chunks this step
    prefill_attn_pairs    sum over chunks of causal (query, key) pairs: q * (ctx_before + (q + 1) / 2)
    prefill_kv_tokens     sum over chunks of KV tokens read (ctx_before + q)
    decode_context_tokens sum over decode sequences of KV tokens attended (incl. the new token)
    swap_blocks           KV blocks copied between GPU and host this step (in + out)
    decode_max_context_tokens  the longest decode sequence's KV tokens (0: not known; cost
                          models then take every sequence at the mean context)
    decode_path           how the runner gets this step's decode rows onto the GPU (one of
                          DECODE_PATHS, decided by the scheduler from the previous step:
                          ``decode_path_after``): PACKED, inputs packed anew (any step with a
                          prefill or swaps, the first decode step after one, or a decode step
                          with a row new to decoding); STEADY, the previous step's inputs
                          edited in place (the same rows decoded in the previous step, which
                          was decode-only); SUBSET, that edit dropping the rows that left (a
                          sequence finished or was preempted). Cost models price from this,
                          never from the order of their calls.
    """

    num_prefill_seqs: int = 0
    prefill_tokens: int = 0
    prefill_attn_pairs: float = 0.0
    prefill_kv_tokens: int = 0
    num_decode_seqs: int = 0
    decode_context_tokens: int = 0
    swap_blocks: int = 0
    decode_max_context_tokens: int = 0
    decode_path: str = "packed"

    @property
    def num_tokens(self) -> int:
        return self.prefill_tokens + self.num_decode_seqs

    @property
    def num_seqs(self) -> int:
        return self.num_prefill_seqs + self.num_decode_seqs


def _shape_setters():
    """The slot descriptors' setters of StepShape's fields, in field order."""
    from dataclasses import fields
    return tuple(StepShape.__dict__[f.name].__set__ for f in fields(StepShape))


def make_shape(num_prefill_seqs: int, prefill_tokens: int, prefill_attn_pairs: float,
               prefill_kv_tokens: int, num_decode_seqs: int, decode_context_tokens: int,
               swap_blocks: int, decode_max_context_tokens: int, decode_path: str,
               _new=object.__new__, _set=_shape_setters()) -> StepShape:
    """StepShape(...) of these fields (positional, field order; no defaults, no checks): the
    same object, built by the slots' setters (~0.5 us) instead of the frozen dataclass's
    __init__, which goes through object.__setattr__ once per field (~1 us). The scheduler
    builds one per stepped step."""
    s = _new(StepShape)
    a, b, c, d, e, f, g, h, i = _set
    a(s, num_prefill_seqs)
    b(s, prefill_tokens)
    c(s, prefill_attn_pairs)
    d(s, prefill_kv_tokens)
    e(s, num_decode_seqs)
    f(s, decode_context_tokens)
    g(s, swap_blocks)
    h(s, decode_max_context_tokens)
    i(s, decode_path)
    return s


@dataclass(slots=True)
class PrefillChunk:
    seq: "Sequence"
    start: int  # first position computed this step (tokens before it are in the KV cache)
    num_tokens: int  # tokens computed this step

    @property
    def is_last(self) -> bool:
        """The chunk reaches the end of the known tokens, so a token is sampled after it."""
        return self.start + self.num_tokens == self.seq.num_tokens


@dataclass(slots=True)
class ScheduledBatch:
    """One step's work. Decode sequences compute one token each: their last one."""

    shape: StepShape
    prefills: list[PrefillChunk] = field(default_factory=list)
    decodes: list["Sequence"] = field(default_factory=list)
    swap_in: list[tuple[int, int]] = field(default_factory=list)  # (host block, gpu block)
    swap_out: list[tuple[int, int]] = field(default_factory=list)  # (gpu block, host block)

    @property
    def empty(self) -> bool:
        return self.shape.num_seqs == 0


@dataclass(slots=True)
class StepResult:
    duration_s: float
    # Sampled token per sequence that produces one this step (decodes and last prefill chunks),
    # in batch order: prefills first, then decodes. None in sim mode (tokens are not modeled).
    token_ids: list[int] | None = None
    # real mode: the step's device time (CUDA events from its input upload to its tokens'
    # copy back; the runner's StepOutput.duration_s), so host time = duration_s - gpu_s.
    # None in sim mode.
    gpu_s: float | None = None


@dataclass(frozen=True, slots=True)
class BackendCaps:
    """What a backend offers beyond execute(), declared (the engine reads these, never probes)."""

    # real tokens: the scheduler lists every decode sequence each step and sequences keep
    # their output ids (the GPU backend); off, decodes are counted in the decode group only
    needs_tokens: bool = False
    # decode_run_s(num_seqs, context_tokens, num_steps, max_context_tokens, first_path) prices
    # a run of decode-only steps at once, so Engine.fast_forward may advance it in one move (sim)
    decode_runs: bool = False


class Backend(Protocol):
    caps: BackendCaps

    def execute(self, batch: ScheduledBatch) -> StepResult: ...


class RunBackend(Backend, Protocol):
    """A backend with caps.decode_runs: durations (np.ndarray, s) of a decode-only run, the
    same as executing its steps one by one (see CostModel.decode_run_s)."""

    def decode_run_s(self, num_seqs: int, context_tokens: int, num_steps: int,
                     max_context_tokens: int = 0, first_path: str = PACKED, start_s: float = 0.0,
                     until_s: float = float("inf")):
        """until_s: the durations may stop after the first step that starts at or after it
        (starts summed from start_s left to right): the engine uses none after that one."""
        ...


class CostModel(Protocol):
    """Predicts step durations from counts alone (the sim backend's engine): a pure function
    of the shape (the same price whoever asks, in any order; no state carried between calls
    but memos and counters)."""

    name: str

    def step_time_s(self, shape: StepShape) -> float: ...

    def decode_run_s(self, num_seqs: int, context_tokens: int, num_steps: int,
                     max_context_tokens: int = 0, first_path: str = PACKED):
        """Durations (np.ndarray, seconds) of ``num_steps`` decode-only steps of ``num_seqs``
        sequences whose summed context is ``context_tokens`` at the first step and grows by
        ``num_seqs`` per step; the longest sequence's is ``max_context_tokens`` and grows by
        1 (0: not known). The first step takes ``first_path`` (a StepShape.decode_path), the
        others STEADY. Must equal calling step_time_s on each step's shape, in any order."""
        ...
