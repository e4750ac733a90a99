"""Weights: a local Hugging Face Qwen3 checkpoint dir, or seeded random ones. Nothing is
downloaded. Both sources yield full, HF-named tensors that go through each parameter's
``weight_loader`` (which slices this rank's shard), so random init and TP share one path.

HF name                                  nanosim parameter (shard id)
model.layers.i.self_attn.{q,k,v}_proj    model.layers.i.self_attn.qkv_proj ("q"/"k"/"v")
model.layers.i.mlp.{gate,up}_proj        model.layers.i.mlp.gate_up_proj (0/1)
everything else                          same name
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

import torch

from nanosim.config import ConfigError, ModelSpec
from nanosim.gpu.linear import default_weight_loader
from nanosim.gpu.qwen3 import Qwen3ForCausalLM

PACKED = {"q_proj": ("qkv_proj", "q"), "k_proj": ("qkv_proj", "k"), "v_proj": ("qkv_proj", "v"),
          "gate_proj": ("gate_up_proj", 0), "up_proj": ("gate_up_proj", 1)}
Named = tuple[str, str, torch.Tensor]  # (source file, HF tensor name, full tensor)


class WeightsError(ValueError):
    """A weights dir that does not match the model config; the message names file/tensor/shape."""


# --- config.json -> ModelSpec ---------------------------------------------------------------

def spec_from_hf_config(cfg: dict, name: str = "hf") -> ModelSpec:
    if cfg.get("model_type") != "qwen3":
        raise WeightsError(f"{name}: model_type {cfg.get('model_type')!r} is not 'qwen3'")
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise WeightsError(f"{name}: rope scaling {rope} is not supported (only default RoPE)")
    heads = cfg["num_attention_heads"]
    try:
        return ModelSpec(
            name=name, hidden_size=cfg["hidden_size"], num_layers=cfg["num_hidden_layers"],
            num_q_heads=heads, num_kv_heads=cfg.get("num_key_value_heads") or heads,
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
            intermediate_size=cfg["intermediate_size"], vocab_size=cfg["vocab_size"],
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            max_position_embeddings=cfg.get("max_position_embeddings", 32768),
            rope_theta=float(rope.get("rope_theta", cfg.get("rope_theta", 1e6))),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)))
    except (KeyError, ConfigError) as e:
        raise WeightsError(f"{name}: bad or missing config field {e}") from e


def read_spec(weights_dir: str | Path) -> ModelSpec:
    path = Path(weights_dir) / "config.json"
    if not path.is_file():
        raise WeightsError(f"{path}: not found (a Hugging Face checkpoint dir needs config.json)")
    return spec_from_hf_config(json.loads(path.read_text()), name=Path(weights_dir).name)


def check_spec(spec: ModelSpec, weights_dir: str | Path) -> None:
    """The dir's config.json must describe the same shapes as ``spec`` (names may differ)."""
    found = read_spec(weights_dir)
    diffs = [f"{f}: spec {getattr(spec, f)} vs config.json {getattr(found, f)}"
             for f in spec.__dataclass_fields__ if f != "name" and getattr(spec, f) != getattr(found, f)]
    if diffs:
        raise WeightsError(f"{weights_dir}/config.json does not match ModelSpec {spec.name}: "
                           + "; ".join(diffs))


# --- tensor sources ---------------------------------------------------------------------------

