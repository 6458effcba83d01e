"""When did this process start: the zero of the job's "wall time" and "start to first event".

A job's wall time should count what the user waits for: the interpreter's start, the imports, the
job. It should not count what the same process id did before its ``exec`` (a shell that ran
``pip install ... && hltrun ...`` execs hltrun as its last command, so its process was created long
before hltrun began), and it must not be rounded to whole seconds (``psutil.Process.create_time`` adds
the boot time, which the kernel gives in whole seconds: 0.5 s too much on average).

Linux keeps no timestamp of an ``exec``. What it keeps, to the nanosecond, is how long this thread has
run on a CPU and how long it waited for one (``/proc/self/schedstat``). Read at import, before any
thread starts, their sum is the time since the ``exec`` spent computing or waiting for a core: it
excludes whatever the shell did before (it was blocked on its children), includes start-up on a busy
machine (the wait for a core), and misses only time blocked on a cold disk during start-up. It is
capped by the time since the process was created (``/proc/self/stat``'s start, on the boot clock with
tick resolution, never the whole-second boot time). Elsewhere, the clock starts at this import.
"""

from __future__ import annotations

import os
import time

_IMPORTED = time.perf_counter()


def _since_exec_s() -> float | None:
    """Seconds on a CPU or waiting for one since this process started (ns resolution), or None."""
    try:
        with open("/proc/self/schedstat", "rb") as f:
            on_cpu_ns, waiting_ns = (int(v) for v in f.read().split()[:2])
    except (OSError, ValueError):
        return None
    return (on_cpu_ns + waiting_ns) / 1e9


def _since_creation_s() -> float | None:
    """Seconds since the process was created (fork, not exec), to the clock tick, or None."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of proc(5), counted after "pid (comm)"
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _elapsed_at_import() -> float:
    candidates = [t for t in (_since_exec_s(), _since_creation_s()) if t is not None and t >= 0.0]
    return min(candidates) if candidates else 0.0


PROCESS_START: float = _IMPORTED - _elapsed_at_import()
"""The process's start (its exec, as near as the kernel tells) as a ``time.perf_counter()`` value."""
