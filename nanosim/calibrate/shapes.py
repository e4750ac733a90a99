"""Step compositions to measure: the grid a profile covers, and how to build each step.

A point is a ``Composition``: ``num_decodes`` decode sequences at ``decode_context`` tokens
each, plus ``num_prefills`` prefill chunks of ``chunk`` tokens after ``cached`` cached ones.
Its StepShape is what the cost model sees; ``works(...)`` turns it into runner SeqWorks
with distinct KV blocks (so no point reads the same blocks twice from L2).
"""
from __future__ import annotations

from dataclasses import dataclass

from nanosim.core.batch import StepShape

# batch sizes when the runner has no decode CUDA graphs; with them, their sizes (the split
# count of the decode kernel, and so its time, changes between powers of two)
DECODE_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
DECODE_CONTEXTS = (128, 512, 1024, 2048, 4096)
# skewed decode points: one row at each long context, the others at the short one (how much
# a lone long row holds a step up; at small batches the decode kernel waits for it)
SKEW_SHORT, SKEW_LONG = 128, (1024, 4096)
# half-long points (batches of >= 4 rows): half the rows at 3x the other half's context (the
# tail a spread of long rows adds to a loaded kernel, as in serving's batches)
HALF_SHORT = (512, 1024)
# padded points (with CUDA graphs): batches of the size midway between two graph sizes,
# which run padded to the larger one (the padding rows attend nothing), half their rows at
# 3x the other half's context: serving's usual batch is both padded and spread (uniform
# padded batches cost no tail on our H100, yet padded spread ones in replays did)
# chunk sizes when the runner has no mixed CUDA graphs; with them, their token buckets
# (a step runs padded to its bucket, so the time is a step function of the bucket)
PREFILL_CHUNKS = (16, 64, 256, 1024, 2048, 4096, 8192)
PREFILL_CACHED = (0, 1024, 4096)
MIXED = tuple((b, c, n, q, p) for b in (8, 64, 192) for c in (512, 2048)
              for n, q, p in ((1, 256, 0), (1, 2048, 0), (2, 1024, 1024), (4, 512, 0)))
# what decode rows add to a step with one prefill chunk (the cost model's decode-rows grid)
MIXED += tuple((b, c, 1, 256, 0) for b in (1, 2, 4, 16, 32) for c in (128, 512, 2048, 4096))
MIXED += tuple((b, c, 1, 256, 0) for b in (8, 64, 192) for c in (128, 4096))


@dataclass(frozen=True)
class Composition:
    num_decodes: int = 0
    decode_context: int = 0  # tokens each decode attends (incl. the one computed)
    num_prefills: int = 0
    chunk: int = 0
    cached: int = 0
    long_context: int = 0  # > 0: the first long_rows decode rows attend this many (skewed)
    long_rows: int = 1

    def _contexts(self) -> list[int]:
        ctx = [self.decode_context] * self.num_decodes
        if self.long_context and ctx:
            ctx[:self.long_rows] = [self.long_context] * min(self.long_rows, len(ctx))
        return ctx

    @property
    def shape(self) -> StepShape:
        n, q, p = self.num_prefills, self.chunk, self.cached
        ctx = self._contexts()
        return StepShape(num_prefill_seqs=n, prefill_tokens=n * q,
                         prefill_attn_pairs=n * q * (p + (q + 1) / 2), prefill_kv_tokens=n * (p + q),
                         num_decode_seqs=self.num_decodes, decode_context_tokens=sum(ctx),
                         decode_max_context_tokens=max(ctx, default=0))

    def blocks_needed(self, block_size: int) -> int:
        per_prefill = -(-(self.cached + self.chunk) // block_size)
        return sum(-(-c // block_size) for c in self._contexts()) + self.num_prefills * per_prefill

    def tokens(self) -> int:
        return self.num_prefills * self.chunk + self.num_decodes

    def works(self, block_size: int, work_cls, token: int = 7) -> list:
        """Prefill chunks first, then decodes (the engine's batch order)."""
        out, nxt = [], 0

        def blocks(n_tokens: int) -> list[int]:
            nonlocal nxt
            n = -(-n_tokens // block_size)
            nxt += n
            return list(range(nxt - n, nxt))

        for _ in range(self.num_prefills):
            out.append(work_cls([token] * self.chunk, self.cached, blocks(self.cached + self.chunk), True))
        for c in self._contexts():
            out.append(work_cls([token], c - 1, blocks(c), True))
        return out


def default_grid(max_blocks: int, block_size: int, max_tokens: int, max_seqs: int,
                 max_model_len: int, chunks: tuple[int, ...] = PREFILL_CHUNKS,
                 batches: tuple[int, ...] = DECODE_BATCHES,
                 padded: bool = False) -> tuple[list, list, list]:
    """(decode (B, ctx) pairs and (B, short ctx, long ctx[, long rows]) skewed points, with
    ``padded`` (batches are CUDA-graph sizes) half-long ones of B between two sizes; prefill
    (chunk, cached) pairs; mixed Compositions) that fit."""
    def fits(c: Composition) -> bool:
        longest = max(c.decode_context, c.long_context, c.cached + c.chunk)
        return (c.blocks_needed(block_size) <= max_blocks and c.tokens() <= max_tokens
                and c.num_decodes + c.num_prefills <= max_seqs and longest <= max_model_len)

    decode = [(b, c) for b in batches for c in DECODE_CONTEXTS
              if fits(Composition(num_decodes=b, decode_context=c))]
    decode += [(b, SKEW_SHORT, m) for b in batches if b > 1 for m in SKEW_LONG
               if fits(Composition(num_decodes=b, decode_context=SKEW_SHORT, long_context=m))]
    decode += [(b, c, 3 * c, b // 2) for b in batches if b >= 4 for c in HALF_SHORT
               if fits(Composition(num_decodes=b, decode_context=c, long_context=3 * c, long_rows=b // 2))]
    if padded:
        sizes = sorted(batches)
        mids = [(lo + hi + 1) // 2 for lo, hi in zip(sizes, sizes[1:]) if hi - lo >= 2]
        decode += [(n, c, 3 * c, n // 2) for n in mids if n >= 3 for c in HALF_SHORT
                   if fits(Composition(num_decodes=n, decode_context=c, long_context=3 * c,
                                       long_rows=n // 2))]
    prefill = [(q, p) for q in chunks for p in PREFILL_CACHED
               if fits(Composition(num_prefills=1, chunk=q, cached=p))]
    mixed = [Composition(b, c, n, q, p) for b, c, n, q, p in MIXED
             if fits(Composition(b, c, n, q, p))]
    return decode, prefill, mixed
