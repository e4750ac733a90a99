"""Each loader on small hand-made files."""
import json
import warnings

import numpy as np
import pytest

from nanosim.core.request import Request
from nanosim.workload import FORMAT_NAMES, FORMATS, TraceError, detect_format, load_trace
from nanosim.workload.generators import gamma_arrivals


def test_every_format_module_has_the_interface():
    assert len(set(FORMAT_NAMES)) == len(FORMATS)
    for m in FORMATS:
        assert isinstance(m.NAME, str) and callable(m.sniff) and callable(m.load)


def test_azure_2023_exact_seven_digits(write):
    p = write("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                       "2023-11-16 18:17:03.9799600,4808,10\n"
                       "2023-11-16 18:17:04.0319600,3180,8\n"
                       "2023-11-16 18:17:04.0319601,110,27\n"
                       "2023-11-17 00:00:00.0000000,5,1\n")
    t = load_trace(p)
    assert [r.arrival_s for r in t] == [0.0, 0.052, 0.0520001, 20576.02004]
    assert [(r.prompt_tokens, r.output_tokens) for r in t][:2] == [(4808, 10), (3180, 8)]


def test_azure_2024_offsets(write):
    p = write("b.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                       "2024-05-10 00:00:00.0093400+00:00,100,20\n"
                       "2024-05-10 00:00:01.5093400+00:00,200,30\n"
                       "2024-05-10 00:00:01.5093400+00:00,300,40\n")
    assert detect_format(p) == "azure"
    assert [r.arrival_s for r in load_trace(p)] == [0.0, 1.5, 1.5]


