"""`nanosim profile`: measure whole-step wall times of a model on this GPU over a grid.

Each point is a real runner.step() on synthetic sequences (distinct KV blocks, CUDA graphs
as in serving), timed as the GpuBackend times a step: host wall time from input packing to
the sampled tokens back on the host; the median of ``reps`` after ``warmup`` runs. Beside
it, each point records the device time of the same runs (``gpu_duration_s``): the runner's
StepOutput.duration_s, its CUDA events from the input upload to the sampled tokens' copy
back, as the replays record it per step (StepResult.gpu_s); on a CPU the runner times the
same span with perf_counter. Wall - device is the step's host time. Decode
points are timed on the path steady decoding takes in serving: runner.step_next() right
after an untimed step() of the same rows (inputs edited in place, not packed anew). Written
as a versioned profile JSON (nanosim/sim/profile.py) that `nanosim simulate --profile` and
`nanosim validate` read.
"""
from __future__ import annotations

import random
import statistics
import subprocess
import time
from dataclasses import replace
from typing import Callable

from nanosim.calibrate.shapes import Composition, default_grid
from nanosim.sim.profile import DEVICE_KEYS, Profile, build_profile, decode_shape, prefill_shape

def gpu_preset(device_name: str) -> str:
    """The preset name for a CUDA device name (nanosim.config.gpu_for_device)."""
    from nanosim.config import gpu_for_device

    return gpu_for_device(device_name).name


def timer(runner, reps: int, warmup: int, min_time_s: float = 0.1, max_reps: int = 200,
          between: Callable[[], None] | None = None,
          packed: dict | None = None, next_steps: int = 4,
          subset: dict | None = None, ratios: list | None = None,
          device: dict | None = None) -> Callable[[Composition], float]:
    """Median wall time of runner.step over >= reps runs and >= min_time_s of runs (short
    steps get more repeats: their host-side jitter is a larger share), after warmup runs.
    The SeqWorks are built inside the timed region, as GpuBackend builds them each step.
    ``between(comp)``, when given, runs (untimed) before each timed step.
    Decode points time both of the runner's paths in runs: a packed step() and the
    ``next_steps`` step_next() calls after it (steady decoding: one edit of the inputs after
    another, as in serving); measure() returns the step_next median and, with ``packed``
    given, appends the step() median to packed[comp]. With ``subset`` given, uniform decode
    points also time the step_next(keep) that follows a step with one more row (a sequence
    finished: the runner drops its row), appending that median to subset[comp]. With
    ``ratios`` given, each timed run's duration over the median it returns is appended (the
    step-time jitter, Profile.step_jitter). With ``device`` given, the median device time
    (StepOutput.duration_s) of the same runs as each returned or appended median is appended
    to device[(comp, key)], key the profile field: gpu_duration_s, packed_gpu_duration_s,
    subset_gpu_duration_s (nothing where the runner returns no StepOutput)."""
    from nanosim.gpu.inputs import SeqWork

    def measure(comp: Composition) -> float:
        fast = not comp.num_prefills and getattr(runner, "can_step_next", None) is not None
        for _ in range(warmup):
            runner.step(comp.works(runner.block_size, SeqWork))
        plus = replace(comp, num_decodes=comp.num_decodes + 1)
        graphs = getattr(runner, "graphs", None)
        time_drop = (fast and subset is not None and not comp.long_context
                     and (graphs is None or comp.num_decodes in graphs.sizes)  # grid points only
                     and plus.num_decodes <= runner.max_num_seqs
                     and plus.blocks_needed(runner.block_size) <= runner.num_kv_blocks)
        runs = _Runs()
        while len(runs.times) < max_reps and (len(runs.times) < reps or sum(runs.times) < min_time_s):
            if between is not None:
                between(comp)
            if fast:
                runs.add_decode_run(runner, comp, plus if time_drop else None, next_steps, SeqWork)
            else:
                runs.add_step(runner, comp, SeqWork)
        if fast and packed is not None:
            packed.setdefault(comp, []).append(statistics.median(runs.slow))
        if runs.drop:
            subset.setdefault(comp, []).append(statistics.median(runs.drop))
        if device is not None:
            runs.device_medians(comp, device, packed=fast and packed is not None)
        med = statistics.median(runs.times)
        if ratios is not None:
            ratios.extend(t / med for t in runs.times)
        return med
    return measure


