"""Paged KV-cache block manager with prefix caching (vLLM v1 semantics).

* Full blocks are content-addressed by a chained xxh64: hash(parent hash as 8 bytes LE,
  token ids as int32 bytes). A block whose tokens are unknown (a length-only prompt, or
  generated tokens in sim mode) gets a hash unique to (request, block index), so it is
  reusable only by the same request after a preemption (block_keys.py). A shared prefix's
  hashes (prefix_blocks) are made once per block manager, not per sequence.
* Full blocks are hashed when allocated (a later request in the same step can hit them).
  Blocks filled by decode steps are hashed lazily, at the sequence's next allocation or
  free, which differs from vLLM only for a lookup made in between by a prompt containing
  that sequence's generated tokens.
* Every physical block is kept under its hash (hash -> {block id}, insertion order): two
  blocks can hold the same content (an exact-multiple prompt recomputes its last block), and
  evicting one copy leaves the other reachable. A lookup takes the first copy (vLLM's
  BlockHashToBlockMap.get_one_block).
* Free queue (head = next evicted): a request's blocks are freed tail-first; of those that
  reach ref 0, the unhashed ones are put at the head as one group in that order and the
  hashed ones appended at the tail (LRU), as vLLM's BlockPool.free_blocks does with
  prepend_n / append_n. With caching off every block is unhashed, so the most recently freed
  request's blocks are reused first, tail before head. A hit on a free block removes it from
  the queue; a reused block loses its old hash.
* A hit never covers the last prompt token (max hit = num_tokens - 1, whole blocks).
* reset_prefix_cache() drops every hash, and only when no block is held (vLLM's
  BlockPool.reset_prefix_cache returns False otherwise). docs/vllm-parity.md cites sources.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from itertools import islice

from nanosim.core.block_keys import SharedChains, chain, own_keys
from nanosim.core.cache_stats import PrefixCacheStats
from nanosim.core.request import Request
from nanosim.core.sequence import Sequence

class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, num_host_blocks: int = 0,
                 enable_caching: bool = True) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"need num_blocks >= 1 and block_size >= 1, got {num_blocks}, {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_caching = enable_caching
        self.ref = [0] * num_blocks
        self.block_hash: list[int | None] = [None] * num_blocks
        self.free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self.cached: dict[int, dict[int, None]] = {}  # hash -> {block id: None}, every copy
        self.num_host_blocks = num_host_blocks
        self.host_free = list(range(num_host_blocks - 1, -1, -1))  # stack, pops 0 first
        self.stats = PrefixCacheStats()  # one record per admission (see record_admission)
        self.stats_reset = False  # set by reset_prefix_cache, cleared by the metrics recorder
        self._chains = SharedChains(block_size)  # shared prefixes' hashes (shared_chain)

    # ---- queries ----------------------------------------------------------------------
    @property
    def num_free(self) -> int:
        return len(self.free)

    @property
    def num_used(self) -> int:
        return self.num_blocks - len(self.free)

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def seq_hash(self, seq: Sequence, i: int) -> int:
        """Chained hash of the sequence's full block i (cached in seq.hashes)."""
        hashes = seq.hashes
        if len(hashes) > i:
            return hashes[i]
        req = seq.req
        if not hashes and req.prompt_token_ids is None and req.prefix_blocks is not None \
                and seq.prompt_ids is not None:  # prompt ids made from the request's blocks
            hashes.extend(self.shared_chain(req))
            if len(hashes) > i:
                return hashes[i]
        last = i + 1  # blocks hashed one by one, from their content
        if seq.output_ids is None:  # no generated tokens known (sim): every block past the
            # known prompt ids has unknown content, so its key is made in one go (below)
            ids = seq.prompt_ids
            last = min(last, 0 if ids is None else len(ids) // self.block_size)
        while len(hashes) < last:
            j = len(hashes)
            toks = seq.block_tokens(j, self.block_size)
            if toks is None:
                # unknown content: a key unique to (request, block), negative so that it
                # never equals a content hash (xxh64 digests are >= 0)
                hashes.append(-1 - ((seq.seq_id << 32) | j))  # = own_keys (j < 2**32)
            else:
                hashes.append(chain(hashes[-1] if hashes else None, toks.tobytes()))
        if len(hashes) <= i:  # the same keys for blocks len(hashes)..i
            hashes.extend(own_keys(seq.seq_id, len(hashes), i + 1))
        return hashes[i]

    def shared_chain(self, req: Request) -> list[int]:
        """Hashes of the full blocks of a prefix_blocks request's shared ids, made once
        (block_keys.SharedChains; do not modify the list)."""
        return self._chains.get(req)

    def prefix_keys(self, seq: Sequence) -> list[int]:
        """Hashes of the blocks a lookup of ``seq`` may hit (whole blocks, at most
        num_tokens - 1 tokens); none when caching is off or its content is unknown and it
        has cached nothing yet (its keys are its own)."""
        if not self.enable_caching or (seq.prompt_ids is None and seq.num_preemptions == 0):
            return []
        n = (seq.num_tokens - 1) // self.block_size
        if n <= 0:
            return []
        hashes = seq.hashes
        if len(hashes) < n:
            self.seq_hash(seq, n - 1)
        return hashes[:n]

    def shared_prefix_keys(self, seq_id: int, num_tokens: int, shared: list[int]) -> list[int]:
        """prefix_keys of a fresh sequence (not preempted, no output ids) whose known ids
        are its first ``len(shared) * block_size`` tokens or a part of the next block,
        ``shared`` the hashes of those full blocks: the keys without the sequence (the
        prefix router asks this at every arrival; the shared hashes are made once)."""
        if not self.enable_caching:
            return []
        n = (num_tokens - 1) // self.block_size
        if n <= len(shared):
            return shared[:max(n, 0)]
        return shared + list(own_keys(seq_id, len(shared), n))

    def lookup(self, seq: Sequence) -> list[int]:
        """Cached blocks covering the longest prefix of ``seq`` (at most num_tokens - 1 tokens)."""
        hits, cached = [], self.cached
        for h in self.prefix_keys(seq):
            copies = cached.get(h)
            if not copies:
                break
            hits.append(next(iter(copies)))
        return hits

    def num_hit_blocks(self, keys: list[int], num_taken: int | Callable[[], int] = 0) -> int:
        """len(lookup_after(seq, num_taken)) from seq's ``prefix_keys``, without listing the
        blocks (routers ask this of replicas at every arrival, the keys made once).
        ``num_taken`` may be a function, asked only when a hit has every copy in the free
        queue: a copy in use is never taken, so otherwise the taken blocks change nothing."""
        cached = self.cached
        n = 0
        for h in keys:  # a hash maps to at least one copy while in the map
            if h not in cached:
                break
            n += 1
        if not n or not num_taken:
            return n
        free = self.free.keys()
        for i in range(n):
            if cached[keys[i]].keys() <= free:
                break
        else:
            return n
        if callable(num_taken):
            num_taken = num_taken()
            if not num_taken:
                return n
        taken = set(islice(self.free, num_taken))
        for i in range(n):
            if cached[keys[i]].keys() <= taken:  # every copy taken: the hits stop here
                return i
        return n

    def lookup_after(self, seq: Sequence, num_taken: int) -> list[int]:
        """The lookup as it will be once the next ``num_taken`` blocks are taken from the
        free queue's head (decode block appends, nothing freed in between): a copy taken is
        evicted, so a hash hits on its first copy left, and the hits stop at a hash with
        none. (Lazy cluster replicas report a pending decode run's cache this way.)"""
        if not num_taken:
            return self.lookup(seq)
        keys = self.prefix_keys(seq)
        if not keys:
            return []
        taken = set(islice(self.free, num_taken))
        hits, cached = [], self.cached
        for h in keys:
            copies = cached.get(h)
            b = next((c for c in copies if c not in taken), None) if copies else None
            if b is None:
                break
            hits.append(b)
        return hits

    def can_allocate(self, seq: Sequence, num_slots: int, hits: list[int] = ()) -> bool:
        need = self.blocks_for(num_slots) - len(seq.block_table) - len(hits)
        free_hits = sum(1 for b in hits if self.ref[b] == 0)
        return need <= len(self.free) - free_hits

    # ---- mutations --------------------------------------------------------------------
    def allocate(self, seq: Sequence, num_slots: int,
                 hits: list[int] = ()) -> bool:
        """Give ``seq`` blocks for its first ``num_slots`` tokens (hits first). All or nothing."""
        if not self.can_allocate(seq, num_slots, hits):
            return False
        table = seq.block_table
        for b in hits:
            if self.ref[b] == 0:
                del self.free[b]
            self.ref[b] += 1
            table.append(b)
        n = self.blocks_for(num_slots) - len(table)
        if n == 1:
            table.append(self._take_free())
        elif n > 1:
            table.extend(self._take_free_n(n))
        self.cache_full_blocks(seq, num_slots)
        return True

    def append_block(self, seq: Sequence) -> bool:
        """One more block for a decoding sequence; hashes the blocks it has filled."""
        if not self.free:
            return False
        self.cache_full_blocks(seq, len(seq.block_table) * self.block_size)
        seq.block_table.append(self._take_free())
        return True

    def _take_free(self) -> int:
        b, _ = self.free.popitem(last=False)
        h = self.block_hash[b]
        if h is not None:  # evict this copy: the block's old content is no longer here
            copies = self.cached[h]
            del copies[b]
            if not copies:
                del self.cached[h]
            self.block_hash[b] = None
        self.ref[b] = 1
        return b

    def _take_free_n(self, n: int) -> list[int]:
        """n blocks from the free queue's head, in order (``_take_free`` n times)."""
        free, block_hash, cached, ref = self.free, self.block_hash, self.cached, self.ref
        out = []
        for _ in range(n):
            b, _ = free.popitem(last=False)
            h = block_hash[b]
            if h is not None:  # evict this copy (see _take_free)
                copies = cached[h]
                del copies[b]
                if not copies:
                    del cached[h]
                block_hash[b] = None
            ref[b] = 1
            out.append(b)
        return out

    def cache_full_blocks(self, seq: Sequence, num_tokens: int) -> None:
        """Register the hashes of seq's blocks that are full within its first num_tokens."""
        if not self.enable_caching:
            return
        table = seq.block_table
        full = min(num_tokens // self.block_size, len(table))
        lo = seq.num_hashed_blocks
        if full <= lo:
            return
        hashes = seq.hashes
        if len(hashes) < full:
            self.seq_hash(seq, full - 1)
        block_hash, cached = self.block_hash, self.cached
        for i in range(lo, full):
            b = table[i]
            if block_hash[b] is None:
                h = hashes[i]
                block_hash[b] = h
                copies = cached.get(h)
                if copies is None:
                    cached[h] = {b: None}
                else:
                    copies[b] = None
        seq.num_hashed_blocks = full

    def free_seq(self, seq: Sequence) -> None:
        """Release seq's blocks, tail first (so its tail is evicted before its prefix root).
        Unhashed blocks that reach ref 0 go to the head as one group, in that order
        (prepend_n); hashed ones to the tail (append_n). Source: vLLM
        single_type_kv_cache_manager.free (reversed blocks) and block_pool.free_blocks
        (prepend_n / append_n, PR #42656; with caching off prepend again since PR #51482)."""
        self.cache_full_blocks(seq, seq.num_computed_tokens)
        unhashed = []
        ref, block_hash, free = self.ref, self.block_hash, self.free
        for b in reversed(seq.block_table):
            r = ref[b] = ref[b] - 1
            if r == 0:
                if block_hash[b] is None:
                    unhashed.append(b)
                else:
                    free[b] = None
        for b in reversed(unhashed):  # the group's first block ends at the very head
            free[b] = None
            free.move_to_end(b, last=False)
        seq.block_table = []
        seq.num_hashed_blocks = 0

    def reset_prefix_cache(self) -> bool:
        """Forget every cached hash so that nothing hits any more. Refused (False, nothing
        changed) while any block is held: the held blocks' hashes would have to stay."""
        if self.num_used:
            return False
        self.cached.clear()
        self.block_hash = [None] * self.num_blocks
        self.stats_reset = True
        return True

    # ---- swap to host memory ------------------------------------------------------------
    def swap_out(self, seq: Sequence) -> list[tuple[int, int]] | None:
        """Copy seq's blocks to host blocks and free the GPU ones; None if the host pool is full."""
        if len(seq.block_table) > len(self.host_free):
            return None
        pairs = [(b, self.host_free.pop()) for b in seq.block_table]
        seq.host_blocks = [h for _, h in pairs]
        self.free_seq(seq)
        return pairs

    def free_host(self, seq: Sequence) -> None:
        """Release a swapped-out seq's host blocks (it was aborted while swapped)."""
        self.host_free.extend(reversed(seq.host_blocks))
        seq.host_blocks = []

    def can_swap_in(self, seq: Sequence) -> bool:
        # one spare block so the resumed decode can grow at once
        return len(seq.host_blocks) + 1 <= len(self.free)

    def swap_in(self, seq: Sequence) -> list[tuple[int, int]]:
        pairs = []
        for h in seq.host_blocks:
            b = self._take_free()
            seq.block_table.append(b)
            pairs.append((h, b))
            self.host_free.append(h)
        seq.host_blocks = []
        self.cache_full_blocks(seq, seq.num_computed_tokens)
        return pairs

    # ---- statistics and invariants ----------------------------------------------------
    def record_admission(self, num_tokens: int, hit_tokens: int, preempted: bool = False) -> None:
        """An admission looked up num_tokens and hit hit_tokens (re-admissions after a
        preemption are counted apart: preempted=True)."""
        self.stats.record(num_tokens, hit_tokens, preempted)

    @property
    def stat_requests(self) -> int:
        return self.stats.requests

    @property
    def stat_query_tokens(self) -> int:
        return self.stats.queries

    @property
    def stat_hit_tokens(self) -> int:
        return self.stats.hits

    @property
    def stat_preempted_requests(self) -> int:
        return self.stats.preempted_requests

    @property
    def stat_preempted_query_tokens(self) -> int:
        return self.stats.preempted_queries

    @property
    def stat_preempted_hit_tokens(self) -> int:
        return self.stats.preempted_hits

    def check(self, seqs) -> None:
        """Verify ref counts, free queue, hash table and block tables; raise AssertionError."""
        counts = [0] * self.num_blocks
        host_used = set()
        for s in seqs:
            assert len(set(s.block_table)) == len(s.block_table), f"{s}: block twice in table"
            for b in s.block_table:
                counts[b] += 1
            for h in s.host_blocks:
                assert h not in host_used, f"host block {h} used twice"
                host_used.add(h)
        assert counts == self.ref, "ref counts differ from the block tables"
        free = set(self.free)
        assert len(free) == len(self.free)
        assert free == {b for b in range(self.num_blocks) if self.ref[b] == 0}, "free queue != ref 0"
        for h, copies in self.cached.items():
            assert copies, f"hash {h} maps to no block"
            for b in copies:
                assert self.block_hash[b] == h, f"hash table points {h} at block {b} holding another hash"
        for b, h in enumerate(self.block_hash):
            assert h is None or b in self.cached.get(h, ()), \
                f"block {b} holds hash {h} but is unreachable from the hash table"
        assert not host_used & set(self.host_free), "host block both used and free"
        assert len(host_used) + len(self.host_free) == self.num_host_blocks, "host blocks leaked"
