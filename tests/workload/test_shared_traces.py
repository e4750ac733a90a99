"""Every loader on every public sample in ../shared/traces, checked against SOURCES.md."""
import warnings

import numpy as np
import pytest

from nanosim.workload import detect_format, load_trace, trace_stats

# file, format, options, rows, in_mean, out_mean, span_s, rate_rps  (SOURCES.md table)
CASES = [
    ("azure2023_code_first20min.csv", "azure", {}, 3628, 2014.9, 27.7, 1199.1, 3.025),
    ("azure2023_conv_first20min.csv", "azure", {}, 5985, 1150.0, 252.7, 1199.7, 4.988),
    ("burstgpt1_first400rows_t_lt_33000s.csv", "burstgpt", {"failed": "keep"}, 171, None, None,
     32941.0, 0.005),
    ("mooncake_conversation_first20min.jsonl", "mooncake", {}, 3658, 13403.1, 348.5, 1200.0,
     3.048),
    ("mooncake_synthetic_first340s.jsonl", "mooncake", {}, 1237, 11784.0, 197.2, 339.8, 3.638),
    ("vidur_arxiv_summarization_rows0-13999.csv", "vidur", {"rate_rps": 2.0}, 14000, 2578.5,
     296.3, None, None),
]


def _canonical(trace):
    assert [r.request_id for r in trace] == list(range(len(trace)))
    t = np.array([r.arrival_s for r in trace])
    assert t[0] == 0.0 and (np.diff(t) >= 0).all()


@pytest.mark.parametrize("name,fmt,opts,rows,in_mean,out_mean,span,rate", CASES,
                         ids=[c[0] for c in CASES])
def test_public_sample(shared_traces, name, fmt, opts, rows, in_mean, out_mean, span, rate):
    path = shared_traces / name
    assert detect_format(path) == fmt
    trace = load_trace(path, **opts)
    assert trace == load_trace(path, format=fmt, **opts)  # forcing the same format
    _canonical(trace)
    s = trace_stats(trace)
    assert s["num_requests"] == rows
    if in_mean is not None:
        assert s["prompt_tokens"]["mean"] == pytest.approx(in_mean, abs=0.05)
        assert s["output_tokens"]["mean"] == pytest.approx(out_mean, abs=0.05)
    if span is not None:
        assert s["span_s"] == pytest.approx(span, abs=0.05)
        assert s["mean_rate_rps"] == pytest.approx(rate, abs=0.0005)


def test_azure_code_percentiles_and_exact_times(shared_traces):
    trace = load_trace(shared_traces / "azure2023_code_first20min.csv")
    s = trace_stats(trace)
    assert s["prompt_tokens"]["p50"] == 1397.0 and s["prompt_tokens"]["p99"] == 7436.0
    assert s["output_tokens"]["p50"] == 13.0
    # first rows: 18:17:03.9799600, 18:17:04.0319600 -> exactly 0.052 s apart
    assert trace[1].arrival_s == 0.052
    assert (trace[0].prompt_tokens, trace[0].output_tokens) == (4808, 10)


def test_burstgpt_sample_failures_and_filters(shared_traces):
    path = shared_traces / "burstgpt1_first400rows_t_lt_33000s.csv"
    with pytest.warns(Warning, match="dropped 8 failed rows"):
        kept = load_trace(path)
    assert len(kept) == 171 - 8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        everything = load_trace(path, failed="keep")
        gpt4 = load_trace(path, model="GPT-4", failed="keep")
    assert len(everything) == 171 and len(gpt4) == 25
    assert sum(r.output_tokens == 1 and r.prompt_tokens == 1 for r in everything) == 8
    api = load_trace(path, log_type="API log", failed="keep")
    assert len(api) == 2
    # absolute timestamps 5 .. 32946 s become 0 .. 32941 s
    assert everything[-1].arrival_s == 32941.0


def test_vidur_sample_needs_arrivals(shared_traces):
    from nanosim.workload import TraceError

    path = shared_traces / "vidur_arxiv_summarization_rows0-13999.csv"
    with pytest.raises(TraceError, match="rate_rps"):
        load_trace(path)
    a = load_trace(path, rate_rps=5.0, seed=3)
    assert a == load_trace(path, rate_rps=5.0, seed=3)
    assert a != load_trace(path, rate_rps=5.0, seed=4)
    assert (a[0].prompt_tokens, a[0].output_tokens) == (3772, 54)


def test_mooncake_sample_blocks(shared_traces):
    trace = load_trace(shared_traces / "mooncake_conversation_first20min.jsonl")
    r = trace[0]
    assert r.prefix_blocks == tuple(range(14)) and r.prefix_block_tokens == 512
    assert r.prompt_tokens == 6758 and r.prompt_token_ids is None
    assert all(len(r.prefix_blocks) == -(-r.prompt_tokens // 512) for r in trace)
