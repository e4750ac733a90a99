"""Prometheus metrics under vLLM's names (vllm 0.26, ../shared/SERVING_AND_TRACES.md §2a), so
dashboards built for vLLM read a nanosim server. Every series has the labels model_name and
engine ("0"). Times are the engine's clock: wall seconds in real mode, simulated seconds in
sim mode (equal to wall seconds at --speedup 1).

One registry per server (no module-level collectors), exposed by app.py at /metrics.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
               10.0, 20.0, 40.0, 80.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
               120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
ITER_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
FINISH_REASONS = ("stop", "length", "abort")


def _one_two_five(limit: int) -> list[int]:
    """vLLM's token-count buckets: 1, 2, 5, 10, 20, 50, ... up to limit."""
    out, m = [], 1
    while True:
        for k in (1, 2, 5):
            if k * m > limit:
                return out
            out.append(k * m)
        m *= 10


class ServerMetrics:
    def __init__(self, model_name: str, max_model_len: int) -> None:
        self.registry = reg = CollectorRegistry()
        labels = ("model_name", "engine")
        self._values = (model_name, "0")

        def g(name, doc):
            return Gauge(name, doc, labels, registry=reg).labels(*self._values)

        def c(name, doc):
            return Counter(name, doc, labels, registry=reg).labels(*self._values)

        def h(name, doc, buckets):
            return Histogram(name, doc, labels, buckets=buckets, registry=reg).labels(*self._values)

        self.running = g("vllm:num_requests_running", "Requests in model execution batches.")
        self.waiting = g("vllm:num_requests_waiting", "Requests waiting to be processed.")
        self.kv_usage = g("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
        self.prefix_queries = c("vllm:prefix_cache_queries", "Prefix cache queries, in tokens.")
        self.prefix_hits = c("vllm:prefix_cache_hits", "Prefix cache hits, in tokens.")
        self.preemptions = c("vllm:num_preemptions", "Cumulative number of preemptions.")
        self.prompt_tokens = c("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = c("vllm:generation_tokens", "Number of generation tokens processed.")
        success = Counter("vllm:request_success", "Count of successfully processed requests.",
                          labels + ("finished_reason",), registry=reg)
        self.success = {r: success.labels(*self._values, r) for r in FINISH_REASONS}
        self.ttft = h("vllm:time_to_first_token_seconds", "Time to first token in seconds.", TTFT_BUCKETS)
        self.itl = h("vllm:inter_token_latency_seconds", "Inter-token latency in seconds.", ITL_BUCKETS)
        self.tpot = h("vllm:request_time_per_output_token_seconds",
                      "Per request: (last token - first token) / (output tokens - 1).", ITL_BUCKETS)
        self.e2e = h("vllm:e2e_request_latency_seconds", "End-to-end request latency in seconds.",
                     E2E_BUCKETS)
        tok_buckets = _one_two_five(max_model_len)
        self.req_prompt = h("vllm:request_prompt_tokens", "Prompt tokens per request.", tok_buckets)
        self.req_generation = h("vllm:request_generation_tokens", "Generated tokens per request.",
                                tok_buckets)
        self.req_max_tokens = h("vllm:request_params_max_tokens", "max_tokens per request.",
                                tok_buckets)
        self.iteration_tokens = h("vllm:iteration_tokens_total", "Tokens per engine step.",
                                  ITER_BUCKETS)
        self.sim_lag = g("nanosim:sim_lag_seconds",
                         "Sim mode: how far the last token emission ran behind its predicted "
                         "wall time (0 in real mode).")
        self.sim_lag_max = g("nanosim:sim_lag_max_seconds",
                             "Sim mode: the largest such lateness since the server started.")
        self._hits = self._queries = 0

    def observe_cache(self, query_tokens: int, hit_tokens: int) -> None:
        """Cumulative block-manager counters -> counter increments."""
        if query_tokens > self._queries:
            self.prefix_queries.inc(query_tokens - self._queries)
            self._queries = query_tokens
        if hit_tokens > self._hits:
            self.prefix_hits.inc(hit_tokens - self._hits)
            self._hits = hit_tokens

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