def test_burstgpt_small(write):
    p = write("g.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                       "10,ChatGPT,100,50,150,Conversation log\n"
                       "12,GPT-4,0,0,0,Conversation log\n"
                       "15,GPT-4,30,0,30,API log\n"
                       "20,GPT-4,40,60,100,API log\n")
    with pytest.warns(Warning, match="dropped 2 failed rows"):
        t = load_trace(p)
    assert [(r.arrival_s, r.prompt_tokens, r.output_tokens) for r in t] == [(0.0, 100, 50),
                                                                             (10.0, 40, 60)]
    kept = load_trace(p, failed="keep")
    assert [(r.prompt_tokens, r.output_tokens) for r in kept] == [(100, 50), (1, 1), (30, 1),
                                                                   (40, 60)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g4 = load_trace(p, model=["GPT-4"], log_type="API log", failed="keep")
    assert [(r.arrival_s, r.prompt_tokens) for r in g4] == [(0.0, 30), (5.0, 40)]
    with pytest.raises(TraceError, match=r"g\.csv:3: failed request"):
        load_trace(p, failed="error")
    with pytest.raises(TraceError, match="no rows left.*values present: \\['ChatGPT', 'GPT-4'\\]"):
        load_trace(p, model="GPT-5")


def test_mooncake_small(write):
    rows = [{"timestamp": 1000, "input_length": 1000, "output_length": 5, "hash_ids": [7, 8]},
            {"timestamp": 1500, "input_length": 600, "output_length": 9, "hash_ids": [7, 9]},
            {"timestamp": 1500, "input_length": 512, "output_length": 1, "hash_ids": [7]}]
    p = write("m.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    t = load_trace(p)
    assert [r.arrival_s for r in t] == [0.0, 0.5, 0.5]
    assert t[1] == Request(1, 0.5, 600, 9, prefix_blocks=(7, 9), prefix_block_tokens=512)
    ids0, ids1 = t[0].token_ids(), t[1].token_ids()
    assert len(ids0) == 1000 and (ids0[:512] == ids1[:512]).all() and (ids0[512:600] !=
                                                                        ids1[512:600]).any()
    with pytest.warns(Warning, match="2 rows have len"):
        assert load_trace(p, block_tokens=1024)[0].prefix_block_tokens == 1024


def test_canonical_csv_all_columns(write):
    p = write("c.csv", "arrival_s,prompt_tokens,output_tokens,priority,prefix_blocks,"
                       "prefix_block_tokens,prompt_token_ids,comment\n"
                       "5.5,3,2,1,4 5,2,,hello\n"
                       "6.0,3,1,,,,10 11 12,\n"
                       "6.25,2,1,-1,4,,,\n")
    t = load_trace(p)
    assert t == [Request(0, 0.0, 3, 2, 1, None, (4, 5), 2),
                 Request(1, 0.5, 3, 1, 0, (10, 11, 12), None, 512),
                 Request(2, 0.75, 2, 1, -1, None, (4,), 512)]


def test_canonical_jsonl(write):
    p = write("c.jsonl", '{"arrival_s": 2, "prompt_tokens": 4, "output_tokens": 1}\n'
                         '{"arrival_s": 3.5, "prompt_tokens": 2, "output_tokens": 3, "priority": 2,'
                         ' "prefix_blocks": [1, 2], "prefix_block_tokens": 1, "extra": "x"}\n'
                         '{"arrival_s": 4, "prompt_tokens": 2, "output_tokens": 3, '
                         '"prompt_token_ids": [9, 9]}\n')
    assert detect_format(p) == "canonical_jsonl"
    assert load_trace(p) == [Request(0, 0.0, 4, 1), Request(1, 1.5, 2, 3, 2, None, (1, 2), 1),
                             Request(2, 2.0, 2, 3, 0, (9, 9))]


def test_vidur_arrival_options(write):
    p = write("v.csv", "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n"
                       "10,5,15,2\n20,4,24,5\n30,3,33,10\n")
    t = load_trace(p, arrivals=[1.0, 2.0, 4.0])
    assert [(r.arrival_s, r.prompt_tokens, r.output_tokens) for r in t] == [
        (0.0, 10, 5), (1.0, 20, 4), (3.0, 30, 3)]
    g = load_trace(p, arrivals=lambda n: gamma_arrivals(1.0, cv=2.0, num_requests=n, seed=1))
    assert len(g) == 3 and g == load_trace(
        p, arrivals=lambda n: gamma_arrivals(1.0, cv=2.0, num_requests=n, seed=1))
    with pytest.raises(TraceError, match=r"v\.csv:1: .*no timestamps.*rate_rps"):
        load_trace(p)
    q = write("va.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n0.5,10,5\n0.75,20,4\n")
    assert [r.arrival_s for r in load_trace(q)] == [0.0, 0.25]


SHAREGPT = [
    {"id": "a", "conversations": [{"from": "human", "value": "x" * 10},
                                  {"from": "gpt", "value": "y" * 7}]},
    {"id": "b", "conversations": [{"from": "gpt", "value": "no user first"}]},
    {"id": "c", "conversations": [{"role": "system", "content": "sys"},
                                  {"role": "user", "content": "one two three"},
                                  {"role": "assistant", "content": "four five"}]},
]


def test_sharegpt_chars_and_tokenizer(write):
    p = write("s.json", json.dumps(SHAREGPT, indent=1))
    assert detect_format(p) == "sharegpt"
    with pytest.warns(Warning, match="skipped 1 conversations"):
        t = load_trace(p, rate_rps=1.0)
    # ceil(10/4)=3 -> ceil(7/4)=2 ; ceil(13/4)=4 -> ceil(9/4)=3
    assert [(r.prompt_tokens, r.output_tokens) for r in t] == [(3, 2), (4, 3)]
    with pytest.warns(Warning):
        w = load_trace(p, arrivals=[0.0, 1.0], tokenizer=lambda s: [len(x) for x in s.split()],
                       keep_token_ids=True)
    assert [(r.prompt_tokens, r.output_tokens) for r in w] == [(1, 1), (3, 2)]
    assert w[1].prompt_token_ids == (3, 3, 5)
    with pytest.warns(Warning):
        n = load_trace(p, rate_rps=1.0, tokenizer=lambda s: len(s))
    assert n[0].prompt_tokens == 10
    j = write("s.jsonl", "\n".join(json.dumps(c) for c in SHAREGPT))
    with pytest.warns(Warning):
        assert [r.prompt_tokens for r in load_trace(j, rate_rps=1.0)] == [3, 4]


def test_forced_format_and_unknown(write):
    p = write("c.jsonl", '{"arrival_s": 0, "prompt_tokens": 4, "output_tokens": 1}\n')
    with pytest.raises(TraceError, match=r"c\.jsonl:1: missing key 'timestamp'"):
        load_trace(p, format="mooncake")
    with pytest.raises(TraceError) as e:
        load_trace(p, format="nope")
    assert all(name in str(e.value) for name in FORMAT_NAMES)
    q = write("x.txt", "hello,world\n1,2\n")
    with pytest.raises(TraceError) as e:
        load_trace(q)
    assert str(e.value).startswith(f"{q}:1: unknown trace format")
    assert all(name in str(e.value) for name in FORMAT_NAMES)
    with pytest.raises(TypeError):
        load_trace(p, no_such_option=1)


def test_sniffs_are_exclusive(shared_traces, write):
    """No two formats claim the same file (so detection order never matters)."""
    from nanosim.workload._parse import read_head

    files = [f for f in shared_traces.iterdir() if f.suffix in (".csv", ".jsonl")]
    files.append(write("s.json", json.dumps(SHAREGPT)))
    files.append(write("c.csv", "arrival_s,prompt_tokens,output_tokens\n0,1,1\n"))
    files.append(write("c.jsonl", '{"arrival_s": 0, "prompt_tokens": 1, "output_tokens": 1}\n'))
    for f in files:
        head = read_head(f)
        assert sum(m.sniff(f, head) for m in FORMATS) == 1, f.name


def test_no_token_ids_materialised(shared_traces):
    t = load_trace(shared_traces / "mooncake_conversation_first20min.jsonl")
    assert all(r.prompt_token_ids is None for r in t)
    assert np.array_equal(t[5].token_ids(), t[5].token_ids())
