"""Per-request sampling options, vLLM's names; no torch here (``from nanosim import
SamplingParams`` does not load the GPU runner)."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling (vLLM names). temperature 0 = greedy; top_k <= 0 and top_p 1 off."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_tokens: int = 64
    ignore_eos: bool = False
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None
    min_tokens: int = 0  # stop tokens do not end the request before this many outputs
    eos_token_id: int | None = field(default=None, repr=False)  # filled from the model

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_tokens < 1:
            raise ValueError(f"bad SamplingParams: temperature >= 0, 0 < top_p <= 1, max_tokens >= 1 "
                             f"({self.temperature}, {self.top_p}, {self.max_tokens})")

    @cached_property  # read per sampled token by the scheduler: built once
    def stop_ids(self) -> frozenset[int]:
        ids = set(self.stop_token_ids)
        if not self.ignore_eos and self.eos_token_id is not None:
            ids.add(self.eos_token_id)
        return frozenset(ids)
