"""A request's life inside the engine: token counts, KV block table, status.

Decode sequences advance by one token per decode step. To keep per-step work independent
of the batch size, a decoding sequence does not store its length; it stores the length and
the decode clock at which it joined the ``DecodeGroup`` and derives its length from the
group's clock (see decode_group.py).
"""
from __future__ import annotations

from enum import Enum
from typing import Protocol

import numpy as np

from nanosim.core.request import Request

class DecodeClock(Protocol):
    """What a sequence reads of the decode group it is in (decode_group.DecodeGroup): the
    group's decode clock, steps taken since the group began."""

    clock: int


class Status(Enum):
    WAITING = "waiting"  # queued, never admitted or preempted by recompute
    RUNNING = "running"
    SWAPPED = "swapped"  # preempted by swap: KV blocks live in host memory
    FINISHED = "finished"
    REJECTED = "rejected"
    ABORTED = "aborted"  # ended early by the caller (a client went away); blocks freed


class Sequence:
    __slots__ = (
        "req", "seq_id", "status", "prompt_ids", "output_ids", "block_table", "host_blocks",
        "_computed", "num_cached_tokens", "num_preemptions", "first_token_s",
        "finish_s", "reject_reason", "_num_tokens", "group", "join_clock", "epoch",
        "admit_order", "stats_recorded", "hashes", "num_hashed_blocks", "max_tokens", "sampling", "finish_reason",
    )

    def __init__(self, req: Request, max_tokens: int | None = None, sampling=None) -> None:
        self.req = req
        self.seq_id = req.request_id
        self.status = Status.WAITING
        # int32 prompt ids, or None for a length-only prompt (content unique to this request);
        # in the simulator only the ids other requests may share (Request.shared_token_ids:
        # the tokens past them are unique to this request)
        self.prompt_ids: np.ndarray | None = None
        self.output_ids: list[int] | None = None  # real mode only; sim leaves tokens unmodeled
        self.block_table: list[int] = []
        self.host_blocks: list[int] = []
        self.hashes: list[int] = []  # chained hashes of full blocks, computed on demand
        self.num_hashed_blocks = 0  # leading block_table entries known to carry a hash
        self._computed = 0  # tokens whose KV is in the cache (derived while decoding)
        self.num_cached_tokens = 0  # prefix-cache hit at first admission (tokens)
        self.num_preemptions = 0
        self.first_token_s: float | None = None
        self.finish_s: float | None = None
        self.reject_reason = ""
        self.finish_reason = ""
        self._num_tokens = req.prompt_tokens
        self.group: DecodeClock | None = None
        self.join_clock = 0
        self.epoch = 0  # bumped whenever the sequence leaves the decode group (stale heap entries)
        self.admit_order = 0
        self.stats_recorded = False
        self.max_tokens = max_tokens if max_tokens is not None else req.output_tokens
        self.sampling = sampling  # opaque to the core; the GPU backend reads it

    # ---- token counts ---------------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        """Prompt + generated tokens, including the last sampled one (not yet in the cache)."""
        g = self.group
        if g is None:
            return self._num_tokens
        return self._num_tokens + g.clock - self.join_clock

    @property
    def num_computed_tokens(self) -> int:
        return self._computed if self.group is None else self.num_tokens - 1

    @num_computed_tokens.setter
    def num_computed_tokens(self, value: int) -> None:
        self._computed = value

    @property
    def num_output_tokens(self) -> int:
        return self.num_tokens - self.req.prompt_tokens

    def freeze(self) -> None:
        """Leave the decode group: store the derived length explicitly."""
        if self.group is not None:
            self._num_tokens = self.num_tokens
            self._computed = self._num_tokens - 1
            self.group = None
            self.epoch += 1

    def append_token(self, token_id: int | None) -> None:
        """A token was sampled outside the decode group (after a prefill's last chunk)."""
        assert self.group is None
        self._num_tokens += 1
        if token_id is not None and self.output_ids is not None:
            self.output_ids.append(token_id)

    # ---- content for block hashing ----------------------------------------------------
    def block_tokens(self, i: int, block_size: int) -> np.ndarray | None:
        """Token ids of full block i, or None when any of them is unknown (unique content)."""
        lo, hi = i * block_size, (i + 1) * block_size
        p = self.req.prompt_tokens
        ids = self.prompt_ids
        if ids is None or (hi > len(ids) and len(ids) < p):  # past the known (shared) ids
            return None
        if hi <= p:
            return ids[lo:hi]
        if self.output_ids is None:
            return None
        if lo >= p:
            return np.asarray(self.output_ids[lo - p:hi - p], dtype=np.int32)
        return np.concatenate([self.prompt_ids[lo:], np.asarray(self.output_ids[: hi - p], np.int32)])

    def __repr__(self) -> str:  # pragma: no cover
        return (f"Seq({self.seq_id}, {self.status.value}, tokens={self.num_tokens}, "
                f"computed={self.num_computed_tokens}, blocks={self.block_table})")
