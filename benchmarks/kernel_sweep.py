"""Launch-option sweeps of the decode-path kernels on the GPU (needs CUDA), to pick defaults.

    python benchmarks/kernel_sweep.py [--model qwen3-0.6b] [--only gemm|attn|small_attn|mid_attn|chain] [--json OUT]

gemm: every linear of one layer at M = 1 and 16 rows: cuBLAS (F.linear)
      against the Triton skinny GEMM with its default config and a grid of configs; prints
      microseconds per call and the weight-read bandwidth (GB/s).
attn: the paged decode kernel at batch 256 x context 1024, batch 128 of mixed contexts
      (uniform 100..2000) and batch 1 x 1024, over BLOCK_N x num_warps x num_stages; prints
      microseconds per call and the K/V-read bandwidth.
chain: the cost of a link in a dependent kernel chain at batch 1: rms_norm, the qkv skinny
      GEMM and the pair, 100 calls in one graph (one operand copy), PDL on and off.
small_attn: the decode kernel at batch 1, 4 and 16 x context 1025 (a step at context 1024)
      over the split count too (4..32), BLOCK_N x num_warps x num_stages.
mid_attn: batch 32, 64 and 128 of mixed contexts (100..2000) over 1..4 splits (the combine
      kernel included), BLOCK_N x num_stages.
Times are CUDA-graph replays of 20 back-to-back calls (launch gaps as in a decode graph),
median of 5 replays. With --layers L (default 28, as Qwen3-0.6B) the calls cycle through L
copies of the weights / KV caches, so each streams from HBM as in a decode step (with one
copy the operands stay in the 50 MB L2 and small configs look better than they are).
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics

import torch
import torch.nn.functional as F


DEV = "cuda"


LAYERS = 28  # --layers: operand copies the graphed calls cycle through


def graph_time_s(fn, calls: int = 20, reps: int = 5) -> float:
    """Median seconds per call of fn(i) (i: the call's operand copy, 0..LAYERS-1) captured
    `calls` times in one CUDA graph."""
    calls = max(calls, LAYERS)
    fn(0)
    if DEV == "cpu":  # --smoke: the script's plumbing only
        return 1.0
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(calls):
            fn(i % LAYERS)
    g.replay()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3 / calls)
    return statistics.median(times)


def gemm_sweep(spec) -> list[dict]:
    from nanosim.gpu.kernels.skinny_gemm import SkinnyConfig, skinny_gate_up_silu, skinny_linear

    H, I, D = spec.hidden_size, spec.intermediate_size, spec.head_dim
    shapes = {"qkv": ((spec.num_q_heads + 2 * spec.num_kv_heads) * D, H), "o": (H, spec.q_size),
              "gate_up": (2 * I, H), "down": (H, I)}
    grid = [SkinnyConfig(bn, bk, sk, nw, ns) for bn, bk, sk, nw, ns in
            itertools.product((16, 32, 64), (128, 256, 512), (1, 2, 4, 8), (4, 8), (4,))]
    rows = []
    for name, (N, K) in shapes.items():
        ws = [torch.randn(N, K, device=DEV, dtype=torch.bfloat16) * 0.02 for _ in range(LAYERS)]
        gb = N * K * 2 / 1e9
        for M in (1, 16):
            x = torch.randn(M, K, device=DEV, dtype=torch.bfloat16)
            if name == "gate_up":
                ref = graph_time_s(lambda i: F.silu(F.linear(x, ws[i])[:, :I]) * F.linear(x, ws[i])[:, I:])
                cub = graph_time_s(lambda i: F.linear(x, ws[i]))
            else:
                cub = ref = graph_time_s(lambda i: F.linear(x, ws[i]))
            split_ok = name in ("o", "down")  # consumers that take partials
            best = (float("inf"), None)
            default = None
            for cfg in [None] + grid:
                if cfg is not None and cfg.split_k > 1 and not split_ok:
                    continue
                if cfg is not None and cfg.block_k > max(K, 128):
                    continue
                if name == "gate_up":
                    fn = lambda i, c=cfg: skinny_gate_up_silu(x, ws[i], config=c)  # noqa: E731
                else:
                    fn = lambda i, c=cfg: skinny_linear(x, ws[i], partials=split_ok, config=c)  # noqa: E731
                try:
                    t = graph_time_s(fn)
                except Exception as e:  # noqa: BLE001 (a config Triton cannot compile: skip it)
                    print(f"  skip {cfg}: {type(e).__name__}", flush=True)
                    continue
                if cfg is None:
                    default = t
                elif t < best[0]:
                    best = (t, cfg)
            row = {"shape": name, "N": N, "K": K, "M": M, "cublas_us": cub * 1e6,
                   "cublas_gbs": gb / cub, "skinny_default_us": default * 1e6,
                   "skinny_default_gbs": gb / default, "best_us": best[0] * 1e6,
                   "best_gbs": gb / best[0], "best_config": str(best[1])}
            if name == "gate_up":
                row["cublas_plus_silu_us"] = ref * 1e6
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def shuffled_tables(lens: list[int], block_size: int, g: torch.Generator):
    """(block tables (B, W) int32, seq_lens (B,) int32) on DEV: sequence i of lens[i] tokens
    in the next cdiv(lens[i], block_size) blocks of one random permutation of all blocks."""
    per = [-(-n // block_size) for n in lens]
    perm = torch.randperm(sum(per), generator=g)
    bt = torch.zeros(len(lens), max(per), dtype=torch.int32)
    o = 0
    for i, p in enumerate(per):
        bt[i, :p] = perm[o:o + p]
        o += p
    return bt.to(DEV), torch.tensor(lens, dtype=torch.int32, device=DEV)


def attn_sweep(spec) -> list[dict]:
    from nanosim.gpu.kernels.decode_attention import paged_decode_attention

    bs, Hkv, Hq, D = 256, spec.num_kv_heads, spec.num_q_heads, spec.head_dim
    g = torch.Generator().manual_seed(0)
    mixed = torch.randint(100, 2001, (128,), generator=g).tolist()
    # *_ordered: programs take the rows longest first (the packer's decode_order)
    cases = {"b256_ctx1024": [1024] * 256, "b128_mixed": mixed, "b128_mixed_ordered": mixed,
             "b64_mixed_ordered": mixed[:64], "b1_ctx1024": [1024]}
    rows = []
    if DEV == "cpu":  # --smoke
        cases = {k: [max(1, n // 256) for n in v[:4]] for k, v in cases.items()}
    for case, lens in cases.items():
        per = [-(-n // bs) for n in lens]
        nblocks = sum(per)
        caches = [(torch.randn(nblocks, bs, Hkv, D, device=DEV, dtype=torch.bfloat16),
                   torch.randn(nblocks, bs, Hkv, D, device=DEV, dtype=torch.bfloat16))
                  for _ in range(LAYERS if len(lens) <= 16 else 1)]  # big cases miss L2 anyway
        bt, sl = shuffled_tables(lens, bs, g)
        q = torch.randn(len(lens), Hq, D, device=DEV, dtype=torch.bfloat16)
        out = torch.empty_like(q)
        order = (torch.argsort(-sl.long(), stable=True).to(torch.int32)
                 if case.endswith("_ordered") else None)
        gb = sum(lens) * Hkv * D * 2 * 2 / 1e9
        for block_n, warps, stages in itertools.product((32, 64, 128), (4, 8), (2, 3, 4)):
            fn = lambda i: paged_decode_attention(q, *caches[i % len(caches)], bt, sl, D ** -0.5, out=out,  # noqa: E731
                                                block_n=block_n, max_seq_len=4096,
                                                num_warps=warps, num_stages=stages, order=order)
            try:
                t = graph_time_s(fn)
            except Exception as e:  # noqa: BLE001
                print(f"  skip {case} {block_n} {warps} {stages}: {type(e).__name__}", flush=True)
                continue
            row = {"case": case, "block_n": block_n, "num_warps": warps, "num_stages": stages,
                   "us": t * 1e6, "gbs": gb / t}
            rows.append(row)
        best = sorted((r for r in rows if r["case"] == case), key=lambda r: r["us"])[:5]
        base = [r for r in rows if r["case"] == case and (r["block_n"], r["num_warps"], r["num_stages"]) == (128, 4, 2)]
        print(case, "current", json.dumps(base), "best", json.dumps(best), flush=True)
    return rows


def chain_sweep(spec) -> list[dict]:
    from nanosim.gpu.kernels.fused_ops import rms_norm
    from nanosim.gpu.kernels.skinny_gemm import skinny_linear
    from nanosim.gpu.options import KernelOptions

    global LAYERS
    layers, LAYERS = LAYERS, 1  # the same operands: the link's latency, not HBM streaming
    H, D = spec.hidden_size, spec.head_dim
    x = torch.randn(1, H, device=DEV, dtype=torch.bfloat16)
    w, res = torch.ones(H, device=DEV, dtype=torch.bfloat16), torch.randn(1, H, device=DEV, dtype=torch.bfloat16)
    wq = torch.randn((spec.num_q_heads + 2 * spec.num_kv_heads) * D, H, device=DEV, dtype=torch.bfloat16) * 0.02

    def pair(k):
        h, _ = rms_norm(x, w, 1e-6, res, k)
        skinny_linear(h, wq, opts=k)

    rows = []
    for on in (True, False, True, False):
        k = KernelOptions(pdl=on)
        row = {"pdl": on,
               "rms_norm_us": graph_time_s(lambda i, k=k: rms_norm(x, w, 1e-6, res, k), calls=100) * 1e6,
               "skinny_qkv_us": graph_time_s(lambda i, k=k: skinny_linear(x, wq, opts=k), calls=100) * 1e6,
               "pair_us": graph_time_s(lambda i, k=k: pair(k), calls=100) * 1e6}
        print(json.dumps(row), flush=True)
        rows.append(row)
    LAYERS = layers
    return rows


def small_attn_sweep(spec) -> list[dict]:
    """Batch 1 / 4 / 16 at context 1025 over split counts too (each graph captures one)."""
    from nanosim.gpu.kernels.decode_attention import DECODE_LAUNCH, default_num_splits, paged_decode_attention
    from nanosim.gpu.options import KERNELS

    bs, Hkv, Hq, D = 256, spec.num_kv_heads, spec.num_q_heads, spec.head_dim
    current_max = KERNELS.max_splits  # the default split count's cap
    wide = KERNELS.with_(max_splits=max(current_max, 128))  # the grid goes past it
    rows = []
    for B in (1, 4, 16):
        ctx = 1025 if DEV == "cuda" else 20
        per = -(-ctx // bs)
        caches = [(torch.randn(B * per, bs, Hkv, D, device=DEV, dtype=torch.bfloat16),
                   torch.randn(B * per, bs, Hkv, D, device=DEV, dtype=torch.bfloat16))
                  for _ in range(LAYERS)]
        bt = torch.arange(B * per, dtype=torch.int32, device=DEV).view(B, per)
        sl = torch.full((B,), ctx, dtype=torch.int32, device=DEV)
        q = torch.randn(B, Hq, D, device=DEV, dtype=torch.bfloat16)
        out, order = torch.empty_like(q), torch.arange(B, dtype=torch.int32, device=DEV)
        default = min(current_max, default_num_splits(B, Hkv, q.device, 4096)) if DEV == "cuda" else 1
        grid_splits = sorted({4, 8, 16, 32, 64, 128, default})
        gb = B * ctx * Hkv * D * 2 * 2 / 1e9
        case = f"b{B}_ctx{ctx}"
        for splits, block_n, warps, stages in itertools.product(grid_splits, (16, 32, 64), (2, 4), (1, 2)):
            if splits * B * Hkv > 8192:
                continue
            fn = lambda i: paged_decode_attention(q, *caches[i], bt, sl, D ** -0.5, out=out,  # noqa: E731
                                                  num_splits=splits, block_n=block_n,
                                                  num_warps=warps, num_stages=stages, order=order,
                                                  opts=wide)
            try:
                t = graph_time_s(fn)
            except Exception as e:  # noqa: BLE001 (a config Triton cannot compile: skip it)
                print(f"  skip {case} {splits} {block_n} {warps} {stages}: {type(e).__name__}", flush=True)
                continue
            rows.append({"case": case, "splits": splits, "block_n": block_n, "num_warps": warps,
                         "num_stages": stages, "us": t * 1e6, "gbs": gb / t,
                         "default_splits": default})
        mine = sorted((r for r in rows if r["case"] == case), key=lambda r: r["us"])
        base = [r for r in mine if (r["splits"], r["block_n"], r["num_warps"], r["num_stages"])
                == (default, 64, DECODE_LAUNCH["num_warps"], DECODE_LAUNCH["num_stages"])]
        print(case, "current", json.dumps(base), "best", json.dumps(mine[:5]), flush=True)
    return rows


def mid_attn_sweep(spec) -> list[dict]:
    """Batch 32 / 64 / 128 of mixed contexts (uniform 100..2000, rows longest first), over
    the split count (the combine kernel's time included) and BLOCK_N x num_stages."""
    from nanosim.gpu.kernels.decode_attention import default_num_splits, paged_decode_attention

    bs, Hkv, Hq, D = 256, spec.num_kv_heads, spec.num_q_heads, spec.head_dim
    g = torch.Generator().manual_seed(0)
    rows = []
    for B in (32, 64, 128):
        lens = torch.randint(100, 2001, (B,), generator=g).tolist()
        if DEV == "cpu":  # --smoke
            lens = [n // 256 + 1 for n in lens[:4]]
        per = [-(-n // bs) for n in lens]
        nblocks = sum(per)
        k, v = (torch.randn(nblocks, bs, Hkv, D, device=DEV, dtype=torch.bfloat16) for _ in range(2))
        bt, sl = shuffled_tables(lens, bs, g)
        q = torch.randn(len(lens), Hq, D, device=DEV, dtype=torch.bfloat16)
        out = torch.empty_like(q)
        order = torch.argsort(-sl.long(), stable=True).to(torch.int32)
        default = default_num_splits(len(lens), Hkv, q.device, 4096) if DEV == "cuda" else 1
        gb = sum(lens) * Hkv * D * 2 * 2 / 1e9
        case = f"b{B}_mixed_ordered"
        for splits, block_n, stages in itertools.product((1, 2, 3, 4), (64, 128), (2, 3)):
            fn = lambda i: paged_decode_attention(q, k, v, bt, sl, D ** -0.5, out=out,  # noqa: E731
                                                  num_splits=splits, block_n=block_n,
                                                  num_warps=4, num_stages=stages, order=order)
            try:
                t = graph_time_s(fn)
            except Exception as e:  # noqa: BLE001 (a config Triton cannot compile: skip it)
                print(f"  skip {case} {splits} {block_n} {stages}: {type(e).__name__}", flush=True)
                continue
            rows.append({"case": case, "splits": splits, "block_n": block_n, "num_stages": stages,
                         "us": t * 1e6, "gbs": gb / t, "default_splits": default})
        mine = sorted((r for r in rows if r["case"] == case), key=lambda r: r["us"])
        base = [r for r in mine if (r["splits"], r["block_n"], r["num_stages"])
                == (default, 128 if default == 1 else 64, 2)]
        print(case, "current", json.dumps(base), "best", json.dumps(mine[:4]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen3-0.6b")
    ap.add_argument("--only", choices=["gemm", "attn", "small_attn", "mid_attn", "chain"], default=None)
    ap.add_argument("--layers", type=int, default=28,
                    help="operand copies the graphed calls cycle through (1: L2-resident)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on CPU (TRITON_INTERPRET=1)")
    a = ap.parse_args()
    global DEV, LAYERS
    LAYERS = max(1, a.layers)
    if a.smoke:
        DEV = "cpu"
    elif not torch.cuda.is_available():
        raise SystemExit("kernel_sweep.py needs a CUDA GPU")
    from nanosim.config import get_model

    spec = get_model(a.model)
    if a.smoke:
        import dataclasses
        spec = dataclasses.replace(spec, hidden_size=64, intermediate_size=64, vocab_size=64,
                                   num_q_heads=2, num_kv_heads=1, head_dim=16)
    res = {"gpu": torch.cuda.get_device_name() if DEV == "cuda" else "cpu", "model": a.model}
    res["layers"] = LAYERS
    for key, fn in (("gemm", gemm_sweep), ("attn", attn_sweep), ("small_attn", small_attn_sweep),
                    ("mid_attn", mid_attn_sweep), ("chain", chain_sweep)):
        if a.only in (None, key):
            res[key] = fn(spec)
            if a.json:
                with open(a.json, "w") as f:
                    json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