class _Runs:
    """The timed runs of one grid point (seconds): ``times`` the returned median's runs (step,
    or steady step_next), ``slow`` the packed step() of each decode run, ``drop`` the
    step_next(keep) after a row finished; ``dev`` the device seconds of the same runs, by
    profile field."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.slow: list[float] = []
        self.drop: list[float] = []
        self.dev: dict[str, list] = {"gpu_duration_s": [], "packed_gpu_duration_s": [],
                                     "subset_gpu_duration_s": []}

    def add_step(self, runner, comp: Composition, seq_work) -> None:
        t0 = time.perf_counter()
        out = runner.step(comp.works(runner.block_size, seq_work))
        self.times.append(time.perf_counter() - t0)
        self.dev["gpu_duration_s"].append(_device_s(out))

    def add_decode_run(self, runner, comp: Composition, plus: Composition | None,
                       next_steps: int, seq_work) -> None:
        """A packed step() and next_steps step_next() after it; with ``plus`` (the point with
        one more row) also the step_next(keep) after a row of it finished."""
        (t_step, d_step), t_next = _time_step_run(runner, comp.works(runner.block_size, seq_work),
                                                  next_steps)
        self.slow.append(t_step)
        self.dev["packed_gpu_duration_s"].append(d_step)
        self.times.extend(t for t, _ in t_next)
        self.dev["gpu_duration_s"].extend(d for _, d in t_next)
        if plus is not None:
            t = _time_step_drop(runner, plus.works(runner.block_size, seq_work))
            if t is not None:
                self.drop.append(t[0])
                self.dev["subset_gpu_duration_s"].append(t[1])

    def device_medians(self, comp: Composition, device: dict, packed: bool) -> None:
        """Append each kept field's device median to device[(comp, field)] (none where a
        run returned no StepOutput)."""
        keep = {"gpu_duration_s": True, "packed_gpu_duration_s": packed,
                "subset_gpu_duration_s": bool(self.drop)}
        for key, ds in self.dev.items():
            if keep[key] and ds and None not in ds:
                device.setdefault((comp, key), []).append(statistics.median(ds))


def _device_s(out) -> float | None:
    """The device seconds of a runner step's StepOutput (None: no StepOutput, a test double)."""
    d = getattr(out, "duration_s", None)
    return None if d is None else float(d)


Timed = tuple[float, float | None]  # (wall seconds, device seconds or None)


def _time_step_run(runner, works, next_steps: int) -> tuple[Timed, list[Timed]]:
    """(wall, device) seconds of a step() of ``works`` (decodes; each table gets a spare
    block id, which the next positions may need: next_steps < block size) and of the
    step_next() calls after it; where the runner armed no fast path (no CUDA graph for this
    size, or the run would pass max_model_len) the one step()'s own times stand for them."""
    for w in works:
        w.block_table.append(w.block_table[-1])
    t0 = time.perf_counter()
    out = runner.step(works)
    t_step = (time.perf_counter() - t0, _device_s(out))
    if not runner.can_step_next or max(w.start_pos for w in works) + 1 + next_steps > runner.max_model_len:
        return t_step, [t_step]
    t_next = []
    for _ in range(next_steps):
        t0 = time.perf_counter()
        out = runner.step_next()
        t_next.append((time.perf_counter() - t0, _device_s(out)))
    return t_step, t_next


def _time_step_drop(runner, works) -> Timed | None:
    """(wall, device) seconds of the step_next(keep) that drops the last of ``works``' rows
    after an (untimed) step() of them all; None where the runner armed no fast path."""
    for w in works:
        w.block_table.append(w.block_table[-1])
    runner.step(works)
    if not runner.can_step_next or max(w.start_pos for w in works) + 2 > runner.max_model_len:
        return None
    t0 = time.perf_counter()
    out = runner.step_next(list(range(len(works) - 1)))
    return time.perf_counter() - t0, _device_s(out)


SERVING_CHUNK = 256  # tokens of the prefill run before each decode point's packed step


def serving_between(runner, steps: int = 8, chunk: int = SERVING_CHUNK) -> Callable[[Composition], None]:
    """What comes before a timed step in serving, run untimed before each timed run:
    * a step with a prefill comes between decode steps: a packed step() and then
      step_next() calls, the path of steady decoding. (Timed back to back instead, our H100
      profile once read ~14 ms for eager steps that took a median 18-24 ms in replays of the
      same shapes, qwen3-0.6b.)
    * a decode point's packed step() is the first decode step after a step with a prefill
      (a sequence joined): one prefill chunk of ``chunk`` tokens. (Timed right after the
      previous run's step_next calls instead, our H100 profile read the packed decode steps
      of replays ~12% short.)"""
    from nanosim.gpu.inputs import SeqWork

    def run(comp: Composition) -> None:
        if comp.num_prefills:
            works = Composition(num_decodes=8, decode_context=512).works(runner.block_size, SeqWork)
            _time_step_run(runner, works, steps - 1)
        elif comp.num_decodes:
            runner.step(Composition(num_prefills=1, chunk=chunk).works(runner.block_size, SeqWork, token=11))
    return run


