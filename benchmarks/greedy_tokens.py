"""Greedy tokens of a Qwen3 preset with seeded random weights on a fixed, seeded prompt set:
the check that a change to the runner (or the tree before it) generates the same tokens.

    python benchmarks/greedy_tokens.py [--model qwen3-0.6b] [--prompts 96] [--max-tokens 48] \
        --json A.json                       # in each tree: PYTHONPATH=TREE python ...
    python benchmarks/greedy_tokens.py --compare A.json B.json

Prints a digest of the ids; --compare says how many sequences match and where the first
difference is. Runs on a GPU (bf16) or, with --device cpu --dtype float32, on a CPU (slow for
real model sizes: use --prompts 4 --max-tokens 8 there).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys


def generate(a) -> list[list[int]]:
    import torch

    from nanosim.gpu.llm import LLM, SamplingParams

    llm = LLM(a.model, device=a.device, dtype=a.dtype, seed=0, max_model_len=a.max_model_len,
              **({"num_kv_blocks": 64} if a.device == "cpu" else {}))
    g = torch.Generator().manual_seed(0)
    longest = min(1200, a.max_model_len - a.max_tokens)  # prompt tokens
    lens = torch.randint(4, longest, (a.prompts,), generator=g).tolist()
    prompts = [torch.randint(0, llm.spec.vocab_size, (n,), generator=g).tolist() for n in lens]
    outs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=a.max_tokens,
                                                ignore_eos=True))
    return [list(o.token_ids) for o in outs]


def digest(ids: list[list[int]]) -> str:
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]


def compare(a_path: str, b_path: str) -> int:
    a, b = (json.load(open(p)) for p in (a_path, b_path))
    same = sum(x == y for x, y in zip(a, b))
    print(f"{same} of {max(len(a), len(b))} sequences equal ({digest(a)} vs {digest(b)})")
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            j = next((k for k, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
            print(f"first difference: sequence {i}, token {j}")
            break
    return 0 if same == len(a) == len(b) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen3-0.6b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--prompts", type=int, default=96)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--max-model-len", type=int, default=2048)
    ap.add_argument("--json", help="write the ids here")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"))
    a = ap.parse_args()
    if a.compare:
        return compare(*a.compare)
    ids = generate(a)
    print(f"greedy digest {digest(ids)}: {len(ids)} sequences, {sum(map(len, ids))} tokens")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(ids, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
