"""The canonical request: what every trace loader and generator produces.

A prompt is given either as token ids or only as a length. Requests that share a prefix
without real token ids carry ``prefix_blocks``: ids of fixed-size content blocks (Mooncake's
``hash_ids`` style) from which deterministic token ids are made on demand, so prefix caching
really happens at any ``block_size_tokens``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Token ids made up for content-block ids and length-only prompts stay below this, so they
# are valid for every Qwen3 vocabulary (151936) and for tiny test vocabularies above it.
SYNTH_VOCAB = 32000


@dataclass(frozen=True, slots=True)
class Request:
    request_id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int  # tokens to generate (sim: exact; real: max_tokens with ignore_eos)
    priority: int = 0  # lower value runs first (vLLM convention)
    prompt_token_ids: tuple[int, ...] | None = None
    # Shared-prefix description without token ids: content-block ids, each standing for
    # ``prefix_block_tokens`` tokens; the prompt's first len(ids)*size tokens (clipped to the
    # prompt) are made from them, the rest is unique to this request.
    prefix_blocks: tuple[int, ...] | None = None
    prefix_block_tokens: int = 512

    def __post_init__(self) -> None:
        if self.prompt_tokens < 1:
            raise ValueError(f"request {self.request_id}: prompt_tokens must be >= 1")
        if self.output_tokens < 1:
            raise ValueError(f"request {self.request_id}: output_tokens must be >= 1")
        if self.arrival_s < 0 or self.arrival_s != self.arrival_s:
            raise ValueError(f"request {self.request_id}: arrival_s must be a number >= 0")
        if self.prompt_token_ids is not None and len(self.prompt_token_ids) != self.prompt_tokens:
            raise ValueError(f"request {self.request_id}: {len(self.prompt_token_ids)} prompt "
                             f"token ids but prompt_tokens={self.prompt_tokens}")

    @property
    def has_content(self) -> bool:
        """True when the prompt's content (real or block-derived) is known, so blocks can hit."""
        return self.prompt_token_ids is not None or self.prefix_blocks is not None

    def token_ids(self) -> np.ndarray | None:
        """Prompt token ids as int32, or None for a length-only prompt (unique content)."""
        shared = self.shared_token_ids()
        if shared is None or self.prompt_token_ids is not None:
            return shared
        rest = self.prompt_tokens - len(shared)
        if rest > 0:
            shared = np.concatenate([shared, unique_tokens(self.request_id, rest)])
        return shared

    def shared_token_ids(self) -> np.ndarray | None:
        """The leading prompt token ids other requests may share, as int32: all of
        prompt_token_ids, or the prefix_blocks part (clipped to the prompt); None for a
        length-only prompt. The rest of a prefix_blocks prompt is unique to this request, so
        the simulator keys its blocks by the request (BlockManager.seq_hash) instead of
        drawing tokens for them."""
        if self.prompt_token_ids is not None:
            return np.asarray(self.prompt_token_ids, dtype=np.int32)
        if self.prefix_blocks is None:
            return None
        parts = [block_tokens(b, self.prefix_block_tokens) for b in self.prefix_blocks]
        if len(parts) == 1:  # one shared block (a system prompt): a read-only view of it
            return parts[0][: self.prompt_tokens]
        return np.concatenate(parts)[: self.prompt_tokens]


@lru_cache(maxsize=4096)  # shared prefixes ask for the same blocks again and again
def _block_tokens(block_id: int, n: int) -> np.ndarray:
    rng = np.random.default_rng([0x5EED, block_id])
    out = rng.integers(0, SYNTH_VOCAB, n, dtype=np.int32)
    out.flags.writeable = False  # shared by every caller
    return out


def block_tokens(block_id: int, n: int) -> np.ndarray:
    """Deterministic token ids standing for content block ``block_id`` (same id, same tokens;
    a read-only array)."""
    return _block_tokens(int(block_id), int(n))


def unique_tokens(request_id: int, n: int) -> np.ndarray:
    """Token ids for the request-unique part of a prompt."""
    rng = np.random.default_rng([0xC0FFEE, int(request_id)])
    return rng.integers(0, SYNTH_VOCAB, n, dtype=np.int32)
