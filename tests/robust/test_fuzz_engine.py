"""Fuzz the engine flags through `nanosim simulate` on a tiny trace, in process (issue 21,
"Fuzzing"): any mix of valid, boundary, negative, huge and non-numeric values ends with
exit code 0 and a run written, or exit code 2 and exactly one error line -- never a
traceback (an exception escaping main fails the test)."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.robust.helpers import rc_of

TRACE = ("arrival_s,prompt_tokens,output_tokens\n0.0,40,6\n0.01,300,3\n0.02,17,20\n"
         "0.5,1200,2\n0.6,64,64\n")


def ints(low: int, high: int):
    odd = st.sampled_from(["0", "-1", "-5", "1", "2147483647", "2147483648", "1e20", "1e3", "1.5",
                           "abc", "", "nan", "inf", "-0", "0x10", "99999999999999999999"])
    return st.integers(low, high).map(str) | odd


FLAGS = {
    "--block-size": ints(1, 512), "--max-num-seqs": ints(1, 64),
    "--max-num-batched-tokens": ints(1, 4096), "--max-model-len": ints(1, 4096),
    "--num-kv-blocks": ints(1, 400), "--tp": ints(1, 16), "--seed": ints(0, 10**6),
    "--replicas": ints(1, 4), "--max-requests": ints(1, 10),
    "--gpu-memory-utilization": st.sampled_from(["0.9", "1", "0.01", "1e-9", "0", "-0.5", "1.01",
                                                  "nan", "x"]) | st.floats(0.001, 1).map(repr),
    "--policy": st.sampled_from(["fcfs", "priority", "sjf", "lifo"]),
    "--preemption": st.sampled_from(["recompute", "swap", "none"]),
    "--router": st.sampled_from(["round_robin", "least_tokens", "least_kv", "prefix", "x"]),
    "--rate-scale": st.sampled_from(["1", "2.5", "0", "-1", "1e300", "inf"]),
    "--model": st.sampled_from(["qwen3-0.6b", "qwen3-8b", "gpt-5"]),
    "--gpu": st.sampled_from(["h100", "l40s", "rtx-4070-laptop", "tpu"]),
    "--profile": st.sampled_from(["auto", "none"]),
}
SWITCHES = ["--no-chunked-prefill", "--no-prefix-caching", "--no-step-jitter"]


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(flags=st.dictionaries(st.sampled_from(sorted(FLAGS)), st.none(), max_size=6).flatmap(
           lambda keys: st.fixed_dictionaries({k: FLAGS[k] for k in keys})),
       switches=st.lists(st.sampled_from(SWITCHES), unique=True))
def test_engine_flags_end_in_a_run_or_one_error_line(tmp_path, capsys, flags, switches):
    trace = tmp_path / "t.csv"
    trace.write_text(TRACE)
    out = tmp_path / "out"
    argv = ["simulate", "--trace", str(trace), "--out", str(out), "--no-progress",
            "--model", "qwen3-0.6b", *switches]
    for k, v in flags.items():
        argv += [f"{k}={v}"]  # "=": values starting with "-" stay values
    capsys.readouterr()
    rc = rc_of(argv)
    err = [ln for ln in capsys.readouterr().err.splitlines()
           if ln.strip() and not ln.startswith("nanosim: warning:")]
    assert rc in (0, 2), (argv, rc, err)
    if rc == 2:
        assert len(err) == 1 and "error" in err[0], (argv, err)
    else:
        assert (out / "summary.json").is_file(), argv
