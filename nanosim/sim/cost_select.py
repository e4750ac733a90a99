"""Which cost model a simulation runs on: a measured profile (``ProfileCostModel``) when one
matches the model, GPU and tp, else the analytical roofline; each says which it is in its
``.description`` (printed in the run's summary)."""
from __future__ import annotations

import os
from pathlib import Path

from nanosim.config import ConfigError, EngineConfig, GpuSpec, ModelSpec, get_gpu
from nanosim.sim.costmodel import RooflineCostModel
from nanosim.sim.profile import ProfileCostModel, ProfileError, check_profile_matches, load_profile

# Profiles measured on our GPUs, shipped inside the package (profile_path="auto").
SHIPPED_PROFILES = Path(__file__).resolve().parents[1] / "profiles"


def make_cost_model(model: ModelSpec, gpu: GpuSpec, engine: EngineConfig | int = 1,
                    profile_path: str | os.PathLike | None = None, profile_from: str | None = None,
                    **roofline_kwargs):
    """The cost model for a simulation, with a ``.description`` saying which it is.

    ``engine``: the run's EngineConfig, passed whole: its tp, and its block size, at which
    swapped blocks are priced. An int is a tp with EngineConfig's other defaults.

    * ``profile_path`` None: the roofline model ("roofline (no profile)").
    * ``"auto"``: the profiles shipped in the package (nanosim/profiles/), as a directory.
    * a file: that profile; it must match model/GPU/tp, else ProfileError.
    * a directory: the first ``*.json`` profile in it (sorted by name) that matches; the
      roofline model when none does. Files that fail to load raise ProfileError.
    ``roofline_kwargs`` go to RooflineCostModel (the roofline, or the prior of the fit).
    ``profile_from``: a GPU preset name: the profile is picked for that GPU (from
    ``profile_path``, "auto" when None) and its prices carried to ``gpu`` by the roofline
    (nanosim/sim/cross_gpu.py); ProfileError when there is no such profile.
    """
    if profile_from is not None:
        return _cross_gpu(model, gpu, engine, profile_path, profile_from, roofline_kwargs)
    cfg = engine if isinstance(engine, EngineConfig) else EngineConfig(tp=engine)
    tp = cfg.tp
    roofline_kwargs = {"block_size_tokens": cfg.block_size_tokens, **roofline_kwargs}

    def roofline(why: str) -> RooflineCostModel:
        cm = RooflineCostModel(model, gpu, tp, **roofline_kwargs)
        cm.description = f"roofline ({why})"
        return cm

    if profile_path is None:
        return roofline("no profile")
    path = SHIPPED_PROFILES if profile_path == "auto" else Path(profile_path)
    candidates = sorted(path.glob("*.json")) if path.is_dir() else [path]
    for f in candidates:
        prof = load_profile(f)
        if path.is_dir():
            try:
                check_profile_matches(prof, model, gpu, tp)
            except ProfileError:
                continue
        prior = RooflineCostModel(model, gpu, tp, **{"dtype_bytes": prof.dtype_bytes,
                                                     **roofline_kwargs})
        return ProfileCostModel(prof, model, gpu, tp, prior=prior)
    return roofline(f"no profile for {model.name} on {gpu.name} tp={tp} in {path}"
                    + _other_gpus(candidates, model, gpu, tp))


def _other_gpus(candidates, model: ModelSpec, gpu: GpuSpec, tp: int) -> str:
    """"; h100 has one: --profile-from h100 ..." when profiles of other GPUs match."""
    others = []
    for f in candidates:
        prof = load_profile(f)
        try:
            src = get_gpu(prof.gpu_name)
            check_profile_matches(prof, model, src, tp)
        except (ProfileError, ConfigError):
            continue
        if src.name != gpu.name and src.name not in others:
            others.append(src.name)
    if not others:
        return ""
    return (f"; {', '.join(others)} {'has' if len(others) == 1 else 'have'} one: "
            f"--profile-from {others[0]} prices from it, scaled to {gpu.name}'s roofline")


def _cross_gpu(model, gpu, engine, profile_path, source_gpu: str, roofline_kwargs):
    from nanosim.sim.cross_gpu import CrossGpuCostModel

    src_gpu = get_gpu(source_gpu)
    path = "auto" if profile_path is None else profile_path
    src = make_cost_model(model, src_gpu, engine, path, **roofline_kwargs)
    if not isinstance(src, ProfileCostModel):
        raise ProfileError(f"--profile-from {source_gpu}: {src.description.removeprefix('roofline (')[:-1]}")
    return CrossGpuCostModel(src, gpu)
