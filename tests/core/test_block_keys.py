"""Block keys made once (block_keys.SharedChains, BlockManager.shared_prefix_keys) equal the
keys hashed block by block from a sequence's own prompt ids."""
import random

from nanosim.core.block_keys import chain, own_keys
from nanosim.core.block_manager import BlockManager
from nanosim.core.request import Request
from nanosim.core.sequence import Sequence


def _by_hand(seq: Sequence, n: int, bs: int) -> list[int]:
    """seq_hash's rule without shared chains: content blocks chained, the rest own keys."""
    ids, out = seq.prompt_ids, []
    for j in range(n):
        toks = seq.block_tokens(j, bs)
        if toks is None or (seq.output_ids is None and (j + 1) * bs > len(ids)):
            out.extend(own_keys(seq.seq_id, j, n))
            break
        out.append(chain(out[-1] if out else None, toks.tobytes()))
    return out


def test_shared_chains_equal_hashing_each_sequence():
    rng = random.Random(3)
    for trial in range(300):
        bs = rng.choice([1, 16, 64, 256])
        blocks = tuple(rng.randrange(6) for _ in range(rng.randint(1, 3)))
        pbt = rng.choice([64, 300, 512])
        req = Request(rng.randrange(1000), 0.0, rng.randint(1, 2000), 5, prefix_blocks=blocks,
                      prefix_block_tokens=pbt)
        bm = BlockManager(8, bs)
        bm.shared_chain(Request(5000, 0.0, rng.randint(1, 2000), 5, prefix_blocks=blocks,
                                prefix_block_tokens=pbt))  # another prompt length, same blocks
        full = rng.random() < 0.3  # prompt ids as materialised (shared + unique tokens)
        seqs = []
        for _ in range(3):
            s = Sequence(req)
            s.prompt_ids = req.token_ids() if full else req.shared_token_ids()
            seqs.append(s)
        n = (req.prompt_tokens - 1) // bs
        want = _by_hand(seqs[0], max(n, 0), bs)
        assert bm.prefix_keys(seqs[1]) == want, trial
        if not full:
            assert bm.shared_prefix_keys(req.request_id, req.prompt_tokens,
                                         bm.shared_chain(req)) == want, trial
        if n > 0:  # one block at a time, from the last
            assert [bm.seq_hash(seqs[2], i) for i in reversed(range(n))][::-1] == want, trial
