"""Run a validation suite (suite_spec.py): for each run, the measured side (a real replay on
this GPU, or one recorded by an earlier suite or `nanosim validate`), the simulated replay
of the same arrivals, the comparison (validate.py), its folder OUT/runs/RUN/, and the
scorecard (scorecard.py) rewritten after every run. A run that fails is a row saying why;
the other runs go on."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from nanosim.calibrate.scorecard import failed_row, run_row, write_scorecard


def load_requests(run) -> list:
    """The run's requests, as `nanosim validate` loads them from the same flags
    (cli_common.load_requests, but with the run's own trace options)."""
    from nanosim.cli_args import DEFAULT_RATE_RPS
    from nanosim.cli_checks import arrival_options
    from nanosim.workload import load_trace, make_workload
    from nanosim.workload.transforms import scale_rate

    a = run.workload_args()
    if a.trace:
        reqs = load_trace(a.trace, **arrival_options(a, a.trace)[0])
    else:
        reqs = make_workload(a.workload, a.rate or DEFAULT_RATE_RPS, num_requests=a.num_requests,
                             seed=a.seed)
    reqs = reqs[: a.max_requests]
    return scale_rate(reqs, a.rate_scale) if a.rate_scale != 1.0 else reqs


class LiveMeasure:
    """Real replays on this machine's GPU (or CPU, for tests): one LLM per (model, tp,
    max_model_len), warmed up once; each run a fresh engine on its runner."""

    def __init__(self, make_llm, base_cfg, gpu: str | None, profile, profile_from: str | None,
                 step_jitter: bool, temperature: float = 0.0) -> None:
        self.make_llm, self.base_cfg, self.gpu = make_llm, base_cfg, gpu
        self.profile, self.profile_from = profile, profile_from
        self.step_jitter, self.temperature = step_jitter, temperature
        self.key, self.llm = None, None
        self.label = "measured: real replays on this machine"

    def _llm_for(self, run):
        key = (run.model, run.tp, run.max_model_len)
        if key != self.key:
            self.close()
            cfg = self.base_cfg.with_(max_model_len=run.max_model_len, num_kv_blocks=None)
            self.llm = self.make_llm(run.model, run.tp, cfg)
            self.key = key
            if self.llm.device.type == "cuda":
                self.llm.warmup()  # no one-time kernel compile inside a measured replay
        return self.llm

    def __call__(self, run, requests):
        from nanosim.calibrate.live import device_name, validate_on
        from nanosim.calibrate.profile import gpu_preset
        from nanosim.config import get_gpu
        from nanosim.sim.cost_select import make_cost_model

        llm = self._llm_for(run)
        gpu = get_gpu(self.gpu or gpu_preset(device_name(llm)))
        blocks = run.num_kv_blocks or llm.runner.num_kv_blocks
        cost = make_cost_model(llm.spec, gpu, llm.cfg.with_(num_kv_blocks=blocks), self.profile,
                               self.profile_from)
        v, record = validate_on(llm, requests, cost, num_kv_blocks=run.num_kv_blocks,
                                step_jitter=self.step_jitter, temperature=self.temperature)
        return v, {**record, "measured": "replay"}

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
        self.key, self.llm = None, None


def recorded_dir(root: Path, run) -> Path:
    """Where a recorded run lives: ROOT/runs/RUN (a suite's output) or ROOT/RUN."""
    for d in (root / "runs" / run.name, root / run.name):
        if (d / "validation.json").is_file():
            return d
    raise FileNotFoundError(f"--recorded {root}: no {run.name}/validation.json under it or its runs/")


class RecordedMeasure:
    """The measured side from a recorded validation (validation.json, step_errors.parquet,
    real_requests.parquet): its steps priced anew, its arrivals simulated anew with the
    engine config and KV blocks it recorded. With the cost model it was recorded with, the
    errors come out as recorded (the simulation is seeded)."""

    def __init__(self, root: Path, gpu: str | None, profile, profile_from: str | None,
                 step_jitter: bool) -> None:
        self.root, self.gpu, self.profile, self.profile_from = root, gpu, profile, profile_from
        self.step_jitter = step_jitter
        self.label = f"measured: recorded replays in {root}"

    def __call__(self, run, requests):
        import pandas as pd

        from nanosim.calibrate.profile import gpu_preset
        from nanosim.calibrate.validate import (SHAPE_FIELDS, Validation, latency_errors,
                                                step_errors, step_table)
        from nanosim.config import EngineConfig, get_gpu, get_model
        from nanosim.core.batch import StepShape
        from nanosim.core.engine import Engine
        from nanosim.sim.backend import SimBackend
        from nanosim.sim.cost_select import make_cost_model
        from nanosim.sim.simulator import simulate

        vdir = recorded_dir(self.root, run)
        meta = json.loads((vdir / "validation.json").read_text())
        if meta.get("requests") != len(requests):
            raise ValueError(f"{vdir}: the recording replayed {meta.get('requests')} requests, "
                             f"the suite's run has {len(requests)} (another window or --max-requests?)")
        cfg = EngineConfig(**meta["engine"])
        blocks, host = meta["kv_blocks"]["gpu"], meta["kv_blocks"].get("host", 0)
        model = get_model(meta["model"])
        gpu = get_gpu(self.gpu or gpu_preset(meta["gpu"]))
        cost = make_cost_model(model, gpu, cfg, self.profile, self.profile_from)
        sim = Engine(cfg, SimBackend.for_cost(cost, self.step_jitter, [cfg.seed, 0]), blocks, host)
        simulate(sim, requests)  # as validate_replay: the simulation first, then the steps
        rec = pd.read_parquet(vdir / "step_errors.parquet")
        cols = [rec[f].tolist() for f in SHAPE_FIELDS]
        shapes = [StepShape(**dict(zip(SHAPE_FIELDS, vals))) for vals in zip(*cols)]
        steps = step_errors(shapes, rec["measured_s"].tolist(), cost,
                            rec["gpu_s"].tolist() if "gpu_s" in rec else None)
        real_req = pd.read_parquet(vdir / "real_requests.parquet")
        sim_req, _ = sim.results()
        v = Validation(steps, step_table(steps), latency_errors(real_req, sim_req), real_req, sim_req)
        record = {k: meta[k] for k in ("model", "tp", "gpu", "attention", "engine", "kv_blocks",
                                       "workload") if k in meta}
        return v, {**record, "step_jitter": self.step_jitter,
                   "cost_model": getattr(cost, "description", cost.name),
                   "preemptions_real": int(real_req.preemptions.sum()),
                   "measured": f"recorded {vdir}"}

    def close(self) -> None:
        pass


def run_suite(suite, runs, out: Path, measure, header: dict, progress: bool = True) -> list[dict]:
    """Make ``runs`` with ``measure`` (LiveMeasure / RecordedMeasure); write each into
    OUT/runs/RUN/ and the scorecard after each. Returns the scorecard rows."""
    from nanosim.calibrate.validate import write

    out.mkdir(parents=True, exist_ok=True)
    header = {"measured": measure.label, **header}
    rows: list[dict] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(runs), unit="run", desc="suite")
    try:
        for run in runs:
            if bar is not None:
                bar.set_postfix_str(run.name, refresh=True)
            try:
                requests = load_requests(run)
                v, meta = measure(run, requests)
                meta = {"trace": run.source, "requests": len(requests), "suite_run": run.name,
                        "role": run.role, "load": run.load, **meta}
                meta.setdefault("workload", vars(run.workload_args()))
                d = write(v, out / "runs" / run.name, meta)
                rows.append(run_row(run, v, meta, d))
            except Exception as e:  # noqa: BLE001 (the other runs go on; the row says why)
                measure.close()  # a runner that failed mid-replay is loaded afresh for the next
                rows.append(failed_row(run, f"{type(e).__name__}: {e}"))
                print(f"nanosim validate: run {run.name} failed: {type(e).__name__}: {e}",
                      file=sys.stderr)
            write_scorecard(out, suite.name, rows, header)
            if bar is not None:
                bar.update(1)
    finally:
        measure.close()
        if bar is not None:
            bar.close()
    return rows