def spin_up(runner, comp: Composition, seconds: float = 2.0) -> None:
    """Run steps for a while before measuring, so the GPU leaves its idle clocks (the first
    points of a profile otherwise read slow)."""
    from nanosim.gpu.inputs import SeqWork

    works = comp.works(runner.block_size, SeqWork)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        runner.step(works)


def median_of_passes(keys: list, measure: Callable, passes: int,
                     progress: Callable[[int, int], None] | None = None,
                     samples_out: dict | None = None) -> dict:
    """{key: median of measure(key) over `passes` sweeps of keys}. Sweeps come in pairs, an
    order and its reverse (a linear drift then lands on each point from both sides and
    cancels); the first pair walks the grid in order, later pairs in a shuffled order
    (seeded), so a slow spell of the machine does not hit the same run of neighbouring
    points, e.g. a whole batch-size row, in every pass. ``samples_out``, when given, gets
    each key's list of measurements."""
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    samples: dict = {k: [] for k in keys}
    rng = random.Random(0)
    order = list(keys)
    for p in range(passes):
        if p % 2 == 0 and p > 0:
            order = list(keys)
            rng.shuffle(order)
        for i, k in enumerate(order if p % 2 == 0 else order[::-1]):
            samples[k].append(measure(k))
            if progress is not None:
                progress(p * len(keys) + i + 1, passes * len(keys))
    if samples_out is not None:
        samples_out.update(samples)
    return {k: statistics.median(v) for k, v in samples.items()}


def versions(runner) -> dict:
    import torch

    import nanosim

    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        driver = None
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "driver": driver,
            "nanosim": nanosim.__version__, "triton": _version("triton")}


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def profile_runner(runner, gpu_name: str, reps: int = 5, warmup: int = 2,
                   progress: Callable[[int, int], None] | None = None, tp: int = 1,
                   passes: int = 4, prefill_passes: int = 16) -> Profile:
    """Measure the default grid (points that fit this runner's KV cache and limits).
    tp: the runner's tensor-parallel size (a TPRunner steps every rank), recorded.
    passes: sweeps over the whole grid, in pairs of an order and its reverse (median_of_passes); a point's time is
    the median of its passes (an even count cancels a linear drift exactly). Host and clock drift on a shared machine is slow and one sweep
    puts it into neighbouring points alike (our H100 profile read a batch-4 step faster
    than a batch-2 one, and the replays' steps of 3-4 sequences ran 12% over it); with 2
    passes, one profile read its batch-8 row 3-11% over the one before it and over the
    replays, so the default is 4 (the median of 4 drops one slow pass).
    prefill_passes: steps with a prefill (packed, host-heavy) are timed once per visit over
    that many sweeps of their points, so no timed step follows a run of its own kind: our
    H100 profile timed them in runs of >= 5 back to back and read them 3-5% under the same
    buckets timed interleaved with other steps (benchmarks/host_state.py), and under
    the replays' steps, which follow decode steps."""
    import torch

    dec, pre, mixed, comps = _grid(runner)
    device: dict = {}
    times, packed, subset, ratios = _measure(runner, comps, reps, warmup, passes, prefill_passes,
                                             progress, device)
    prof = build_profile(
        runner.spec, gpu_name, tp, times.__getitem__, dec, pre, [m.shape for m in mixed],
        dtype=str(runner.dtype).removeprefix("torch."), attention_backend=runner.backend.name,
        versions=versions(runner),
        gpu_device_name=torch.cuda.get_device_name(runner.device) if runner.device.type == "cuda" else "cpu",
        created_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        decode_graph_sizes=runner.graphs.sizes if runner.graphs is not None else (),
        mixed_token_buckets=runner.mixed_graphs.sizes if runner.mixed_graphs is not None else (),
        notes=_notes(runner, reps, warmup, passes, prefill_passes))

    def paths(p):  # the packed and row-dropping paths' medians, on the decode points
        c, extra = comps[p.shape], dict(p.extra)
        if c in packed:
            extra["packed_duration_s"] = statistics.median(packed[c])
        if c in subset:
            extra["subset_duration_s"] = statistics.median(subset[c])
        return replace(p, extra=extra)

    def on_device(p):  # each path's device time: the median over passes, as its wall time
        c, extra = comps[p.shape], dict(p.extra)
        for key in DEVICE_KEYS.values():
            if (c, key) in device:
                extra[key] = statistics.median(device[c, key])
        return replace(p, extra=extra)
    return replace(prof, decode=tuple(on_device(paths(p)) for p in prof.decode),
                   prefill=tuple(on_device(p) for p in prof.prefill),
                   mixed=tuple(on_device(p) for p in prof.mixed), step_jitter=jitter_quantiles(ratios))


