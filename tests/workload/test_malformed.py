"""Malformed input: ONE TraceError whose message starts with "path:line: "."""
import pytest

from nanosim.workload import TraceError, load_trace

CANON = "arrival_s,prompt_tokens,output_tokens\n"
AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
BURST = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
MOON = '{"timestamp": %s, "input_length": %s, "output_length": %s, "hash_ids": %s}\n'
VIDUR = "num_prefill_tokens,num_decode_tokens\n"

# name, file text, options, expected line, message fragment
CASES = [
    ("empty.csv", "", {}, 1, "empty file"),
    ("blank.csv", "\n\n  \n", {}, 1, "empty file"),
    ("header_only.csv", CANON, {}, 2, "no data rows"),
    ("missing_col.csv", "arrival_s,prompt_tokens\n0,1\n", {"format": "canonical_csv"}, 1,
     "missing column(s) ['output_tokens']"),
    ("nan.csv", CANON + "0,5,5\n1,NaN,5\n", {}, 3, "prompt_tokens: 'NaN' is not a finite"),
    ("text.csv", CANON + "0,5,5\n1,5,5\n2,5,lots\n", {}, 4, "output_tokens: 'lots'"),
    ("empty_cell.csv", CANON + "0,5,5\n1,,5\n", {}, 3, "prompt_tokens: empty cell"),
    ("negative.csv", CANON + "0,-5,5\n", {}, 2, "prompt_tokens: '-5' must be >= 1"),
    ("zero.csv", CANON + "0,5,5\n0,5,0\n", {}, 3, "output_tokens: '0' must be >= 1"),
    ("fraction.csv", CANON + "0,5.5,5\n", {}, 2, "prompt_tokens: '5.5' is not an integer"),
    ("neg_time.csv", CANON + "-1,5,5\n", {}, 2, "arrival_s: '-1' must be >= 0"),
    ("inf_time.csv", CANON + "0,5,5\ninf,5,5\n", {}, 3, "arrival_s: 'inf' is not a finite"),
    ("unsorted.csv", CANON + "0,5,5\n2,5,5\n1,5,5\n3,5,5\n", {}, 4, "goes backwards"),
    ("blank_mid.csv", CANON + "0,5,5\n\n1,5,5\n", {}, 3, "blank line inside the data"),
    ("extra_field.csv", CANON + "0,5,5\n1,5,5,9\n", {}, 3, "malformed CSV row"),
    ("bad_blocks.csv", "arrival_s,prompt_tokens,output_tokens,prefix_blocks\n0,5,5,1 2\n"
     "1,5,5,1 x\n", {}, 3, "prefix_blocks: '1 x' is not space-separated integers"),
    ("neg_blocks.csv", "arrival_s,prompt_tokens,output_tokens,prefix_blocks\n0,5,5,-1\n", {}, 2,
     "ids must be >= 0"),
    ("ids_count.csv", "arrival_s,prompt_tokens,output_tokens,prompt_token_ids\n0,3,5,1 2 3\n"
     "1,3,5,1 2\n", {}, 3, "2 prompt token ids but prompt_tokens=3"),
    ("bad_prio.csv", "arrival_s,prompt_tokens,output_tokens,priority\n0,3,5,high\n", {}, 2,
     "priority: 'high'"),
    # canonical JSONL
    ("bad.jsonl", '{"arrival_s": 0, "prompt_tokens": 1, "output_tokens": 1}\n'
     '{"arrival_s": 1, "prompt_tokens": 1, "output_tokens": 1}\n{"arrival_s": 2, "prompt\n',
     {}, 3, "bad JSON"),
    ("notobj.jsonl", '{"arrival_s": 0, "prompt_tokens": 1, "output_tokens": 1}\n[1, 2]\n', {},
     2, "expected a JSON object"),
    ("str.jsonl", '{"arrival_s": 0, "prompt_tokens": "12", "output_tokens": 1}\n', {}, 1,
     "prompt_tokens: '12' is not a finite number"),
    ("nan.jsonl", '{"arrival_s": 0, "prompt_tokens": 1, "output_tokens": 1}\n\n'
     '{"arrival_s": NaN, "prompt_tokens": 1, "output_tokens": 1}\n', {}, 3,
     "arrival_s: nan is not a finite"),
    ("missing.jsonl", '{"arrival_s": 0, "prompt_tokens": 1, "output_tokens": 1}\n'
     '{"arrival_s": 1, "prompt_tokens": 1}\n', {}, 2, "missing key 'output_tokens'"),
    ("unsorted.jsonl", '{"arrival_s": 5, "prompt_tokens": 1, "output_tokens": 1}\n'
     '{"arrival_s": 1, "prompt_tokens": 1, "output_tokens": 1}\n', {}, 2, "goes backwards"),
    ("blocks.jsonl", '{"arrival_s": 0, "prompt_tokens": 1, "output_tokens": 1, '
     '"prefix_blocks": [1, "a"]}\n', {}, 1, "prefix_blocks: expected a list of integers"),
    # Azure
    ("az_ts.csv", AZURE + "2023-11-16 18:17:03.9799600,1,1\n2023/11/16 18:17:04,1,1\n", {}, 3,
     "TIMESTAMP '2023/11/16 18:17:04' is not"),
    ("az_date.csv", AZURE + "2023-11-16 18:17:03.9799600,1,1\n2023-13-16 18:17:04.0,1,1\n", {},
     3, "not a valid date"),
    ("az_zone.csv", AZURE + "2024-05-10 00:00:00.1+00:00,1,1\n2024-05-10 00:00:01.1,1,1\n", {},
     3, "mixes values with and without a time zone"),
    ("az_sorted.csv", AZURE + "2023-11-16 18:17:03.9799600,1,1\n2023-11-16 18:17:03.9799599,1,1\n",
     {}, 3, "is earlier than 2023-11-16 18:17:03.9799600 on line 2"),
    ("az_zero.csv", AZURE + "2023-11-16 18:17:03.9799600,1,0\n", {}, 2,
     "GeneratedTokens: '0' must be >= 1"),
    ("az_missing.csv", "TIMESTAMP,ContextTokens,GeneratedTokens2\n2023-11-16 18:17:03.97,1,1\n",
     {"format": "azure"}, 1, "missing column(s) ['GeneratedTokens']"),
    # BurstGPT
    ("bg_sorted.csv", BURST + "10,ChatGPT,5,5,10,Conversation log\n9,ChatGPT,5,5,10,API log\n",
     {}, 3, "Timestamp goes backwards"),
    ("bg_neg.csv", BURST + "10,ChatGPT,-5,5,0,Conversation log\n", {}, 2,
     "Request tokens: '-5' must be >= 0"),
    ("bg_nan.csv", BURST + "10,ChatGPT,5,5,10,Conversation log\n11,ChatGPT,5,nan,10,x\n", {}, 3,
     "Response tokens: 'nan' is not a finite"),
    ("bg_nomodel.csv", "Timestamp,Request tokens,Response tokens\n1,2,3\n", {"model": "GPT-4"},
     1, "missing column(s) ['Model']"),
    # Mooncake
    ("mc_ids.jsonl", MOON % (0, 10, 1, "[0]") + MOON % (1, 10, 1, '"abc"'), {}, 2,
     "hash_ids: expected a list of integers"),
    ("mc_zero.jsonl", MOON % (0, 10, 1, "[0]") + MOON % (1, 10, 0, "[1]"), {}, 2,
     "output_length: 0 must be >= 1"),
    ("mc_neg.jsonl", MOON % (-5, 10, 1, "[0]"), {}, 1, "timestamp: -5 must be >= 0"),
    ("mc_sorted.jsonl", MOON % (5, 10, 1, "[0]") + MOON % (4, 10, 1, "[1]"), {}, 2,
     "timestamp goes backwards"),
    ("mc_noids.jsonl", MOON % (0, 10, 1, "[0]") + '{"timestamp": 1, "input_length": 1, '
     '"output_length": 1}\n', {"format": "mooncake"}, 2, "missing key 'hash_ids'"),
    # vidur / ShareGPT
    ("vd_zero.csv", VIDUR + "10,5\n0,5\n", {"rate_rps": 1.0}, 3,
     "num_prefill_tokens: '0' must be >= 1"),
    ("vd_norate.csv", VIDUR + "10,5\n", {}, 1, "no timestamps: pass rate_rps="),
    ("sg_bad.json", '[{"conversations": [\n  {"from": "human", "value": "hi"},\n  oops]}]', {}, 3,
     "bad JSON"),
    ("sg_item.json", '[{"conversations": []}, 5]', {"format": "sharegpt", "rate_rps": 1}, 1,
     "conversation #1: expected an object"),
    ("sg_none.json", '[{"conversations": [{"from": "human", "value": "hi"}]}]',
     {"rate_rps": 1.0}, 1, "no usable conversations"),
    # unknown
    ("unknown.csv", "a,b,c\n1,2,3\n", {}, 1, "unknown trace format"),
    ("unknown.jsonl", '{"a": 1}\n', {}, 1, "unknown trace format"),
]


@pytest.mark.parametrize("name,text,opts,line,fragment", CASES, ids=[c[0] for c in CASES])
def test_malformed(write, name, text, opts, line, fragment):
    p = write(name, text)
    with pytest.warns(Warning) if name == "sg_none.json" else _nothing():
        with pytest.raises(TraceError) as e:
            load_trace(p, **opts)
    err = e.value
    assert (err.path, err.line) == (str(p), line), str(err)
    assert str(err).startswith(f"{p}:{line}: "), str(err)
    assert fragment in err.problem, str(err)


def test_bad_last_row_means_nothing_loaded(write):
    rows = "".join(f"{i},10,10\n" for i in range(1000))
    p = write("late.csv", CANON + rows + "1000,10,-1\n")
    result = None
    with pytest.raises(TraceError, match=r"late\.csv:1002: "):
        result = load_trace(p)
    assert result is None


def test_trace_error_is_a_value_error_and_picklable():
    import pickle

    e = TraceError("x.csv", 7, "boom")
    assert isinstance(e, ValueError) and str(e) == "x.csv:7: boom"
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.path, e2.line, e2.problem, str(e2)) == ("x.csv", 7, "boom", "x.csv:7: boom")


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
