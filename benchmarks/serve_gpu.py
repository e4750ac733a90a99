"""`nanosim serve` on a GPU against offline LLM.generate, and `nanosim serve --sim` (the
digital twin) against the same client, side by side.

    python benchmarks/serve_gpu.py --azure ../shared/traces/azure2023_conv_first20min.csv \
        --json benchmarks/results/serve_h100.json

One process per engine, so GPU memory is free between them:
 1. offline: LLM.generate of nano-vLLM's workload (benchmarks/gpu_throughput.py: Qwen3-0.6B
    shapes, random weights, 256 requests, lengths uniform in [100, 1024], temperature 0.6,
    ignore_eos; warmed up), output tok/s.
 2. real server: `nanosim serve` with the same engine options, then `nanosim bench serve`
    (a separate process) with the same lengths all sent at t=0, and an Azure conv window
    (the first --azure-requests requests, clipped to max_model_len) at two loads
    (--azure-scales: multiples of the trace's rate).
 2b. A/B on the nano-vLLM workload: the engine in the server's own process
    (--no-engine-process: steps in a worker thread, sharing the GIL with HTTP); with
    --stream-interval-ab also --stream-interval 4 (tokens streamed every 4 steps after the first).
 3. sim server: `nanosim serve --sim --gpu h100` (the shipped 0.6B H100 profile; on an H200,
    --gpu h200, which has no shipped profile: the roofline) and the same
    bench runs; and `nanosim simulate` of the same traces (the prediction without HTTP).
TPOT everywhere: (last token - first token) / (output tokens - 1) per request (vLLM bench
serve's definition; GuideLLM's "ITL"). Output tok/s = output tokens / (last finish - first
arrival). The server-vs-offline ratio uses the nano-vLLM workload only (all requests at t=0,
as generate() gets them); the Azure runs are arrival-bound.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MODEL = "qwen3-0.6b"
ENGINE = ["--block-size", "256", "--max-num-seqs", "512", "--max-num-batched-tokens", "16384",
          "--max-model-len", "8192"]


def offline(out_json: str) -> None:
    from gpu_throughput import workload

    from nanosim.gpu.llm import LLM, SamplingParams

    import torch

    prompts, outs = workload()
    llm = LLM(MODEL, block_size=256, max_num_seqs=512, max_num_batched_tokens=16384,
              max_model_len=8192)
    llm.warmup()
    llm.generate([[1, 2, 3]] * 4, SamplingParams(temperature=0.6, max_tokens=8, ignore_eos=True))
    llm.reset()
    sps = [SamplingParams(temperature=0.6, ignore_eos=True, max_tokens=n) for n in outs]
    runs = []
    for _ in range(2):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = llm.generate(prompts, sps)
        dt = time.perf_counter() - t0
        n = sum(len(r["token_ids"]) for r in res)
        runs.append({"output_tokens": n, "seconds": dt, "tok_s": n / dt})
        llm.reset()
        print("offline", json.dumps(runs[-1]), flush=True)
    Path(out_json).write_text(json.dumps({"runs": runs, "gpu": torch.cuda.get_device_name()}))


def write_traces(tmp: Path, azure: str | None, n_azure: int, scales: list[float]) -> dict:
    from gpu_throughput import workload

    from nanosim.core.request import Request
    from nanosim.workload import load_trace, write_canonical
    from nanosim.workload.transforms import clip_lengths, scale_rate

    prompts, outs = workload()
    traces = {"nanovllm": tmp / "nanovllm.csv"}
    write_canonical([Request(i, 0.0, len(p), o) for i, (p, o) in enumerate(zip(prompts, outs))],
                    traces["nanovllm"])
    if azure:
        window = clip_lengths(load_trace(azure)[:n_azure], 8192)
        for s in scales:
            traces[f"azure_conv_x{s:g}"] = tmp / f"azure_x{s:g}.csv"
            write_canonical(scale_rate(window, s), traces[f"azure_conv_x{s:g}"])
    return traces


def start_server(args: list[str], log: Path):
    proc = subprocess.Popen([sys.executable, "-m", "nanosim", "serve", "--port", "0",
                             "--log-level", "warning", *args], stdout=subprocess.PIPE,
                            stderr=open(log, "w"), text=True, cwd=ROOT)
    line = ""
    while "listening on" not in line:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
    url = line.split("listening on ")[1].strip()
    import httpx

    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server never became healthy")


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bench(url: str, trace: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "nanosim", "bench", "serve", "--endpoint", url, "--trace",
           str(trace), "--out", str(out), "--no-progress", "--temperature", "0.6",
           "--max-concurrency", "1024", "--client-processes", "4", "--slo-ttft-ms", "1000",
           "--slo-tpot-ms", "50"]
    subprocess.run(cmd, cwd=ROOT, check=False, stdout=subprocess.DEVNULL)
    return figures(json.loads((out / "summary.json").read_text()))


def figures(s: dict) -> dict:
    f = {"requests": s["requests"], "finished": s["finished"], "errors": s.get("errors", 0),
         "output_tokens": s["output_tokens"], "duration_s": s["duration_s"],
         "output_tok_s": s["output_tok_s"]}
    for k in ("ttft_s", "tpot_s", "e2e_s", "itl_s"):
        if k in s:
            f[k] = {"p50": s[k]["p50"], "p99": s[k]["p99"]}
    if "lateness_s" in s:
        f["lateness_max_s"] = s["lateness_s"]["max"]
    if "goodput" in s:
        f["goodput_fraction"] = s["goodput"]["fraction"]
    return f


def simulate(trace: Path, out: Path, gpu: str) -> dict:
    subprocess.run([sys.executable, "-m", "nanosim", "simulate", "--trace", str(trace), "--model",
                    MODEL, "--gpu", gpu, *ENGINE, "--out", str(out), "--no-progress"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return figures(json.loads((out / "summary.json").read_text()))


def metric(url: str, name: str) -> float | None:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for s in fam.samples:
            if s.name == name:
                return s.value
    return None


def serve_and_bench(label: str, server_args: list[str], traces: dict, tmp: Path,
                    only: list[str] | None = None) -> dict:
    proc, url = start_server(server_args, tmp / f"{label}.log")
    res = {}
    try:
        for name, path in traces.items():
            if only is None or name in only:
                res[name] = bench(url, path, tmp / f"{label}_{name}")
                print(label, name, json.dumps(res[name]), flush=True)
        res["sim_lag_max_s"] = metric(url, "nanosim:sim_lag_max_seconds")
    finally:
        stop(proc)
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--azure", default=None, help="Azure conv trace (CSV)")
    p.add_argument("--azure-requests", type=int, default=600)
    p.add_argument("--azure-scales", type=float, nargs="+", default=[4.0, 16.0])
    p.add_argument("--json", default=None)
    p.add_argument("--offline-only", default=None, help=argparse.SUPPRESS)
    p.add_argument("--sim-only", action="store_true",
                   help="only the simulated side (simulate, sim server on --sim-gpu): runs without a GPU")
    p.add_argument("--sim-gpu", default="h100", help="with --sim-only: the GPU preset")
    p.add_argument("--no-ab", action="store_true",
                   help="skip the A/B of the engine in the server's process")
    p.add_argument("--stream-interval-ab", action="store_true",
                   help="also the A/B of --stream-interval 4")
    a = p.parse_args()
    if a.offline_only:
        offline(a.offline_only)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="serve_gpu_"))
    traces = write_traces(tmp, a.azure, a.azure_requests, a.azure_scales)
    if a.sim_only:
        off = {"runs": [], "gpu": a.sim_gpu.upper()}
    else:
        subprocess.run([sys.executable, __file__, "--offline-only", str(tmp / "offline.json")],
                       check=True, cwd=ROOT)
        off = json.loads((tmp / "offline.json").read_text())
    result = {"model": MODEL, "gpu": off["gpu"], "engine": ENGINE, "offline": off["runs"],
              "tpot_definition": "(last token - first token) / (output tokens - 1) per request "
                                 "(vLLM bench serve's TPOT)",
              "azure": {"trace": a.azure and os.path.basename(a.azure),
                        "requests": a.azure_requests, "rate_scales": a.azure_scales}}

    def save() -> None:  # after every phase: a run cut short keeps what it measured
        if a.json:
            Path(a.json).write_text(json.dumps(result, indent=2) + "\n")

    if not a.sim_only:
        result["real"] = serve_and_bench("real", ["--model", MODEL, *ENGINE], traces, tmp)
        result["server_vs_offline"] = (result["real"]["nanovllm"]["output_tok_s"]
                                       / max(r["tok_s"] for r in off["runs"]))
        save()
    if not (a.no_ab or a.sim_only):
        result["real_one_process"] = serve_and_bench(
            "real_one_process", ["--model", MODEL, *ENGINE, "--no-engine-process"], traces, tmp,
            ["nanovllm"])
        if a.stream_interval_ab:
            result["real_stream_interval_4"] = serve_and_bench(
                "real_si4", ["--model", MODEL, *ENGINE, "--stream-interval", "4"], traces, tmp,
                ["nanovllm"])
        save()
    # the simulated card is the measured one: h100 (the shipped profile) or h200 (no shipped
    # profile: the roofline)
    sim_gpu = a.sim_gpu if a.sim_only else ("h200" if "H200" in off["gpu"] else "h100")
    result["sim_gpu"] = sim_gpu
    result["simulate"] = {name: simulate(path, tmp / f"simulate_{name}", sim_gpu)
                          for name, path in traces.items()}
    save()
    result["sim_server"] = serve_and_bench("sim", ["--sim", "--model", MODEL, "--gpu", sim_gpu, *ENGINE],
                                           traces, tmp)
    save()
    if not a.sim_only:
        best_off = max(r["tok_s"] for r in off["runs"])
        served = result["real"]["nanovllm"]["output_tok_s"]
        print(f"offline {best_off:,.0f} tok/s; server {served:,.0f} tok/s = "
              f"{100 * served / best_off:.1f}% of offline")
    cols = ("sim_server", "simulate") if a.sim_only else ("real", "sim_server", "simulate")
    for name in traces:
        row = [result[k][name] for k in cols]
        print(f"{name:>16}  " + "  |  ".join(
            f"{r['output_tok_s']:8,.0f} tok/s TTFT {r['ttft_s']['p50'] * 1e3:7.1f}/{r['ttft_s']['p99'] * 1e3:7.1f}"
            f" TPOT {r['tpot_s']['p50'] * 1e3:5.2f}/{r['tpot_s']['p99'] * 1e3:5.2f} ms" for r in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
