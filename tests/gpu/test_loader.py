"""Checkpoint loading: HF names -> packed params, and clear errors on a mismatched dir."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from nanosim.config import MODELS
from nanosim.gpu.attention.torch_ref import TorchAttention
from nanosim.gpu.loader import WeightsError, build_model, hf_weight_shapes, read_spec


def copy_dir(src, dst, drop=None, reshape=None, extra=None):
    """Copy a single-file checkpoint, dropping / truncating / adding one tensor."""
    shutil.copytree(src, dst)
    tensors = load_file(dst / "model.safetensors")
    if drop:
        del tensors[drop]
    if reshape:
        tensors[reshape] = tensors[reshape][:-1].clone()
    if extra:
        tensors[extra] = torch.zeros(3)
    save_file(tensors, dst / "model.safetensors")
    return dst


def load(path, spec=None):
    return build_model(spec or read_spec(path), TorchAttention(), torch.device("cpu"), torch.float32, path)


def test_read_spec_and_packed_weights(hf_untied):
    model, path = hf_untied
    spec = read_spec(path)
    assert (spec.hidden_size, spec.num_layers, spec.num_q_heads, spec.num_kv_heads, spec.head_dim,
            spec.rope_theta, spec.tie_word_embeddings) == (64, 2, 4, 2, 16, 10000.0, False)
    ours = load(path)
    attn, hf_attn = ours.model.layers[1].self_attn, model.model.layers[1].self_attn
    qkv = torch.cat([hf_attn.q_proj.weight, hf_attn.k_proj.weight, hf_attn.v_proj.weight])
    assert torch.equal(attn.qkv_proj.weight, qkv)
    mlp, hf_mlp = ours.model.layers[0].mlp, model.model.layers[0].mlp
    assert torch.equal(mlp.gate_up_proj.weight, torch.cat([hf_mlp.gate_proj.weight, hf_mlp.up_proj.weight]))


def test_sharded_tied_checkpoint_loads(hf_tied):
    model, path = hf_tied
    assert len(list(path.glob("*.safetensors"))) > 1 and (path / "model.safetensors.index.json").exists()
    ours = load(path)
    assert ours.lm_head.weight is ours.model.embed_tokens.weight
    assert torch.equal(ours.lm_head.weight, model.lm_head.weight)


def test_missing_tensor_is_named(hf_untied, tmp_path):
    name = "model.layers.1.mlp.up_proj.weight"
    path = copy_dir(hf_untied[1], tmp_path / "ck", drop=name)
    with pytest.raises(WeightsError, match=rf"missing tensors.*{name}.*\(128, 64\)"):
        load(path)


def test_wrong_shape_names_file_tensor_and_shapes(hf_untied, tmp_path):
    name = "model.layers.0.self_attn.k_proj.weight"
    path = copy_dir(hf_untied[1], tmp_path / "ck", reshape=name)
    with pytest.raises(WeightsError, match=rf"model.safetensors: tensor {name} has shape \(31, 64\), "
                                           r"expected \(32, 64\)"):
        load(path)


def test_unexpected_tensor_is_named(hf_untied, tmp_path):
    path = copy_dir(hf_untied[1], tmp_path / "ck", extra="model.layers.2.input_layernorm.weight")
    with pytest.raises(WeightsError, match="model.layers.2.input_layernorm.weight is not part of"):
        load(path)


def test_spec_that_disagrees_with_config_json(hf_untied):
    spec = read_spec(hf_untied[1])
    other = type(spec)(**{**spec.__dict__, "intermediate_size": 96})
    with pytest.raises(WeightsError, match="intermediate_size: spec 96 vs config.json 128"):
        load(hf_untied[1], other)


def test_missing_shard_and_empty_dir(hf_tied, tmp_path):
    path = tmp_path / "ck"
    shutil.copytree(hf_tied[1], path)
    shard = sorted(path.glob("*.safetensors"))[0]
    shard.unlink()
    with pytest.raises(WeightsError, match=f"lists shard {shard.name}, which is missing"):
        load(path)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((path / "config.json").read_text())
    with pytest.raises(WeightsError, match="no \\*.safetensors"):
        load(empty)
    with pytest.raises(WeightsError, match="config.json: not found"):
        read_spec(tmp_path)


def test_other_architecture_is_refused(hf_untied, tmp_path):
    path = tmp_path / "ck"
    shutil.copytree(hf_untied[1], path)
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "model_type": "qwen2"}))
    with pytest.raises(WeightsError, match="model_type 'qwen2' is not 'qwen3'"):
        read_spec(path)


def test_random_init_is_seeded(hf_untied):
    spec = read_spec(hf_untied[1])

    def weights(seed):
        m = build_model(spec, TorchAttention(), torch.device("cpu"), torch.float32, None, seed)
        return m.model.layers[0].self_attn.qkv_proj.weight

    assert torch.equal(weights(3), weights(3)) and not torch.equal(weights(3), weights(4))


def test_weight_shapes_cover_presets():
    spec = MODELS["qwen3-0.6b"]
    shapes = hf_weight_shapes(spec)
    n = sum(torch.Size(s).numel() for s in shapes.values())
    assert n == spec.num_params and "lm_head.weight" not in shapes
