"""Property-based fuzzing of every trace loader (issue 21, "Fuzzing"): valid files of each
format corrupted at random (bytes replaced, inserted, deleted, truncations, numbers swapped
for huge and odd ones), and random bytes. Every input either loads as requests or raises
``TraceError`` whose message starts with "path:line: " -- never any other exception."""
import re
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanosim.core.request import Request
from nanosim.workload import FORMAT_NAMES, TraceError, load_trace

VALID = {
    "azure": "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,4808,10\n"
             "2023-11-16 18:17:04.0000000,120,33\n2023-11-16 18:17:05.5,77,1\n",
    "burstgpt": "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                "5,ChatGPT,472,18,490,Conversation log\n6,GPT-4,0,0,0,API log\n"
                "9,ChatGPT,40,8,48,Conversation log\n",
    "vidur": "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n"
             "3772,54,3826,69.85\n100,20,120,5.0\n7,7,14,1.0\n",
    "canonical_csv": "arrival_s,prompt_tokens,output_tokens,priority,prefix_blocks,"
                     "prefix_block_tokens\n0.0,131,240,0,0 1,128\n0.5,64,3,1,0,128\n2,9,9,0,,128\n",
    "mooncake": '{"timestamp": 0, "input_length": 700, "output_length": 50, "hash_ids": [0, 1]}\n'
                '{"timestamp": 12, "input_length": 300, "output_length": 5, "hash_ids": [0]}\n',
    "canonical_jsonl": '{"arrival_s": 0.0, "prompt_tokens": 20, "output_tokens": 5, '
                       '"prefix_blocks": [0, 1], "prefix_block_tokens": 16}\n'
                       '{"arrival_s": 1.5, "prompt_tokens": 8, "output_tokens": 2, "priority": 2, '
                       '"prompt_token_ids": [1, 2, 3, 4, 5, 6, 7, 8]}\n',
    "sharegpt": '[{"id": "a", "conversations": [{"from": "human", "value": "Hi there"}, '
                '{"from": "gpt", "value": "Hello! How can I help?"}]}, {"id": "b", '
                '"conversations": [{"role": "user", "content": "2+2?"}, {"role": "assistant", '
                '"content": "4"}]}]\n',
}
assert set(VALID) == set(FORMAT_NAMES)
NEEDS_RATE = {"vidur", "sharegpt"}

ODD_NUMBERS = ["1e20", "99999999999999999999", "-1", "-0", "0", "nan", "NaN", "inf", "-inf",
               "1e-300", "1.5", "0x10", "1_000", "２", " 7 ", "", "9" * 400, "1e308", "-1e308",
               "2147483648", "true", "null", "[]", "{}", '"5"']
settings.register_profile("fuzz", max_examples=60, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])


def check_loads_or_trace_error(path, fmt):
    options = {"rate_rps": 2.0} if fmt in NEEDS_RATE else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TraceWarnings (dropped rows) are allowed
        for kw in ({"format": fmt, **options}, {}):
            try:
                reqs = load_trace(path, **kw)
            except TraceError as e:
                assert re.match(re.escape(str(path)) + r":\d+: \S", str(e)), str(e)
            else:
                assert reqs and all(isinstance(r, Request) for r in reqs)


@st.composite
def corrupted(draw, text: str) -> bytes:
    data = bytearray(text.encode())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "number", "dup"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "replace" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 20))]
        elif op == "truncate":
            del data[pos:]
        elif op == "dup":
            lines = bytes(data).splitlines(keepends=True)
            if lines:
                i = draw(st.integers(0, len(lines) - 1))
                lines.insert(i, lines[i])
                data = bytearray(b"".join(lines))
        else:  # a number of the file replaced by a huge or odd one
            spans = [m.span() for m in re.finditer(rb"-?\d+(\.\d+)?", bytes(data))]
            if spans:
                a, b = draw(st.sampled_from(spans))
                data[a:b] = draw(st.sampled_from(ODD_NUMBERS)).encode()
    return bytes(data)


@pytest.mark.parametrize("fmt", sorted(VALID))
def test_valid_samples_load(tmp_path, fmt):
    path = tmp_path / "t"
    path.write_text(VALID[fmt])
    options = {"rate_rps": 2.0} if fmt in NEEDS_RATE else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(load_trace(path, **options)) == len(load_trace(path, format=fmt, **options)) >= 2


@pytest.mark.parametrize("fmt", sorted(VALID))
@pytest.mark.parametrize("prefix", [b"\n\n", b"\xef\xbb\xbf\n", b"\x00", b" \r\n"])
def test_found_by_fuzzing(tmp_path, fmt, prefix):
    """Inputs a longer fuzzing run found (blank lines before a CSV header: pandas'
    EmptyDataError escaped; a non-UTF-8 byte in a JSON lines file: UnicodeDecodeError)."""
    path = tmp_path / "t"
    path.write_bytes(prefix + VALID[fmt].encode())
    check_loads_or_trace_error(path, fmt)
    path.write_bytes(VALID[fmt].encode()[:5] + b"\x80" + VALID[fmt].encode()[5:])
    check_loads_or_trace_error(path, fmt)
    path.write_text(re.sub(r"\b0\b", "9" * 400, VALID[fmt], count=1))  # int too large for a float
    check_loads_or_trace_error(path, fmt)


@pytest.mark.parametrize("fmt", sorted(VALID))
@settings(settings.get_profile("fuzz"))
@given(data=st.data())
def test_corrupted_files(tmp_path, fmt, data):
    path = tmp_path / f"{fmt}.trace"
    path.write_bytes(data.draw(corrupted(VALID[fmt])))
    check_loads_or_trace_error(path, fmt)


@settings(settings.get_profile("fuzz"))
@given(raw=st.binary(max_size=300), fmt=st.sampled_from(sorted(VALID)))
def test_random_bytes(tmp_path, raw, fmt):
    path = tmp_path / "random.trace"
    path.write_bytes(raw)
    check_loads_or_trace_error(path, fmt)


@settings(settings.get_profile("fuzz"))
@given(fmt=st.sampled_from(sorted(VALID)), value=st.sampled_from(ODD_NUMBERS) | st.integers().map(str)
       | st.floats(allow_nan=True, allow_infinity=True).map(repr))
def test_every_number_odd(tmp_path, fmt, value):
    """All numbers of a valid file replaced by one huge/odd value at once."""
    path = tmp_path / "odd.trace"
    path.write_text(re.sub(r"-?\d+(\.\d+)?", value, VALID[fmt]))
    check_loads_or_trace_error(path, fmt)