def _grid(runner) -> tuple[list, list, list, dict]:
    """The default grid for this runner (its graph sizes and token buckets, its limits):
    (decode tuples, prefill pairs, mixed Compositions, {StepShape: Composition})."""
    buckets = runner.mixed_graphs.sizes if runner.mixed_graphs is not None else ()
    dec, pre, mixed = default_grid(runner.num_kv_blocks, runner.block_size, runner.packer.max_tokens,
                                   runner.max_num_seqs, runner.max_model_len,
                                   **({"chunks": tuple(buckets)} if buckets else {}),
                                   **({"batches": tuple(runner.graphs.sizes), "padded": True}
                                      if runner.graphs is not None else {}))
    comps = {decode_shape(*d): Composition(num_decodes=d[0], decode_context=d[1],
                                           long_context=d[2] if len(d) > 2 else 0,
                                           long_rows=d[3] if len(d) > 3 else 1) for d in dec}
    comps.update({prefill_shape(q, p): Composition(num_prefills=1, chunk=q, cached=p) for q, p in pre})
    comps.update({m.shape: m for m in mixed})
    return dec, pre, mixed, comps


def _measure(runner, comps: dict, reps: int, warmup: int, passes: int, prefill_passes: int,
             progress, device: dict | None = None) -> tuple[dict, dict, dict, list]:
    """Time every point (see profile_runner): decode points in runs over ``passes`` sweeps,
    steps with a prefill once per visit over ``prefill_passes`` sweeps. Returns ({shape:
    seconds}, {decode Composition: per-pass medians of its packed step()}, {...: of the
    step_next(keep) after a step with one more row}, every timed run / its point's median);
    ``device`` gets the per-pass device-time medians (timer's ``device``)."""
    from nanosim.gpu.inputs import SeqWork

    packed: dict = {}
    subset: dict = {}
    ratios: list = []
    between = serving_between(runner)
    measure = timer(runner, reps, warmup, between=between, packed=packed, subset=subset, ratios=ratios,
                    device=device)
    once = timer(runner, 1, 0, min_time_s=0.0, between=between, device=device)  # one timed run per visit
    dec_keys = [k for k in comps if not comps[k].num_prefills]
    pre_keys = [k for k in comps if comps[k].num_prefills]
    n_dec = passes * len(dec_keys)
    total = n_dec + prefill_passes * len(pre_keys)
    spin_up(runner, comps[dec_keys[len(dec_keys) // 2]] if dec_keys else next(iter(comps.values())))
    times = median_of_passes(dec_keys, lambda shape: measure(comps[shape]), passes,
                             None if progress is None else lambda d, _: progress(d, total))
    samples: dict = {}
    if pre_keys:
        for k in pre_keys:  # one untimed visit each first: one-time costs (a bucket's first
            between(comps[k])  # graph launch) out of the samples and the jitter
            runner.step(comps[k].works(runner.block_size, SeqWork))
        times.update(median_of_passes(pre_keys, lambda shape: once(comps[shape]), prefill_passes,
                                      None if progress is None else lambda d, _: progress(n_dec + d, total),
                                      samples_out=samples))
    ratios.extend(t / times[k] for k, v in samples.items() for t in v)
    return times, packed, subset, ratios


def _notes(runner, reps: int, warmup: int, passes: int, prefill_passes: int) -> str:
    """How the profile was measured, in words (the profile's ``notes``)."""
    return (f"block_size {runner.block_size}, max_num_seqs {runner.max_num_seqs}, "
            f"max_model_len {runner.max_model_len}, cuda_graphs {runner.graphs is not None}; "
            f"median of >= {reps} runs and >= 0.1 s after {warmup} warm-up, 2 s spin-up, "
            f"median of {passes} alternating passes over the grid; "
            f"steps with a prefill each after 8 decode steps (a step, then step_next), timed "
            f"once per visit over {prefill_passes} passes; decode points' runs each after a "
            f"{SERVING_CHUNK}-token prefill; decode "
            f"duration_s: median of the 4 step_next after a step (the steady path), "
            f"packed_duration_s: that step, subset_duration_s: a step_next that drops one row "
            f"of a step with one more; decode batches at "
            f"the CUDA-graph sizes (and half-long ones midway between two: padded), prefill chunks "
            f"at the mixed-graph buckets; skewed decode points: long_rows (default 1) rows at "
            f"max_context_tokens; step_jitter: quantiles of every timed run / its point's "
            f"median; gpu_duration_s (packed_, subset_): the device time of the same runs "
            f"(the runner's CUDA events from the input upload to the tokens' copy back), "
            f"median alike")


def jitter_quantiles(ratios: list[float], n: int = 101) -> tuple[float, ...]:
    """Quantiles of run / median at n evenly spaced probabilities 0..1 (Profile.step_jitter);
    () when fewer than 100 runs were timed (too few to say much about the tail)."""
    if len(ratios) < 100:
        return ()
    import numpy as np

    return tuple(float(x) for x in np.quantile(np.asarray(ratios, dtype=np.float64), np.linspace(0, 1, n)))
