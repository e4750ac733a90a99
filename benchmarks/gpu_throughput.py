"""nano-vLLM's published benchmark on our engine, with its roofline and an HF baseline.

Workload (nano-vLLM bench.py): Qwen3-0.6B shapes (random bf16 weights), 256 sequences with
input and output lengths uniform in [100, 1024] (Python random, seed 0: 133,966 output
tokens), temperature 0.6, ignore_eos. Engine as nano-vLLM's: block 256, max_num_seqs 512,
max_num_batched_tokens 16384, max_model_len 4096, CUDA graphs.

Prints, in one run: output tok/s; decode step latency at batch 1, 64 and 256 (context 1024,
runner.step with CUDA graphs: input packing + forward + sampling + sync, median of 50); the
roofline of the workload (the same scheduler in the simulator with an ideal cost model:
peak HBM bandwidth and FLOP/s, no overheads; within a phase compute and traffic overlap),
and the looser bound that adds them instead (how ../shared/FACTS.md derives ≈ 26k tok/s,
the basis of the issue's "70% ≈ 18k"); transformers' generate() on the same prompts.

    python benchmarks/gpu_throughput.py --attention triton [--hf-seqs 256] [--json OUT]
    python benchmarks/gpu_throughput.py --model qwen3-8b --tp 2 --hf-seqs 0   # same workload, TP

The engine runs with async decoding, LLM's default (a steady decode step is launched one
step ahead, backend.py; --sync-decode turns it off), and the runner's step period with
lookahead is added; --async-ab instead times only the throughput run and the engine TPOT
with it off and on, in turns (off, on, off, on), on the same engine.

The throughput line also splits the run's time: the sum of the measured step durations by
step kind (prefill, decode by batch size) and the rest of the wall time (scheduler,
bookkeeping). The decode latency at batch 256 is also given with temperature sampling
(the throughput run samples at temperature 0.6; the plain figures are greedy).
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from random import randint, seed

import torch

MODEL = "qwen3-0.6b"
ENGINE = dict(block_size=256, max_num_seqs=512, max_num_batched_tokens=16384, max_model_len=4096)


def workload():
    seed(0)
    prompts = [[randint(0, 10000) for _ in range(randint(100, 1024))] for _ in range(256)]
    outs = [randint(100, 1024) for _ in range(256)]
    return prompts, outs


def engine_throughput(llm, prompts, outs) -> dict:
    from nanosim.gpu.llm import SamplingParams

    llm.generate([[1, 2, 3]] * 4, SamplingParams(temperature=0.6, max_tokens=8, ignore_eos=True))
    llm.reset()  # the split below counts the measured run's steps only
    sps = [SamplingParams(temperature=0.6, ignore_eos=True, max_tokens=n) for n in outs]
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    res = llm.generate(prompts, sps)
    dt = time.perf_counter() - t0
    n = sum(len(r.token_ids) for r in res)
    return {"output_tokens": n, "seconds": dt, "tok_s": n / dt, "split_s": time_split(llm, dt)}


def decode_period_ahead(runner, batch: int, context: int = 1024, reps: int = 200) -> float:
    """Seconds per step of runner.step_next(ahead=True) called back to back (each call
    launches the next step before reading its own tokens): the steady decode period with
    async decoding, at ``batch`` rows of ``context`` tokens, and the median GPU time of one
    step (CUDA events; equal to the period when the host keeps the GPU busy). No step
    starts a block (the rows' tables get every block the run needs beforehand)."""
    from nanosim.gpu.inputs import SeqWork

    per = -(-(context + 2 * reps + 2) // runner.block_size)
    works = [SeqWork([7], context, list(range(i * per, (i + 1) * per)) if (i + 1) * per <= runner.num_kv_blocks
                     else list(range(per)), True, 0.6) for i in range(batch)]
    runner.step(works)
    for _ in range(10):
        runner.step_next(ahead=True)
    torch.cuda.synchronize()
    gpu = []
    t0 = time.perf_counter()
    for _ in range(reps):
        gpu.append(runner.step_next(ahead=True).duration_s)
    return {"period_s": (time.perf_counter() - t0) / reps, "gpu_median_s": statistics.median(gpu)}


def async_ab(llm, prompts, outs, rounds: int = 2) -> dict:
    """Throughput and batch-1 engine TPOT with async decoding off and on, in turns (one
    LLM per arm over the same runner: LLM.with_decoding)."""
    out = {"off": [], "on": []}
    arms = {arm: llm.with_decoding(async_decode=arm == "on") for arm in out}
    for _ in range(rounds):
        for arm, arm_llm in arms.items():
            thr = engine_throughput(arm_llm, prompts, outs)
            out[arm].append({"tok_s": thr["tok_s"], "seconds": thr["seconds"],
                             "engine_tpot_b1_s": engine_tpot(arm_llm)})
            print("async", arm, json.dumps(out[arm][-1]), flush=True)
    return out


def time_split(llm, wall_s: float) -> dict:
    """Seconds of the measured steps by kind (GpuBackend: packing + forward + sampling +
    sync), and the wall time outside them (scheduler, bookkeeping)."""
    _, steps = llm.engine.results()
    pre = steps.prefill_tokens > 0
    out = {"prefill_steps": int(pre.sum()), "prefill_s": float(steps.duration_s[pre].sum())}
    dec = steps[~pre]
    for lo, hi in ((1, 16), (17, 128), (129, 100000)):
        sel = dec[(dec.num_decode_seqs >= lo) & (dec.num_decode_seqs <= hi)]
        out[f"decode_b{lo}-{min(hi, 512)}"] = [len(sel), float(sel.duration_s.sum())]
    out["outside_steps_s"] = wall_s - float(steps.duration_s.sum())
    return out


def decode_latency(runner, batch: int, context: int = 1024, reps: int = 50,
                   temperature: float = 0.0, fast: bool = False) -> float:
    """Median seconds of one decode step of `batch` sequences at `context` tokens: runner.step
    (inputs packed anew), or with fast=True runner.step_next after one step (the engine's
    steady-decode path: inputs edited in place; the context grows by one token a step)."""
    from nanosim.gpu.inputs import SeqWork

    per = -(-(context + 1) // runner.block_size)
    works = [SeqWork([7], context, list(range(i * per, (i + 1) * per)) if (i + 1) * per <= runner.num_kv_blocks
                     else list(range(per)), True, temperature) for i in range(batch)]
    for _ in range(5):
        runner.step(works)
    times = []
    if fast:
        runner.step(works)
        for _ in range(reps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            runner.step_next()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        runner.step(works)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def engine_tpot(llm, prompt_len: int = 128, out: int = 512) -> float:
    """Batch-1 time per output token through the whole engine (scheduler included), as
    vLLM's figure is measured: (wall(out tokens) - wall(1 token)) / (out - 1), median of 3."""
    from nanosim.gpu.llm import SamplingParams

    prompt = list(range(1, prompt_len + 1))

    def wall(n: int) -> float:
        t0 = time.perf_counter()
        llm.generate([prompt], SamplingParams(temperature=0.6, max_tokens=n, ignore_eos=True))
        return time.perf_counter() - t0

    wall(8)
    return statistics.median((wall(out) - wall(1)) / (out - 1) for _ in range(3))


def roofline_gpu(device_name: str, override: str | None = None):
    """The GpuSpec the roofline is priced with: --gpu if given, else the preset of the
    device this runs on (an H200 is 4.8 TB/s, not the H100's 3.35)."""
    from nanosim.config import get_gpu, gpu_for_device

    return get_gpu(override) if override else gpu_for_device(device_name)


def roofline(prompts, outs, model_name: str = MODEL, tp: int = 1, overlap: bool = True,
             gpu=None) -> dict:
    """The same scheduler in the simulator, with an ideal cost model (peak rates, no overhead)
    on ``gpu`` (a GpuSpec, see roofline_gpu; default h100); overlap=False adds each phase's
    compute and traffic instead of taking the larger (the looser bound
    ../shared/FACTS.md derives, ≈ 26k tok/s for this workload on an H100)."""
    from nanosim.config import EngineConfig, get_gpu, get_model
    from nanosim.core.engine import Engine
    from nanosim.core.request import Request
    from nanosim.sim.backend import SimBackend
    from nanosim.sim.costmodel import RooflineCostModel
    from nanosim.sim.memory import kv_capacity
    from nanosim.sim.simulator import simulate

    model, gpu = get_model(model_name), gpu or get_gpu("h100")
    print(f"roofline priced on {gpu.name}: {gpu.hbm_bytes_per_s / 1e12:.2f} TB/s HBM, "
          f"{gpu.bf16_flops_per_s / 1e12:.0f} TFLOP/s bf16, {gpu.memory_bytes / 2**30:.0f} GiB",
          flush=True)
    cfg = EngineConfig(block_size_tokens=256, max_num_seqs=512, max_num_batched_tokens=16384,
                       max_model_len=4096, chunked_prefill=False, tp=tp)
    cost = RooflineCostModel(model, gpu, tp, hbm_efficiency=1.0, gemm_efficiency=1.0, attn_efficiency=1.0,
                             step_overhead_s=0.0, per_seq_overhead_s=0.0, overlap=overlap)
    eng = Engine(cfg, SimBackend(cost), kv_capacity(model, gpu, cfg).num_blocks)
    reqs = [Request(i, 0.0, len(p), o) for i, (p, o) in enumerate(zip(prompts, outs))]
    end = simulate(eng, reqs)
    return {"seconds": end, "tok_s": sum(outs) / end, "gpu": gpu.name}


def hf_baseline(prompts, outs, n: int, model_name: str = MODEL) -> dict:
    """transformers generate(), one padded batch of the first n prompts, sdpa attention."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from nanosim.config import get_model

    m = get_model(model_name)
    cfg = Qwen3Config(vocab_size=m.vocab_size, hidden_size=m.hidden_size,
                      intermediate_size=m.intermediate_size, num_hidden_layers=m.num_layers,
                      num_attention_heads=m.num_q_heads, num_key_value_heads=m.num_kv_heads,
                      head_dim=m.head_dim, tie_word_embeddings=m.tie_word_embeddings, max_position_embeddings=4096)
    model = Qwen3ForCausalLM(cfg).to("cuda", torch.bfloat16).eval()
    ps, os_ = prompts[:n], outs[:n]
    width = max(len(p) for p in ps)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in ps], device="cuda")
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in ps], device="cuda")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad():
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max(os_),
                       min_new_tokens=max(os_), do_sample=True, temperature=0.6, top_k=0,
                       pad_token_id=0)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"seqs": n, "useful_tokens": sum(os_), "seconds": dt, "tok_s": sum(os_) / dt}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--attention", default="triton", choices=["triton", "flash"])
    ap.add_argument("--model", default=MODEL, help="a Qwen3 preset (random weights)")
    ap.add_argument("--tp", type=int, default=1, help="tensor-parallel ranks (GPUs)")
    ap.add_argument("--fused-ops", action=argparse.BooleanOptionalAction, default=None,
                    help="fused Triton norm/rope/activation kernels (default: on CUDA)")
    ap.add_argument("--hf-seqs", type=int, default=64,
                    help="HF baseline on the first N prompts in one padded batch (0 skips); "
                         "all 256 at once need more KV memory than an 80 GB card has")
    ap.add_argument("--chunked-prefill", action="store_true", help="vLLM v1 mixed steps")
    ap.add_argument("--quick", action="store_true",
                    help="skip the engine TPOT and the sampled batch-256 step (bigger models)")
    ap.add_argument("--decode-split-tokens", type=int, default=None,
                    help="A/B knob: longest context share per decode program (0: split by batch only)")
    ap.add_argument("--split-waves", type=int, default=None,
                    help="A/B knob: programs per SM the decode kernel's split count aims for")
    ap.add_argument("--no-order", action="store_true",
                    help="A/B knob: the decode kernel takes rows in batch order, not longest first")
    ap.add_argument("--no-fast-decode", action="store_true",
                    help="A/B knob: every engine step packs its inputs anew (no runner.step_next)")
    ap.add_argument("--no-pdl", action="store_true", help="programmatic dependent launch off (A/B)")
    ap.add_argument("--no-splitk", action="store_true",
                    help="A/B knob: o_proj/down_proj at 17-512 rows on cuBLAS, not the split-K GEMM")
    ap.add_argument("--sync-decode", action="store_true",
                    help="A/B knob: async decoding off (each step launched after the last one's tokens)")
    ap.add_argument("--async-ab", action="store_true",
                    help="only the throughput run and engine TPOT, async decoding off/on in turns")
    ap.add_argument("--json", default=None)
    ap.add_argument("--gpu", default=None,
                    help="GPU preset of the roofline (default: the one of this device)")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_throughput.py needs a CUDA GPU")
    from nanosim.config import ConfigError

    try:  # before any work: a device without a preset stops here
        gpu = roofline_gpu(torch.cuda.get_device_name(), a.gpu)
    except ConfigError as e:
        raise SystemExit(f"gpu_throughput.py: {e}") from None
    from nanosim.gpu.llm import LLM

    from nanosim.gpu.options import KERNELS

    kernels = KERNELS.with_(pdl=not a.no_pdl, decode_order=not a.no_order,
                            **({"splitk_max_m": 0} if a.no_splitk else {}),
                            **({} if a.decode_split_tokens is None else {"split_tokens": a.decode_split_tokens}),
                            **({} if a.split_waves is None else {"split_waves": a.split_waves}))
    prompts, outs = workload()
    t0 = time.perf_counter()
    extra = {} if a.fused_ops is None else {"fused_ops": a.fused_ops}
    llm = LLM(a.model, device="cuda", attention=a.attention, chunked_prefill=a.chunked_prefill,
              tensor_parallel_size=a.tp, async_decode=False if a.sync_decode else None,
              fast_decode=not a.no_fast_decode, kernels=kernels, **extra, **ENGINE)
    start_s = time.perf_counter() - t0
    res = {"gpu": torch.cuda.get_device_name(), "roofline_gpu": gpu.name,
           "model": a.model, "tp": a.tp,
           "decode_split_tokens": kernels.split_tokens,
           "decode_split_waves": kernels.split_waves,
           "splitk_max_rows": kernels.splitk_max_m,
           "attention": llm.runner.backend.name, "cuda_graphs": llm.runner.graphs is not None,
           "engine_start_s": start_s, "pdl": kernels.pdl,
           "chunked_prefill": a.chunked_prefill,
           "fast_decode": not a.no_fast_decode, "decode_order": kernels.decode_order,
           "async_decode": llm.backend.async_decode}
    if a.async_ab:
        res["async_ab"] = async_ab(llm, prompts, outs)
        res["roofline"] = roofline(prompts, outs, a.model, a.tp, gpu=gpu)
        for arm, runs in res["async_ab"].items():
            print(f"async {arm:3s}: tok/s " + ", ".join(f"{r['tok_s']:.0f}" for r in runs)
                  + f" ({100 * max(r['tok_s'] for r in runs) / res['roofline']['tok_s']:.1f}% of "
                  f"roofline at best); engine TPOT B=1 "
                  + ", ".join(f"{r['engine_tpot_b1_s'] * 1e3:.3f}" for r in runs) + " ms")
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=1, default=str)
        llm.close()
        return
    for key, fn in (("throughput", lambda: engine_throughput(llm, prompts, outs)),
                    ("decode_step_s", lambda: {b: decode_latency(llm.runner, b) for b in (1, 64, 256)}),
                    ("decode_step_next_s", lambda: {b: decode_latency(llm.runner, b, fast=True)
                                                    for b in (1, 64, 256)} if a.tp == 1 else {}),
                    ("decode_period_ahead_s", lambda: {b: decode_period_ahead(llm.runner, b)
                                                       for b in (1, 64, 256)} if llm.backend.async_decode else {}),
                    ("decode_step_b256_sampled_s", lambda: decode_latency(llm.runner, 256, temperature=0.6)),
                    ("engine_tpot_b1_s", lambda: engine_tpot(llm)),
                    ("roofline", lambda: roofline(prompts, outs, a.model, a.tp, gpu=gpu)),
                    ("roofline_additive", lambda: roofline(prompts, outs, a.model, a.tp, overlap=False, gpu=gpu))):
        if a.quick and key in ("decode_step_b256_sampled_s", "engine_tpot_b1_s"):
            continue
        res[key] = fn()
        print(key, json.dumps(res[key], default=str), flush=True)  # keep what is done
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=1, default=str)
    llm.close()
    llm = None  # (not del: the lambdas above read the name)
    gc.collect()
    torch.cuda.empty_cache()
    if a.hf_seqs:
        res["hf"] = hf_baseline(prompts, outs, a.hf_seqs, a.model)
        print("hf", json.dumps(res["hf"]), flush=True)
    thr = res["throughput"]["tok_s"]
    print(f"\n{res['gpu']} | {a.model} tp={a.tp} | attention {res['attention']} | "
          f"CUDA graphs {res['cuda_graphs']}")
    print(f"output tok/s        {thr:10.0f}  ({res['throughput']['output_tokens']} tokens in "
          f"{res['throughput']['seconds']:.2f} s)")
    print(f"roofline tok/s      {res['roofline']['tok_s']:10.0f}  -> {100 * thr / res['roofline']['tok_s']:.1f}% of roofline "
          f"(each phase's compute and traffic overlapped; {gpu.name} spec)")
    add = res["roofline_additive"]["tok_s"]
    print(f"additive bound      {add:10.0f}  -> {100 * thr / add:.1f}% (compute + traffic added, as "
          "FACTS.md derives its ≈ 26k)")
    for b, s in res["decode_step_s"].items():
        print(f"decode step B={b:<4d}  {s * 1e3:8.3f} ms  (runner.step, context 1024)")
    for b, s in res.get("decode_step_next_s", {}).items():
        print(f"decode step B={b:<4d}  {s * 1e3:8.3f} ms  (runner.step_next: the engine's steady decode)")
    for b, s in res.get("decode_period_ahead_s", {}).items():
        print(f"decode step B={b:<4d}  {s['period_s'] * 1e3:8.3f} ms  (step_next(ahead=True) back to "
              f"back: the async-decoding period; GPU {s['gpu_median_s'] * 1e3:.3f} ms per step)")
    if "engine_tpot_b1_s" in res:
        print(f"engine TPOT B=1     {res['engine_tpot_b1_s'] * 1e3:8.3f} ms  (whole engine, 128 in / 512 out)")
    if "hf" in res:
        print(f"HF generate tok/s   {res['hf']['tok_s']:10.0f}  ({res['hf']['seqs']} seqs) -> "
              f"{thr / res['hf']['tok_s']:.1f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1, default=str)


if __name__ == "__main__":
    main()
