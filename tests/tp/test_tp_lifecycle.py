"""Life cycle of a tensor-parallel LLM: the context manager stops the workers and leaves the
process group; `nanosim run --tp 2` end to end."""
import json
import multiprocessing as mp

import pytest
import torch.distributed as dist

from nanosim.cli import main
from nanosim.gpu.llm import LLM, SamplingParams
from tests.tp.conftest import ENGINE, TIMEOUT_S


def test_close_stops_workers_and_frees_the_group(tiny_dir):
    with LLM(str(tiny_dir), tensor_parallel_size=2, dist_timeout_s=TIMEOUT_S, **ENGINE) as llm:
        procs = list(llm.runner.procs)
        assert llm.generate([[1, 2, 3]], SamplingParams(temperature=0, max_tokens=3))[0].token_ids
    assert [p.exitcode for p in procs] == [0]  # left through the "exit" command
    assert not dist.is_initialized() and not mp.active_children()
    with pytest.raises(RuntimeError, match="unusable"):
        llm.generate([[1, 2, 3]])
    llm.close()  # idempotent


def test_nanosim_run_tp2_end_to_end(tiny_dir, tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n" +
                     "".join(f"{i * 0.01:.2f},{10 + 5 * i},{2 + i % 4}\n" for i in range(6)))
    out = tmp_path / "run"
    rc = main(["run", "--trace", str(trace), "--model", str(tiny_dir), "--device", "cpu",
               "--dtype", "float32", "--block-size", "16", "--max-model-len", "128", "--tp", "2",
               "--out", str(out), "--no-progress"])
    summary = json.loads((out / "summary.json").read_text())
    assert rc == 0 and summary["finished"] == 6 and summary["config"]["tp"] == 2
    assert not dist.is_initialized() and not mp.active_children()
