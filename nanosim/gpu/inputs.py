"""Host-side step preparation: a list of SeqWork -> device tensors, with ONE host-to-device copy.

Every integer and float input of a step (token ids, positions, slots, query starts, context
lengths, sampling parameters, block tables) is written with numpy into one pinned int32
buffer (floats bit-cast) and copied to the device in a single ``copy_``; the device tensors
are views into that copy. Decode steps replayed by a CUDA graph use a fixed layout (sized for
the largest graph) so the graph's input views never move; other steps use a compact layout.
Steps of any composition replayed by a "mixed" CUDA graph (token-count buckets) use a third,
fixed layout with room for the token budget, every sequence and the varlen kernel's tile map.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import chain, islice
from typing import Sequence

import numpy as np
import torch

from nanosim.gpu.attention.metadata import AttentionMetadata, max_tiles, tile_map
from nanosim.gpu.sampler import uniforms


@dataclass(slots=True)
class SeqWork:
    """One sequence's work this step.

    token_ids    tokens computed now: a prefill chunk, or the one newest token of a decode
    start_pos    tokens of this sequence already in its KV cache (prefix hits + earlier steps);
                 token_ids[j] sits at position start_pos + j
    block_table  physical KV block ids of the sequence, covering start_pos + len(token_ids)
    samples      sample a token after the last of token_ids (False for non-final chunks)
    temperature  0 = greedy; top_k <= 0 and top_p = 1 disable those filters
    seed         per-sequence seed: same seed (and runner seed) => same sampled tokens
    """

    token_ids: Sequence[int]
    start_pos: int
    block_table: Sequence[int]
    samples: bool = True
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0


FIELDS = ("input_ids", "positions", "slot_mapping", "query_start_loc", "seq_lens",
          "logits_indices", "top_k", "temperature", "top_p", "u", "tile_seq", "tile_m",
          "decode_order", "block_tables")


def layout(n_tok: int, n_seq: int, n_samp: int, width: int,
           n_tiles: int = 0) -> dict[str, tuple[int, int]]:
    """Offsets (start, stop) in int32 words of each field; block tables last (largest).
    Every field starts 16-byte aligned: Triton specializes kernels on pointer alignment, so
    unaligned views at step-dependent offsets would trigger fresh compiles mid-replay."""
    sizes = (n_tok, n_tok, n_tok, n_seq + 1, n_seq, n_samp, n_samp, n_samp, n_samp, n_samp,
             n_tiles, n_tiles, n_seq, n_seq * width)
    out, pos = {}, 0
    for f, size in zip(FIELDS, sizes):
        out[f] = (pos, pos + size)
        pos += -(-size // 4) * 4
    return out


def decode_order(v: dict, n: int) -> None:
    """Rows 0..n-1 of a decode-only layout, longest context first (ties in row order)."""
    v["decode_order"][:n] = np.argsort(-v["seq_lens"][:n], kind="stable")


@dataclass
class StepInputs:
    input_ids: torch.Tensor  # (T,) int32
    positions: torch.Tensor  # (T,) int32
    meta: AttentionMetadata
    logits_indices: torch.Tensor  # (S,) int32: rows of the hidden states that sample
    temperature: torch.Tensor  # (S,) f32
    top_k: torch.Tensor  # (S,) int32
    top_p: torch.Tensor  # (S,) f32
    u: torch.Tensor  # (S,) f32 uniforms for the sampler
    num_samples: int
    all_greedy: bool
    num_words: int  # int32 words to copy host -> device
    stage: object  # the _Staging buffer holding these inputs
    needs_sort: bool = True  # some sampling row filters by top-k / top-p (else no sort)
    first_word: int = 0  # words before it are not copied (the input ids: already on the device)

    def upload(self) -> None:
        """The step's one host-to-device copy (a no-op on CPU, where views alias the host)."""
        self.stage.upload(self.num_words, self.first_word)


class _Staging:
    """A pinned host int32 buffer and its device twin (the same tensor on CPU)."""

    def __init__(self, words: int, device: torch.device) -> None:
        pin = device.type == "cuda"
        self.host = torch.zeros(words, dtype=torch.int32, pin_memory=pin)
        self.np = self.host.numpy()
        self.dev = torch.zeros(words, dtype=torch.int32, device=device) if pin else self.host

    def upload(self, words: int, first: int = 0) -> None:
        if self.dev is not self.host:
            self.dev[first:words].copy_(self.host[first:words], non_blocking=True)


