"""Which cost model a simulation runs on: a measured profile (``ProfileCostModel``) when one
matches the model, GPU and tp, else the analytical roofline; each says which it is in its
``.description`` (printed in the run's summary)."""
from __future__ import annotations

import os
from pathlib import Path

from nanosim.config import EngineConfig, GpuSpec, ModelSpec
from nanosim.sim.costmodel import RooflineCostModel
from nanosim.sim.profile import ProfileCostModel, ProfileError, check_profile_matches, load_profile

# Profiles measured on our GPUs, shipped inside the package (profile_path="auto").
SHIPPED_PROFILES = Path(__file__).resolve().parents[1] / "profiles"


def make_cost_model(model: ModelSpec, gpu: GpuSpec, engine: EngineConfig | int = 1,
                    profile_path: str | os.PathLike | None = None, **roofline_kwargs):
    """The cost model for a simulation, with a ``.description`` saying which it is.

    ``engine``: the run's EngineConfig, passed whole: its tp, and its block size, at which
    swapped blocks are priced. An int is a tp with EngineConfig's other defaults.

    * ``profile_path`` None: the roofline model ("roofline (no profile)").
    * ``"auto"``: the profiles shipped in the package (nanosim/profiles/), as a directory.
    * a file: that profile; it must match model/GPU/tp, else ProfileError.
    * a directory: the first ``*.json`` profile in it (sorted by name) that matches; the
      roofline model when none does. Files that fail to load raise ProfileError.
    ``roofline_kwargs`` go to RooflineCostModel (the roofline, or the prior of the fit).
    """
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
    return roofline(f"no profile for {model.name} on {gpu.name} tp={tp} in {path}")
