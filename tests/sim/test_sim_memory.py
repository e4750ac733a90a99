"""KV capacity by nano-vLLM's rule, checked against arithmetic done by hand."""
from __future__ import annotations

from dataclasses import asdict, replace

import pytest

from nanosim.config import GPUS, MODELS, ConfigError, EngineConfig
from nanosim.sim.memory import KvCapacity, activation_bytes, format_capacity, kv_capacity

# hand arithmetic below uses a round 80 GB (the preset holds the measured 85.0 GB)
H100 = replace(GPUS["h100"], memory_bytes=80 * 10**9)
Q8 = MODELS["qwen3-8b"]


def test_qwen3_8b_h100_by_hand():
    # Parameters of one Qwen3-8B layer (h 4096, q 32x128, kv 8x128, I 12288):
    #   qkv 4096*(4096+2*1024) = 25,165,824; o 4096*4096 = 16,777,216;
    #   mlp 3*4096*12288 = 150,994,944; norms 2*4096 + 2*128 = 8,448  -> 192,946,432
    # 36 layers 6,946,071,552 + embedding and untied lm head 2*151936*4096 = 1,244,659,712
    # + final norm 4,096 = 8,190,735,360 params = 16,381,470,720 bytes (bf16).
    weights = 16_381_470_720
    # Warm-up activation peak, T = 8192 tokens, bf16, elements per token:
    #   MLP 5*4096 + 3*12288 = 57,344 > attention max(4*4096 + 3*4096 + 4*1024 = 32,768,
    #   5*4096 + 3*4096 + 3*1024 = 35,840)  -> 8192 * 2 * 57,344 bytes.
    act = 8192 * 2 * 57344
    assert act == 939_524_096
    # Sampler moment: 2*4096*8192*2 + 256 rows*151936*(2+12) = 678,756,352 < act.
    context = 552_402_944  # measured CUDA context
    usable = 72_000_000_000 - context - weights - act  # 80 GB x 0.9
    assert usable == 54_126_602_240
    block_bytes = 256 * 147_456  # 256 tokens x 144 KiB
    assert block_bytes == 37_748_736
    blocks = usable // block_bytes  # 1433.87
    assert blocks == 1433

    cap = kv_capacity(Q8, H100, EngineConfig())
    assert cap.weight_bytes_per_rank == weights
    assert cap.activation_bytes == act
    assert cap.context_bytes == context
    assert cap.usable_bytes == usable
    assert cap.block_bytes == block_bytes
    assert cap.num_blocks == 1433
    assert cap.tokens == 1433 * 256 == 366_848
    assert cap.kv_bytes_per_token_per_rank == 147_456
    assert not cap.overridden
    assert cap.max_concurrent_seqs(4096) == 1433 // 16 == 89
    assert cap.max_concurrent_seqs(1000) == 1433 // 4 == 358
    assert cap.max_concurrent_seqs(32768) == 1433 // 128 == 11
    assert "tokens" in asdict(cap)
    # the brief's rule without the CUDA context term
    assert kv_capacity(Q8, H100, EngineConfig(), context_bytes=0).num_blocks == \
        (72_000_000_000 - weights - act) // block_bytes == 1448


def test_qwen3_8b_h100_tp2_by_hand():
    # Per rank: weights 16,381,470,720 / 2 = 8,190,735,360. Layer peak: MLP
    # 5*4096 + 3*12288/2 = 38,912 per token -> 8192*2*38,912 = 637,534,208; the sampler moment
    # on rank 0 (full logits after the gather) is larger: 134,217,728 + 544,538,624 =
    # 678,756,352. Block 256 x 72 KiB = 18,874,368 bytes.
    cap = kv_capacity(Q8, H100, EngineConfig(tp=2))
    usable = 72_000_000_000 - 552_402_944 - 8_190_735_360 - 678_756_352
    assert cap.activation_bytes == 678_756_352
    assert cap.block_bytes == 18_874_368
    assert cap.usable_bytes == usable == 62_578_105_344
    assert cap.num_blocks == usable // 18_874_368 == 3315


def test_override_and_knobs():
    cap = kv_capacity(Q8, H100, EngineConfig(num_kv_blocks=500))
    assert cap.num_blocks == 500 and cap.overridden and cap.tokens == 128_000
    small = kv_capacity(Q8, H100, EngineConfig(gpu_memory_utilization=0.5, max_model_len=4096))
    assert small.num_blocks < 1433
    b16 = kv_capacity(Q8, H100, EngineConfig(block_size_tokens=16))
    assert b16.block_bytes == 16 * 147_456
    assert b16.num_blocks == b16.usable_bytes // b16.block_bytes
    more_tokens = kv_capacity(Q8, H100, EngineConfig(max_num_batched_tokens=32768))
    assert more_tokens.activation_bytes == 4 * 939_524_096
    assert more_tokens.num_blocks < 1433


def test_activation_sampler_moment_dominates_small_models():
    # Qwen3-0.6B: every layer moment is 14,336 elements/token (MLP 5*1024 + 3*3072; RoPE
    # 4*1024 + 3*2048 + 4*1024; o_proj 5*1024 + 3*2048 + 3*1024) -> 8192*2*14336 =
    # 234,881,024 < sampler 2*1024*8192*2 + 256*151936*14 = 33,554,432 + 544,538,624.
    assert activation_bytes(MODELS["qwen3-0.6b"], EngineConfig()) == 578_093_056


def test_errors():
    with pytest.raises(ConfigError, match="weights need .* GB per GPU at tp=1"):
        kv_capacity(MODELS["qwen3-32b"], GPUS["rtx-4070-laptop"], EngineConfig(max_model_len=1024))
    with pytest.raises(ConfigError, match="does not divide"):
        kv_capacity(Q8, H100, EngineConfig(tp=3))
    # Qwen3-32B on one H100: 65.5 GB of weights leave 63 blocks (< 128 for 32,768 tokens).
    with pytest.raises(ConfigError, match="max_model_len=32768.*needs 128 blocks.*only 63 fit"):
        kv_capacity(MODELS["qwen3-32b"], H100, EngineConfig())
    assert kv_capacity(MODELS["qwen3-32b"], H100, EngineConfig(max_model_len=4096)).num_blocks == 63
    with pytest.raises(ConfigError, match="num_kv_blocks override"):
        kv_capacity(Q8, H100, EngineConfig(num_kv_blocks=3, max_model_len=1024))
    with pytest.raises(ValueError):
        kv_capacity(Q8, H100, EngineConfig()).max_concurrent_seqs(0)


def test_format_capacity():
    cfg = EngineConfig()
    cap = kv_capacity(Q8, H100, cfg)
    text = format_capacity(cap, Q8, H100, cfg, seq_lens=(1024, 4096, 65536))
    assert "qwen3-8b on h100, tp=1" in text
    assert "1,433 x 36.00 MiB" in text
    assert "366,848" in text
    assert "GiB" in text and "CUDA context" in text
    lines = text.splitlines()
    assert any(l.split()[:3] == ["4,096", "tokens", "89"] for l in lines)
    assert any("65,536" in l and "> max_model_len" in l for l in lines)


def test_kvcapacity_is_frozen_and_consistent():
    cap = kv_capacity(Q8, H100, EngineConfig())
    with pytest.raises(Exception):
        cap.num_blocks = 1  # type: ignore[misc]
    with pytest.raises(ValueError):
        KvCapacity(num_blocks=2, block_size_tokens=16, block_bytes=1, tokens=33,
                   kv_bytes_per_token_per_rank=1, weight_bytes_per_rank=1, activation_bytes=1,
                   usable_bytes=1)
