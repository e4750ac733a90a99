"""Worker processes end when the sweep driver ends, however it ends (SIGKILL included).

A pool worker is a child of the forkserver, not of the driver, so the kernel's parent-death
signal alone cannot reach it when the driver dies. Each worker therefore watches the
driver's pid (a pidfd on Linux, polling elsewhere) from a daemon thread and exits at once
when the driver is gone, and also asks the kernel (prctl PR_SET_PDEATHSIG, Linux) for
SIGKILL if its own parent, the forkserver, dies. With its workers gone the forkserver sees
its driver's end of the pipe closed and exits, and the resource tracker, every end of its
pipe closed, exits too (tests/robust/test_sweep_signals.py checks that none survives).
"""
from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _exit_now() -> None:
    os._exit(1)  # no cleanup: the driver is gone, nobody reads our results


def _watch(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError) as e:  # no pidfd (not Linux >= 5.3), or already gone
        if isinstance(e, ProcessLookupError):
            _exit_now()
        while True:
            time.sleep(0.5)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                _exit_now()
            except PermissionError:
                pass
    select.select([fd], [], [])  # readable once the process has exited
    _exit_now()


def watch_driver(driver_pid: int) -> None:
    """Exit this process as soon as ``driver_pid`` exits (a daemon thread watches it)."""
    die_with_parent()
    threading.Thread(target=_watch, args=(driver_pid,), name="nanosim-driver-watch",
                     daemon=True).start()