class InputPacker:
    """Packs steps into a compact staging buffer, or into the fixed-layout one whose device
    views the CUDA graphs were captured with (kept separate so graph inputs are only ever
    overwritten by graph steps: padding rows then always hold valid block ids)."""

    def __init__(self, device: torch.device, block_size: int, max_tokens: int, max_seqs: int,
                 max_width: int, graph_max_bs: int = 0, base_seed: int = 0,
                 mixed_max_tokens: int = 0, tile_block_m: int = 64,
                 mixed_decode_kernel: bool = True) -> None:
        self.block_size, self.base_seed = block_size, base_seed
        # mixed graphs send their one-token rows to the split-KV decode kernel; False leaves
        # them in the varlen kernel's tiles (KernelOptions.mixed_decode_kernel)
        self.mixed_decode_kernel = mixed_decode_kernel
        self.max_tokens, self.max_seqs, self.max_width = max_tokens, max_seqs, max_width
        self.eager = _Staging(layout(max_tokens, max_seqs, max_seqs, max_width)["block_tables"][1], device)
        self.graph_layout = layout(graph_max_bs, graph_max_bs, graph_max_bs, max_width)
        self.graph = _Staging(self.graph_layout["block_tables"][1], device) if graph_max_bs else None
        self._graph_views: dict[tuple[int, int], StepInputs] = {}
        # mixed graphs: buckets of up to mixed_max_tokens tokens, any number of sequences
        self.tile_block_m, self.mixed_max_tokens = tile_block_m, mixed_max_tokens
        self.mixed_layout = layout(mixed_max_tokens, max_seqs, max_seqs, max_width,
                                   self.num_tiles(mixed_max_tokens))
        self.mixed = (_Staging(self.mixed_layout["block_tables"][1], device)
                      if mixed_max_tokens else None)
        self._mixed_views: dict[tuple[int, int], StepInputs] = {}
        # the last decode-graph pack, which pack_next advances: (its seeds (B,), all greedy)
        self._graph_seeds: np.ndarray | None = None
        self._graph_greedy = True

    def mixed_decode_rows(self, num_tokens: int) -> int:
        """Decode-kernel programs (per KV head and split) of a mixed graph of num_tokens tokens:
        one per sequence that could have a single query token."""
        return min(self.max_seqs, num_tokens)

    def num_tiles(self, num_tokens: int) -> int:
        """Varlen-kernel programs (per head) of a mixed graph of num_tokens tokens."""
        return max_tiles(num_tokens, self.max_seqs, self.tile_block_m) if num_tokens else 0

    def pack(self, works: list[SeqWork], num_blocks: int, graph_bs: int | None = None,
             mixed_tokens: int | None = None) -> StepInputs:
        """Fill the host buffer for ``works`` and return device views of it (upload() copies).
        graph_bs: decode-only batch padded to that CUDA-graph size, in the fixed layout.
        mixed_tokens: any batch, its tokens padded to that mixed-graph bucket (fixed layout,
        tile map filled). Raises ValueError on work that does not fit the limits or the cache."""
        lens = np.fromiter((len(w.token_ids) for w in works), np.int64, len(works))
        starts = np.fromiter((w.start_pos for w in works), np.int64, len(works))
        B, T = len(works), int(lens.sum())
        need = self._check(works, lens, starts, B, T)
        rows = [i for i, w in enumerate(works) if w.samples]
        # eager: width rounded up to 16 (bounded by the cache's width) so the block-table
        # stride takes few values (Triton specializes integer args on divisibility by 16)
        fixed = bool(graph_bs or mixed_tokens)
        width = self.max_width if fixed else min(-(-int(need.max()) // 16) * 16, self.max_width)
        if mixed_tokens:
            if not T <= mixed_tokens <= self.mixed_max_tokens:
                raise ValueError(f"{T} tokens do not fit a mixed graph of {mixed_tokens}")
            lay, stage = self.mixed_layout, self.mixed
        elif graph_bs:
            lay, stage = self.graph_layout, self.graph
        else:
            lay, stage = layout(T, B, len(rows), width), self.eager
        v = {f: stage.np[a:b] for f, (a, b) in lay.items()}
        qsl, seq_lens = self._fill_tokens(v, works, lens, starts, need, width, num_blocks,
                                          graph_bs or mixed_tokens, rows_too=bool(graph_bs))
        all_greedy = self._fill_sampling(v, works, rows, qsl, seq_lens)
        if graph_bs:  # the decode-graph buffer: pack_next can advance it when every row samples
            self._graph_seeds = (np.fromiter((w.seed for w in works), np.int64, B)
                                 if len(rows) == B else None)
            self._graph_greedy = all_greedy
        if mixed_tokens:  # rows of one query token go to the decode kernel, the rest to tiles
            n, single = self.num_tiles(mixed_tokens), (lens == 1) & self.mixed_decode_kernel
            v["tile_seq"][:n], v["tile_m"][:n] = tile_map(np.where(single, 0, lens), n, self.tile_block_m)
            dec = np.flatnonzero(single)
            r = self.mixed_decode_rows(mixed_tokens)
            v["decode_order"][:r] = -1
            v["decode_order"][:dec.size] = dec[np.argsort(-seq_lens[dec], kind="stable")]
            inp = self._mixed_inputs(mixed_tokens, len(rows))
        elif graph_bs:
            inp = self._graph_inputs(graph_bs, len(rows))
        else:
            inp = self._device_views(stage, lay, T, B, len(rows), width)
            inp.meta = self._metadata(inp.meta, lens, qsl, seq_lens)
            p = inp.meta.num_prefills
            v["decode_order"][:B - p] = np.argsort(-seq_lens[p:], kind="stable")
            inp.meta.decode_order = inp.meta.decode_order[:B - p]
        inp.all_greedy, inp.num_words = all_greedy, lay["block_tables"][0] + B * width
        inp.first_word = 0
        S = len(rows)
        inp.needs_sort = bool((v["top_k"][:S] > 0).any() or (v["top_p"].view(np.float32)[:S] < 1).any())
        return inp

    def next_blocks_ready(self, tables: list, keep: list[int] | None) -> bool:
        """Whether pack_next(tables, keep, ...) would find every block it needs: no kept row's
        next position starts a block its table does not hold yet (the scheduler appends that
        block only when it schedules the step) or lies past the table width."""
        if self._graph_seeds is None:
            return False
        a, _ = self.graph_layout["positions"]
        pos = self.graph.np[a:a + len(self._graph_seeds)]
        pos = (pos if keep is None else pos[np.asarray(keep, dtype=np.int64)]) + 1
        col = pos // self.block_size
        starts = np.flatnonzero(pos % self.block_size == 0)
        return bool((col < self.max_width).all()) and all(int(col[i]) < len(tables[i]) for i in starts.tolist())

    def pack_next(self, tables: list, keep: list[int] | None, tokens: np.ndarray | None,
                  num_blocks: int, graph_bs: int) -> StepInputs:
        """The decode step that follows the last decode-graph pack, edited in place instead of
        packed anew (about 5x less host time at 256 rows, benchmarks/host_step.py): rows
        ``keep`` of it (None: all), each one token further, fed ``tokens`` (the tokens sampled
        for those rows; None: the device already holds them, or the caller writes them after
        upload(), which then leaves the input ids out). ``tables`` are the kept rows' live block tables, in the new order: a
        row whose new token starts a block reads that block from it (the scheduler has
        appended it). Padded to ``graph_bs``."""
        if self._graph_seeds is None:
            raise RuntimeError("pack_next needs a decode-graph pack (every row sampling) before it")
        lay = self.graph_layout
        v = {f: self.graph.np[a:b] for f, (a, b) in lay.items()}
        bt = v["block_tables"].reshape(-1, self.max_width)
        per_row = ("positions", "slot_mapping", "seq_lens", "top_k", "temperature", "top_p")
        seeds = self._graph_seeds
        B = len(seeds) if keep is None else len(keep)
        if keep is not None:  # fancy indexing copies, so overlapping rows are safe
            idx = np.asarray(keep, dtype=np.int64)
            for f in per_row:
                v[f][:B] = v[f][idx]
            bt[:B] = bt[idx]
            seeds = self._graph_seeds = seeds[idx]
        pos, slot, lens = v["positions"][:B], v["slot_mapping"][:B], v["seq_lens"][:B]
        pos += 1
        lens += 1
        slot += 1
        col = pos // self.block_size
        for i in np.flatnonzero(pos % self.block_size == 0).tolist():  # a new block starts
            c = int(col[i])
            table = tables[i]
            if c >= self.max_width or c >= len(table) or not 0 <= table[c] < num_blocks:
                raise ValueError(f"row {i}: position {int(pos[i])} needs block {c} of its table "
                                 f"(len {len(table)}, max {self.max_width}, ids < {num_blocks})")
            bt[i, c] = table[c]
            slot[i] = table[c] * self.block_size
        if tokens is not None:  # else the device already holds them (the caller's feed)
            v["input_ids"][:B] = tokens
        v["input_ids"][B:graph_bs] = 0  # padding rows: no KV write, one cached token read
        v["positions"][B:graph_bs] = 0
        v["slot_mapping"][B:graph_bs] = -1
        v["seq_lens"][B:graph_bs] = 1
        decode_order(v, graph_bs)
        greedy = self._graph_greedy
        if keep is not None:
            greedy = not (v["temperature"].view(np.float32)[:B] > 0).any()
            self._graph_greedy = greedy
        if not greedy:
            v["u"].view(np.float32)[:B] = uniforms(seeds, lens, self.base_seed)
        inp = self._graph_inputs(graph_bs, B)
        inp.all_greedy, inp.num_words = greedy, lay["block_tables"][0] + B * self.max_width
        inp.first_word = 0 if tokens is not None else lay["positions"][0]
        inp.needs_sort = bool((v["top_k"][:B] > 0).any() or (v["top_p"].view(np.float32)[:B] < 1).any())
        return inp

    def _fill_tokens(self, v, works, lens, starts, need, width, num_blocks, pad_to, rows_too):
        """Token ids, positions, query starts, context lengths, block tables, slots.
        pad_to: a graph's token count; rows_too: a decode graph (a padding token is also a
        padding sequence, attending to one cached token)."""
        B, T = len(works), int(lens.sum())
        qsl = np.zeros(B + 1, np.int64)
        np.cumsum(lens, out=qsl[1:])
        seq_lens = starts + lens
        positions = np.arange(T) + np.repeat(starts - qsl[:-1], lens)  # start_i + j
        v["input_ids"][:T] = np.fromiter(chain.from_iterable(w.token_ids for w in works), np.int64, T)
        v["positions"][:T] = positions
        v["query_start_loc"][:B + 1] = qsl
        v["seq_lens"][:B] = seq_lens
        bt = v["block_tables"].reshape(-1, width)
        self._fill_block_tables(bt, works, need, num_blocks)
        blocks = bt[np.repeat(np.arange(B), lens), positions // self.block_size]
        v["slot_mapping"][:T] = blocks * self.block_size + positions % self.block_size
        if pad_to and pad_to > T:  # padding tokens: no KV write
            for f, val in (("input_ids", 0), ("positions", 0), ("slot_mapping", -1)):
                v[f][T:pad_to] = val
            if rows_too:  # (mixed graphs: no tile reads the rows past B)
                v["seq_lens"][B:pad_to] = 1
        if rows_too:  # a decode graph: every row (padding too) goes to the decode kernel
            decode_order(v, pad_to)
        return qsl, seq_lens

    def _device_views(self, stage, lay, n_tok: int, n_seq: int, S: int, width: int) -> StepInputs:
        """StepInputs viewing ``stage.dev``; metadata lengths are filled in by the caller."""
        d = {f: stage.dev[a:b] for f, (a, b) in lay.items()}
        meta = AttentionMetadata(
            slot_mapping=d["slot_mapping"][:n_tok], query_start_loc=d["query_start_loc"][:n_seq + 1],
            seq_lens=d["seq_lens"][:n_seq], block_tables=d["block_tables"][:n_seq * width].view(n_seq, width),
            decode_order=d["decode_order"][:n_seq],
            num_prefills=0, num_prefill_tokens=0, max_query_len=1, max_seq_len=self.max_width * self.block_size)
        return StepInputs(
            input_ids=d["input_ids"][:n_tok], positions=d["positions"][:n_tok], meta=meta,
            logits_indices=d["logits_indices"][:S], temperature=d["temperature"][:S].view(torch.float32),
            top_k=d["top_k"][:S], top_p=d["top_p"][:S].view(torch.float32),
            u=d["u"][:S].view(torch.float32), num_samples=S, all_greedy=True, num_words=0, stage=stage)

    def _graph_inputs(self, graph_bs: int, S: int) -> StepInputs:
        """Cached views of the fixed graph layout (building torch views costs ~30 us/step).
        Its metadata describes graph_bs decodes, as captured (no host lengths)."""
        key = (graph_bs, S)
        if key not in self._graph_views:
            self._graph_views[key] = self._device_views(self.graph, self.graph_layout, graph_bs,
                                                        graph_bs, S, self.max_width)
        return self._graph_views[key]

    def _mixed_inputs(self, tokens: int, S: int) -> StepInputs:
        """Cached views of the fixed mixed layout for a bucket of ``tokens`` tokens: every
        sequence row, the bucket's share of the tile map, no host lengths."""
        key = (tokens, S)
        if key not in self._mixed_views:
            inp = self._device_views(self.mixed, self.mixed_layout, tokens, self.max_seqs, S,
                                     self.max_width)
            a, _ = self.mixed_layout["tile_seq"]
            b, _ = self.mixed_layout["tile_m"]
            n = self.num_tiles(tokens)
            inp.meta.tile_seq, inp.meta.tile_m = self.mixed.dev[a:a + n], self.mixed.dev[b:b + n]
            c, _ = self.mixed_layout["decode_order"]
            inp.meta.decode_order = (self.mixed.dev[c:c + self.mixed_decode_rows(tokens)]
                                     if self.mixed_decode_kernel else None)
            self._mixed_views[key] = inp
        return self._mixed_views[key]

    @staticmethod
    def _metadata(meta: AttentionMetadata, lens, qsl, seq_lens) -> AttentionMetadata:
        """Fill the host-known lengths; the first num_prefills sequences go to the varlen path."""
        q_lens = lens.tolist()
        meta.num_prefills = max((i + 1 for i, n in enumerate(q_lens) if n > 1), default=0)
        meta.num_prefill_tokens = int(qsl[meta.num_prefills])
        meta.max_query_len, meta.max_seq_len = max(q_lens), int(seq_lens.max())
        meta.query_lens_host, meta.seq_lens_host = q_lens, seq_lens.tolist()
        return meta

    def _check(self, works, lens, starts, B: int, T: int) -> np.ndarray:
        """Refuse work that does not fit; returns the blocks each sequence reads (B,)."""
        if not 1 <= B <= self.max_seqs:
            raise ValueError(f"a step needs 1..{self.max_seqs} sequences, got {B}")
        if T > self.max_tokens:
            raise ValueError(f"{T} tokens exceed max_num_batched_tokens={self.max_tokens}")
        if lens.min() < 1:
            raise ValueError("every SeqWork needs at least one token id")
        need = -(-(starts + lens) // self.block_size)
        have = np.fromiter((len(w.block_table) for w in works), np.int64, B)
        bad = np.flatnonzero((starts < 0) | (need > self.max_width) | (have < need))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"SeqWork start_pos={starts[i]} + {lens[i]} tokens needs {need[i]} blocks "
                             f"(max {self.max_width}); block_table has {have[i]}")
        return need

    @staticmethod
    def _fill_block_tables(bt: np.ndarray, works, need: np.ndarray, num_blocks: int) -> None:
        """bt (rows, width) view: row i <- the first need[i] block ids of works[i]."""
        total = int(need.sum())
        flat = np.fromiter(chain.from_iterable(islice(w.block_table, n) for w, n in
                                               zip(works, need.tolist())), np.int64, total)
        if flat.min() < 0 or flat.max() >= num_blocks:
            raise ValueError(f"block ids must be in [0, {num_blocks}); got {flat.min()}..{flat.max()}")
        rows = np.repeat(np.arange(len(works)), need)
        cols = np.arange(total) - np.repeat(np.cumsum(need) - need, need)
        bt[rows, cols] = flat

    def _fill_sampling(self, v, works, rows: list[int], qsl, seq_lens) -> bool:
        """Sampling rows and parameters; returns True when every sampling row is greedy."""
        S = len(rows)
        temps = np.fromiter((works[i].temperature for i in rows), np.float32, S)
        v["logits_indices"][:S] = qsl[1:][rows] - 1  # last token of each sampling sequence
        v["top_k"][:S] = np.fromiter((works[i].top_k for i in rows), np.int64, S)
        v["temperature"].view(np.float32)[:S] = temps
        v["top_p"].view(np.float32)[:S] = np.fromiter((works[i].top_p for i in rows), np.float32, S)
        if not (temps > 0).any():
            return True
        seeds = np.fromiter((works[i].seed for i in rows), np.int64, S)
        v["u"].view(np.float32)[:S] = uniforms(seeds, seq_lens[rows], self.base_seed)  # new token at seq_len
        return False