def hf_weight_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Every tensor a Qwen3 checkpoint must hold, with its full (unsharded) shape."""
    h, i, v = spec.hidden_size, spec.intermediate_size, spec.vocab_size
    q, kv, d = spec.q_size, spec.kv_size, spec.head_dim
    shapes = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
    if not spec.tie_word_embeddings:
        shapes["lm_head.weight"] = (v, h)
    for n in range(spec.num_layers):
        p = f"model.layers.{n}."
        shapes.update({
            p + "self_attn.q_proj.weight": (q, h), p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, q),
            p + "self_attn.q_norm.weight": (d,), p + "self_attn.k_norm.weight": (d,),
            p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h),
            p + "mlp.down_proj.weight": (h, i),
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,)})
    return shapes


def checkpoint_tensors(weights_dir: str | Path) -> Iterator[Named]:
    """(file, name, tensor) from every *.safetensors in the dir (sharded or not), on CPU."""
    from safetensors import safe_open

    root = Path(weights_dir)
    index = root / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        for f in files:
            if not (root / f).is_file():
                raise WeightsError(f"{index}: lists shard {f}, which is missing from {root}")
    else:
        files = sorted(p.name for p in root.glob("*.safetensors"))
    if not files:
        raise WeightsError(f"{root}: no *.safetensors files")
    for f in files:
        with safe_open(str(root / f), framework="pt", device="cpu") as st:
            for name in st.keys():
                yield f, name, st.get_tensor(name)


def random_tensors(spec: ModelSpec, seed: int, device: torch.device, dtype: torch.dtype,
                   std: float = 0.02) -> Iterator[Named]:
    """Seeded N(0, std) matrices and unit norm weights, in a fixed order. The values depend
    on the device type's generator (CPU and CUDA differ for the same seed)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    for name, shape in hf_weight_shapes(spec).items():
        if len(shape) == 1:
            yield "<random>", name, torch.ones(shape, device=device, dtype=dtype)
        else:
            t = torch.empty(shape, device=device, dtype=torch.float32).normal_(0.0, std, generator=gen)
            yield "<random>", name, t.to(dtype)


# --- loading ----------------------------------------------------------------------------------

def param_target(name: str) -> tuple[str, object]:
    """HF tensor name -> (nanosim parameter name, shard id or None)."""
    for hf, (ours, shard) in PACKED.items():
        if f".{hf}." in name:
            return name.replace(f".{hf}.", f".{ours}."), shard
    return name, None


def load_weights(model: Qwen3ForCausalLM, tensors: Iterator[Named], source: str) -> None:
    """Copy every expected tensor into the model; raise WeightsError on a missing, unexpected,
    duplicated or mis-shaped tensor."""
    spec = model.spec
    expected = hf_weight_shapes(spec)
    params = dict(model.named_parameters())
    seen: dict[str, str] = {}
    with torch.no_grad():
        for file, name, t in tensors:
            if name == "lm_head.weight" and spec.tie_word_embeddings:
                continue  # some tied checkpoints store it anyway; the embedding is the source
            if name.endswith("rotary_emb.inv_freq"):
                continue
            where = f"{source}/{file}: tensor {name}"
            if name not in expected:
                raise WeightsError(f"{where} is not part of {spec.name} "
                                   f"({spec.num_layers} layers, tied={spec.tie_word_embeddings})")
            if name in seen:
                raise WeightsError(f"{where} appears twice (also in {seen[name]})")
            if tuple(t.shape) != expected[name]:
                raise WeightsError(f"{where} has shape {tuple(t.shape)}, expected {expected[name]}")
            target, shard = param_target(name)
            param = params[target]
            loader = getattr(param, "weight_loader", default_weight_loader)
            try:
                loader(param, t, shard)
            except ValueError as e:
                raise WeightsError(f"{where}: {e}") from e
            seen[name] = file
    missing = [n for n in expected if n not in seen]
    if missing:
        more = f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
        raise WeightsError(f"{source}: missing tensors {missing[:5]}{more}, e.g. {missing[0]} "
                           f"with shape {expected[missing[0]]}")


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def build_model(spec: ModelSpec, backend, device: torch.device, dtype: torch.dtype,
                weights_dir: str | Path | None = None, seed: int = 0, tp_rank: int = 0,
                tp_size: int = 1, fused=None) -> Qwen3ForCausalLM:
    """Construct directly on ``device`` in ``dtype`` and load weights (random when no dir).
    fused: KernelOptions of the fused Triton kernels (None: the torch paths)."""
    if weights_dir is not None:
        check_spec(spec, weights_dir)
    with torch.device(device), _default_dtype(dtype):
        model = Qwen3ForCausalLM(spec, backend, tp_rank, tp_size, fused)
    if weights_dir is None:
        load_weights(model, random_tensors(spec, seed, device, dtype), f"random(seed={seed})")
    else:
        load_weights(model, checkpoint_tensors(weights_dir), str(weights_dir))
    return model.eval().requires_grad_(False)
