"""Parallel basket decompression for the ROOT source, through uproot's own executor hook.

uproot reads a chunk by handing each basket's decompression to ``decompression_executor``
(``TTree.arrays`` / ``TTree.iterate``); the LZMA, ZSTD, ZLIB and LZ4 decompressors it calls (cramjam,
``lzma``, ``zlib``) release the GIL, so the baskets of different branches decompress on several cores
at once. LZMA (the shipped samples, NanoAOD) is ~90 % of uproot's read time, so this is where a
source on several cores gains. The pool counts the CPU its threads spend, so the source reports it
with its bulk I/O (``decompression_cpu_ns``): the loop's reads, the file check's (whole-file and
head/tail) reads, and chunks read ahead but dropped at maxEvents. Not counted: CPU a read-ahead
reader still spends after ``end_job`` stopped waiting for it (10 s), or after a failure or an
interrupt (nothing waits for a reader then; see ``RootJetSource.end_job``).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

# Auto: up to 4 threads once there are 2 cores, even on 2: the constituents are 3 big branches of
# about equal size, and 3-4 threads let the OS share them over 2 cores (2 threads leave one core
# idle while the third one runs). Measured on 2 cores (docs/performance.md): uproot's read of the
# shipped samples 84 -> 58 (2 threads) -> 49 / 47 (3 / 4 threads) µs per event.
MAX_AUTO_THREADS = 4
DECOMPRESSION_THREADS = "hltrun-decompress"  # the pool's thread name prefix


def available_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one, as a batch slot sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def threads_for(setting: int | None, n_branches: int, cores: int | None = None) -> int:
    """Decompression threads for a ``decompression_threads`` setting: ``None`` (auto) is
    min(4, branches read) with 2 cores or more, serial on one; 0 and 1 both mean serial, in the
    reading thread (returned as 1)."""
    if setting is None:
        cores = available_cores() if cores is None else cores
        return max(1, min(MAX_AUTO_THREADS, n_branches)) if cores >= 2 else 1
    return max(1, setting)


class TimedPool(ThreadPoolExecutor):
    """A thread pool that adds up the CPU time its tasks take (``cpu_ns``).

    ``settle()`` waits for the tasks still in flight: uproot returns a chunk as soon as each basket's
    task has posted its result, a few microseconds before the task (and its CPU count) ends."""

    def __init__(self, threads: int) -> None:
        super().__init__(max_workers=threads, thread_name_prefix=DECOMPRESSION_THREADS)
        self.threads = threads
        self.cpu_ns = 0
        self._pending = 0
        self._cond = threading.Condition()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        with self._cond:
            self._pending += 1
        try:
            return super().submit(self._timed, fn, args, kwargs)
        except BaseException:
            self._done(0)
            raise

    def _timed(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        c0 = time.thread_time_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            self._done(time.thread_time_ns() - c0)

    def _done(self, cpu_ns: int) -> None:
        with self._cond:
            self.cpu_ns += cpu_ns
            self._pending -= 1
            self._cond.notify_all()

    def settle(self) -> int:
        """Wait until no task is in flight; return the CPU nanoseconds of every task so far."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending <= 0)
            return self.cpu_ns

    def close(self, failed: bool) -> None:
        """Stop the threads. After a failure (a bad basket, Ctrl-C) the baskets still queued are
        dropped, and nothing waits for the one being decompressed: an interrupt does not hang here."""
        self.shutdown(wait=not failed, cancel_futures=failed)
        if failed:  # cancelled baskets never end: nobody may wait for them
            with self._cond:
                self._pending = 0
                self._cond.notify_all()
