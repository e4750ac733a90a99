"""Keys of KV blocks in the prefix cache (block_manager.py): chained content hashes, keys of
a sequence's own (unknown) content, and the hashes of shared prefixes made once.

* content: xxh64 over (parent key as 8 bytes LE, the block's token ids as int32 bytes);
  digests are >= 0.
* own content (a length-only prompt, the unique part of a prefix_blocks prompt, generated
  tokens in sim mode): -1 - (seq_id << 32 | block), unique to (sequence, block) and < 0, so
  it never equals a content hash.
"""
from __future__ import annotations

import xxhash

from nanosim.core.request import Request

_CHAINS = 4096  # shared prefixes whose hashes a SharedChains keeps before it starts over


def chain(parent: int | None, payload: bytes) -> int:
    """Content key of a block: its token ids' bytes after the parent block's key."""
    h = xxhash.xxh64()
    if parent is not None:
        h.update((parent & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))  # own keys are < 0
    h.update(payload)
    return h.intdigest()


def own_keys(seq_id: int, lo: int, hi: int) -> range:
    """Keys of a sequence's blocks lo..hi-1 whose content is its own (blocks < 2**32)."""
    key0 = -1 - (seq_id << 32)
    return range(key0 - lo, key0 - hi, -1)


class SharedChains:
    """Chained hashes of the full blocks of ``Request.shared_token_ids()`` for requests
    whose shared ids are made from prefix_blocks (no token ids): the same for every request
    with those blocks, so made once per (prefix_blocks, their size, full blocks) instead of
    per admission or arrival. Cleared when it holds _CHAINS prefixes (traces whose requests
    carry prefix_blocks of their own would grow it without bound)."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._chains: dict[tuple, list[int]] = {}

    def get(self, req: Request) -> list[int]:
        """The hashes (a list the caller must not modify)."""
        bs = self.block_size
        m = min(req.prompt_tokens, len(req.prefix_blocks) * req.prefix_block_tokens) // bs
        key = (req.prefix_blocks, req.prefix_block_tokens, m)
        hashes = self._chains.get(key)
        if hashes is None:
            ids, hashes, h = req.shared_token_ids(), [], None
            for j in range(m):
                h = chain(h, ids[j * bs:(j + 1) * bs].tobytes())
                hashes.append(h)
            if len(self._chains) >= _CHAINS:
                self._chains.clear()
            self._chains[key] = hashes
        return hashes
