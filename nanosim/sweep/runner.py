"""Run a spec's points that are not yet in the store, writing each as soon as it finishes.

    from nanosim.sweep import load_spec, run_sweep
    report = run_sweep(load_spec("experiments/block_size.toml"), "out/block-size")

Resumable: the points already committed to the store are skipped (failed ones too,
unless retry_failed), so rerunning the same command after a kill runs only what is
missing. Points are submitted in spec order, at most 2 x slots at a time (so a worker
never waits for the driver), and committed in the order they finish. A point whose
worker process dies (killed, out of memory) is run again, up to MAX_CRASHES times.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from nanosim.sweep.executors import make_executor
from nanosim.sweep.spec import Spec
from nanosim.sweep.store import ResultStore
from nanosim.sweep.worker import PointResult, Task, point_record

POLL_S = 0.5  # progress refresh when nothing finishes, s
MAX_CRASHES = 2  # reruns of a point whose worker died; one more death records it failed


@dataclass
class SweepReport:
    points: int  # in the spec (or the --limit prefix)
    skipped: int  # already in the store
    ok: int = 0
    failed: int = 0
    wall_s: float = 0.0  # first submit to last commit
    point_s: float = 0.0  # sum of the points' own run times (in the workers)
    slots: int = 1
    interrupted: bool = False

    @property
    def efficiency(self) -> float | None:
        """Parallel efficiency: (sum of point times / slots) / wall time."""
        return self.point_s / self.slots / self.wall_s if self.wall_s > 0 else None

    def format(self) -> str:
        s = (f"{self.ok} ok, {self.failed} failed, {self.skipped} already done "
             f"(of {self.points} points)")
        if self.wall_s > 0:
            s += (f"; {self.wall_s:.1f} s wall, {self.point_s:.1f} s of point time on "
                  f"{self.slots} slots, efficiency {100 * self.efficiency:.0f}%")
        return s


def sweep_meta(spec: Spec) -> dict:
    return {"format": 1, "name": spec.name, "description": spec.description,
            "spec_path": spec.path, "spec_text": spec.text, "point_ids": spec.point_ids,
            "varying": spec.varying(), "slo": asdict(spec.slo) if spec.slo else None,
            "output": asdict(spec.output)}


def pending_tasks(spec: Spec, store: ResultStore, limit: int | None,
                  retry_failed: bool) -> list[Task]:
    points = spec.points[:limit] if limit is not None else spec.points
    done = store.committed_ids()
    if retry_failed and done:
        pts = store.points()
        done -= set(pts.loc[pts["status"] == "failed", "point_id"])
    return [Task(p, spec.paths.get(p.trace), spec.paths.get(p.profile), spec.output)
            for p in points if p.point_id not in done]


def run_sweep(spec: Spec, out_dir, *, workers: int | None = None, ray_address: str | None = None,
              limit: int | None = None, retry_failed: bool = False, force: bool = False,
              progress: bool = True, check_stop: Callable[[], None] | None = None) -> SweepReport:
    """check_stop: called between waits for the workers; raises to stop the sweep (a SIGTERM
    whose exception Python swallowed, having raised it inside a finalizer)."""
    store = ResultStore(out_dir)
    with store.writer_lock():
        store.create(sweep_meta(spec), force=force)
        return _run(spec, store, workers, ray_address, limit, retry_failed, progress,
                    check_stop or (lambda: None))


def _run(spec: Spec, store: ResultStore, workers, ray_address, limit, retry_failed,
         progress, check_stop) -> SweepReport:
    tasks = pending_tasks(spec, store, limit, retry_failed)
    n = min(limit, len(spec.points)) if limit is not None else len(spec.points)
    report = SweepReport(points=n, skipped=n - len(tasks))
    if not tasks:
        return report
    ex = make_executor(workers, ray_address)
    report.slots = ex.slots
    bar = _bar(spec.name, len(tasks), progress)
    try:
        _drive(ex, tasks, store, report, bar, check_stop)
    except BaseException:  # Ctrl-C, or the store cannot be written: stop the workers now
        report.interrupted = True
        ex.close(cancel=True)
        raise
    finally:
        bar.close()
    ex.close()
    return report


def _drive(ex, tasks: list[Task], store: ResultStore, report: SweepReport, bar, check_stop) -> None:
    queue, inflight, crashes = list(reversed(tasks)), {}, {}
    t0 = time.perf_counter()
    while queue or inflight:
        check_stop()
        while queue and len(inflight) < 2 * ex.slots:
            task = queue.pop()
            inflight[ex.submit(task)] = task
        for handle, outcome in ex.wait(list(inflight), POLL_S):
            task = inflight.pop(handle)
            if isinstance(outcome, BaseException) and crashes.get(task.point_id, 0) < MAX_CRASHES:
                # A dead worker fails every point in flight with it: run them again, so
                # only a point that keeps killing its worker is recorded as failed.
                crashes[task.point_id] = crashes.get(task.point_id, 0) + 1
                queue.append(task)
                continue
            result = _as_result(task, outcome)
            store.write_point(result.record, result.tables)
            _count(report, result, bar)
        report.wall_s = time.perf_counter() - t0
        bar.set_postfix_str(f"running {min(len(inflight), ex.slots)}, failed {report.failed}")


def _as_result(task: Task, outcome) -> PointResult:
    if isinstance(outcome, PointResult):
        return outcome
    msg = (f"worker died {MAX_CRASHES + 1} times while this point was in flight (out of "
           f"memory? killed?); last: {type(outcome).__name__}: {outcome}")
    return PointResult(point_record(task.point, "failed", msg, {}, time.perf_counter()))


def _count(report: SweepReport, result: PointResult, bar) -> None:
    report.point_s += result.record["point_wall_s"]
    if result.ok:
        report.ok += 1
    else:
        report.failed += 1
        first = result.record["error"].splitlines()[0]
        bar.write(f"point {result.record['point_id']} failed: {first}")
    bar.update(1)


def _bar(name: str, total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="pt", disable=not enabled, mininterval=0.5,
                dynamic_ncols=True,
                bar_format="{desc}: {n_fmt}/{total_fmt} points done |{bar}| "
                           "[{elapsed} elapsed, ETA {remaining}{postfix}]")
