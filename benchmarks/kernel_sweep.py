"""Launch-option sweeps of the decode-path kernels on the GPU (needs CUDA), to pick defaults.

    python benchmarks/kernel_sweep.py [--model qwen3-0.6b] [--only gemm|attn] [--json OUT]

gemm: every linear of one layer at M = 1 and 16 rows: cuBLAS (F.linear)
      against the Triton skinny GEMM with its default config and a grid of configs; prints
      microseconds per call and the weight-read bandwidth (GB/s).
attn: the paged decode kernel at batch 256 x context 1024, batch 128 of mixed contexts
      (uniform 100..2000) and batch 1 x 1024, over BLOCK_N x num_warps x num_stages; prints
      microseconds per call and the K/V-read bandwidth.
Times are CUDA-graph replays of 20 back-to-back calls (launch gaps as in a decode graph),
median of 5 replays.
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics

import torch
import torch.nn.functional as F


DEV = "cuda"


def graph_time_s(fn, calls: int = 20, reps: int = 5) -> float:
    """Median seconds per call of fn() captured `calls` times in one CUDA graph."""
    fn()
    if DEV == "cpu":  # --smoke: the script's plumbing only
        return 1.0
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(calls):
            fn()
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
            itertools.product((16, 32, 64), (64, 128, 256), (1, 2, 4, 8), (4,), (4, 6))]
    rows = []
    for name, (N, K) in shapes.items():
        w = torch.randn(N, K, device=DEV, dtype=torch.bfloat16) * 0.02
        gb = N * K * 2 / 1e9
        for M in (1, 16):
            x = torch.randn(M, K, device=DEV, dtype=torch.bfloat16)
            if name == "gate_up":
                ref = graph_time_s(lambda: F.silu(F.linear(x, w)[:, :I]) * F.linear(x, w)[:, I:])
                cub = graph_time_s(lambda: F.linear(x, w))
            else:
                cub = ref = graph_time_s(lambda: F.linear(x, w))
            split_ok = name in ("o", "down")  # consumers that take partials
            best = (float("inf"), None)
            default = None
            for cfg in [None] + grid:
                if cfg is not None and cfg.split_k > 1 and not split_ok:
                    continue
                if cfg is not None and cfg.block_k > max(K, 128):
                    continue
                if name == "gate_up":
                    fn = lambda c=cfg: skinny_gate_up_silu(x, w, config=c)  # noqa: E731
                else:
                    fn = lambda c=cfg: skinny_linear(x, w, partials=split_ok, config=c)  # noqa: E731
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
        kc = torch.randn(nblocks, bs, Hkv, D, device=DEV, dtype=torch.bfloat16)
        vc = torch.randn_like(kc)
        perm = torch.randperm(nblocks, generator=g)
        bt = torch.zeros(len(lens), max(per), dtype=torch.int32)
        o = 0
        for i, p in enumerate(per):
            bt[i, :p] = perm[o:o + p]
            o += p
        bt, sl = bt.to(DEV), torch.tensor(lens, dtype=torch.int32, device=DEV)
        q = torch.randn(len(lens), Hq, D, device=DEV, dtype=torch.bfloat16)
        out = torch.empty_like(q)
        order = (torch.argsort(-sl.long(), stable=True).to(torch.int32)
                 if case.endswith("_ordered") else None)
        gb = sum(lens) * Hkv * D * 2 * 2 / 1e9
        for block_n, warps, stages in itertools.product((32, 64, 128), (4, 8), (2, 3, 4)):
            fn = lambda: paged_decode_attention(q, kc, vc, bt, sl, D ** -0.5, out=out,  # noqa: E731
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen3-0.6b")
    ap.add_argument("--only", choices=["gemm", "attn"], default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on CPU (TRITON_INTERPRET=1)")
    a = ap.parse_args()
    global DEV
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
    for key, fn in (("gemm", gemm_sweep), ("attn", attn_sweep)):
        if a.only in (None, key):
            res[key] = fn(spec)
            if a.json:
                with open(a.json, "w") as f:
                    json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
