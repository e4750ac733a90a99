"""Where points run: a local process pool (default), inline (debugging), or Ray.

Every executor has the same small interface used by the runner:

    slots                       points that can run at once (cores / cluster CPUs)
    submit(task) -> handle
    wait(handles, timeout_s) -> [(handle, PointResult | BaseException)]   (finished ones)
    close(cancel: bool)

A worker never raises for a failing point (run_point records the error); an exception
from wait() means the worker itself died (killed, out of memory) or Ray lost the task.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import socket
from concurrent import futures

from nanosim.config import ConfigError
from nanosim.sweep.worker import Task, load_trace_cached, run_point


def usable_cores() -> int:
    """Cores this process may run on (cgroup/affinity aware where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def make_executor(workers: int | None = None, ray_address: str | None = None):
    if ray_address is not None:
        return RayExecutor(ray_address)
    if workers == 0:
        return InlineExecutor()
    return PoolExecutor(workers or usable_cores())


def _init_worker(driver_pid: int) -> None:
    """Pool workers leave Ctrl-C to the driver, which stops them cleanly, and end the
    moment the driver ends (lifeline.py)."""
    from nanosim.sweep.lifeline import watch_driver

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch_driver(driver_pid)


class PoolExecutor:
    """A process pool. forkserver: workers fork from a server that imported the simulator
    once (fast start, no threads inherited from the driver)."""

    def __init__(self, workers: int) -> None:
        self.slots = workers
        self._pool = self._start()

    def _start(self) -> futures.ProcessPoolExecutor:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["nanosim.sweep.worker", "nanosim.sim.job"])
        return futures.ProcessPoolExecutor(self.slots, mp_context=ctx,
                                           initializer=_init_worker, initargs=(os.getpid(),))

    def submit(self, task: Task):
        try:
            return self._pool.submit(run_point, task)
        except futures.process.BrokenProcessPool:  # a worker died earlier: start afresh
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._start()
            return self._pool.submit(run_point, task)

    def wait(self, handles, timeout_s: float):
        done, _ = futures.wait(handles, timeout=timeout_s, return_when=futures.FIRST_COMPLETED)
        return [(f, f.exception() or f.result()) for f in done]

    def close(self, cancel: bool = False) -> None:
        if cancel:  # stop running points now instead of waiting for them
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.terminate()
        self._pool.shutdown(wait=True, cancel_futures=cancel)


class InlineExecutor:
    """Runs each point in this process when submitted (workers=0: for pdb and profiling)."""

    slots = 1

    def submit(self, task: Task):
        return _Done(run_point(task))

    def wait(self, handles, timeout_s: float):
        return [(h, h.result) for h in handles]

    def close(self, cancel: bool = False) -> None:
        pass


class _Done:
    def __init__(self, result) -> None:
        self.result = result


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a host:port nobody listens on (ray.init would retry for minutes)."""
    host, _, port = address.rpartition(":")
    if address in ("auto", "local") or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ConfigError(f"cannot reach a Ray cluster at {address!r} ({e}); start one "
                          "with `ray start --head`, or use --ray local") from None


class RayExecutor:
    """Ray tasks (1 CPU each). The driver loads each trace once and puts it in the object
    store, so workers on other machines need nanosim installed but not the trace files.
    address: "auto" (a running cluster), "local" (start one here), or host:port."""

    def __init__(self, address: str) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--ray needs Ray: pip install 'nanosim[sweep]'") from None
        self._ray = ray
        self._owned = not ray.is_initialized()
        if self._owned:
            _check_reachable(address)
            try:
                ray.init(address=None if address == "local" else address,
                         include_dashboard=False, logging_level="WARNING", log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise ConfigError(f"cannot reach a Ray cluster at {address!r} ({e}); start one "
                                  "with `ray start --head`, or use --ray local") from None
        self.slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(num_cpus=1, max_retries=0)(run_point)
        self._traces = {}  # (path, format) -> ObjectRef of the loaded request list

    def submit(self, task: Task):
        base = None
        if task.trace_path is not None:
            key = (task.trace_path, task.point.trace_format)
            if key not in self._traces:
                self._traces[key] = self._ray.put(load_trace_cached(*key))
            base = self._traces[key]
        return self._remote.remote(task, base)

    def wait(self, handles, timeout_s: float):
        ready, rest = self._ray.wait(list(handles), num_returns=1, timeout=timeout_s)
        if ready and rest:
            more, _ = self._ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        return [(h, self._get(h)) for h in ready]

    def _get(self, handle):
        try:
            return self._ray.get(handle)
        except Exception as e:  # noqa: BLE001 -- a lost worker or node, reported per point
            return e

    def close(self, cancel: bool = False) -> None:
        if self._owned:
            self._ray.shutdown()
