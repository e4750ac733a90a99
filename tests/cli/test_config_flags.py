"""EngineConfig's fields are the one list: CLI flags (from each field's metadata), the
config built from parsed flags, the LLM's keyword arguments and the sweep's engine keys."""
import argparse
from dataclasses import dataclass, field, fields

import pytest

from nanosim.cli import _config, build_parser
from nanosim.cli_args import add_config_args, config_kwargs, field_flags
from nanosim.config import ConfigError, EngineConfig
from nanosim.sweep.point import Point

FLAGS = {"block_size_tokens": "--block-size", "max_num_seqs": "--max-num-seqs",
         "max_num_batched_tokens": "--max-num-batched-tokens", "max_model_len": "--max-model-len",
         "chunked_prefill": "--chunked-prefill", "policy": "--policy",
         "preemption_mode": "--preemption", "enable_prefix_caching": "--prefix-caching",
         "long_prefill_token_threshold": "--long-prefill-token-threshold",
         "gpu_memory_utilization": "--gpu-memory-utilization", "num_kv_blocks": "--num-kv-blocks",
         "tp": "--tp", "seed": "--seed"}


def test_every_flag_name_is_kept_and_derived_from_the_fields():
    assert field_flags(EngineConfig) == FLAGS  # swap_space_bytes: API and sweep only


def test_flags_build_the_config_whole():
    a = build_parser().parse_args([
        "simulate", "--workload", "chatbot", "--out", "o", "--block-size", "16",
        "--max-num-seqs", "8", "--max-num-batched-tokens", "64", "--max-model-len", "512",
        "--no-chunked-prefill", "--policy", "sjf", "--preemption", "swap", "--no-prefix-caching",
        "--long-prefill-token-threshold", "32", "--gpu-memory-utilization", "0.5",
        "--num-kv-blocks", "99", "--tp", "2", "--seed", "7"])
    assert _config(a) == EngineConfig(
        block_size_tokens=16, max_num_seqs=8, max_num_batched_tokens=64, max_model_len=512,
        chunked_prefill=False, policy="sjf", preemption_mode="swap", enable_prefix_caching=False,
        long_prefill_token_threshold=32, gpu_memory_utilization=0.5, num_kv_blocks=99, tp=2, seed=7)
    defaults = build_parser().parse_args(["simulate", "--workload", "chatbot", "--out", "o"])
    assert _config(defaults) == EngineConfig()


def test_a_new_field_is_one_edit():
    @dataclass(frozen=True)
    class Cfg:
        depth: int = field(default=3, metadata={"flag": "--depth", "help": "levels", "kind": "count",
                                                 "choices": None})
        fast: bool = field(default=True, metadata={"flag": "--fast", "help": None, "kind": "switch",
                                                    "choices": None})
        hidden: int = 5

    p = argparse.ArgumentParser()
    add_config_args(p, Cfg)
    assert Cfg(**config_kwargs(p.parse_args(["--depth", "4", "--no-fast"]), Cfg)) == Cfg(4, False)
    assert Cfg(**config_kwargs(p.parse_args([]), Cfg)) == Cfg()


def test_llm_keyword_arguments_carry_every_field():
    from nanosim.gpu.llm import RUNNER_OPTIONS, config_kwargs as llm_kwargs

    cfg = EngineConfig(block_size_tokens=16, num_kv_blocks=40, swap_space_bytes=1 << 20, seed=3)
    kw = llm_kwargs(cfg)
    assert kw.pop("block_size") == 16 and "tp" not in kw
    assert set(kw) == {f.name for f in fields(EngineConfig)} - {"block_size_tokens", "tp"}
    assert all(kw[k] == getattr(cfg, k) for k in kw)
    assert "num_kv_blocks" not in llm_kwargs(EngineConfig())  # the LLM sizes the cache
    assert {"num_kv_blocks", "gpu_memory_utilization"} <= set(RUNNER_OPTIONS)


def test_sweep_engine_keys_are_the_config_fields():
    point = {f.name: f.default for f in fields(Point)}
    engine = {f.name: f.default for f in fields(EngineConfig) if f.name != "tp"}
    assert {k: point[k] for k in engine} == engine  # tp is the point's hardware key
    assert [k for k in point if k in engine] == list(engine)  # same order (point ids hash them)


def test_point_ids_are_unchanged_by_deriving_the_engine_keys():
    """Point's engine keys come from EngineConfig's fields; the ids of points computed
    when they were listed by hand (commit de7ec6a) are still the same, so a results store
    written then resumes."""
    assert Point(trace="traces/a.csv").point_id == "01fc56bc4f1f"
    assert Point(workload="chatbot", num_requests=100, rate_rps=4.0, tp=2, max_num_seqs=64, policy="sjf",
                 preemption_mode="swap", chunked_prefill=False, num_kv_blocks=5000, seed=3,
                 long_prefill_token_threshold=512, gpu_memory_utilization=0.8).point_id == "87be510f44a0"
    with pytest.raises(ConfigError, match="not one of fcfs"):  # the engine keys' rules: metadata
        Point(trace="a.csv", policy="lifo")
    with pytest.raises(ConfigError, match=">= 1"):
        Point(trace="a.csv", max_num_seqs=0)
