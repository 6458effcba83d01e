"""Read-ahead: a producer runs in a background thread, a bounded number of items ahead of its consumer.

The ROOT source reads and converts the next chunk of a file while the streams process the current
one, as CMSSW's DAQ source does with its reader threads; the event loop then waits only for what is
not ready yet. The thread's CPU is measured per item and handed over with it, so the consumer can
report the work done off its own thread (nothing hidden). An error in the producer reaches the
consumer as the same exception, at the item where it happened. Items made but never taken (the
consumer stopped early, at maxEvents) and the thread's CPU after that are handed to ``on_discard``,
so their cost is counted too. Closing never waits for the thread
(an interrupt does not hang on a read): the producer stops at its next hand-over, and closes its own
resources (its generator's ``finally``) in its own thread.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")
_POLL_S = 0.1  # how often a producer waiting for a free slot looks whether the consumer has left


class ReadAhead(Generic[T]):
    """Iterate ``produce()`` in a daemon thread, at most ``depth`` items ahead of the consumer;
    ``__iter__`` yields ``(item, cpu_ns)`` with the producer thread's CPU for that item.
    ``tail_cpu_ns`` is the CPU after the last item (closing the file), known once the iteration has
    ended. ``on_discard(item, cpu_ns)`` (optional) is told about every item made but never taken and
    about the producer's CPU after the consumer left (``item`` None), so that their cost is counted
    too; it may be called from either thread."""

    def __init__(self, produce: Callable[[], Iterator[T]], depth: int, name: str,
                 on_discard: Callable[[T | None, int], None] | None = None) -> None:
        if depth < 1:
            raise ValueError(f"read-ahead depth must be >= 1, got {depth}")
        # a slot per item ahead, taken BEFORE the item is made and given back when the consumer takes
        # it: at most ``depth`` items exist ahead of the one the consumer holds (a bounded queue alone
        # lets the producer make one more while it waits for room)
        self._slots = threading.Semaphore(depth)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._on_discard = on_discard
        self._lock = threading.Lock()  # the hand-over of discarded items: each one is counted once
        self.tail_cpu_ns = 0
        self._thread = threading.Thread(target=self._run, args=(produce,), name=name, daemon=True)
        self._thread.start()

    def _run(self, produce: Callable[[], Iterator[T]]) -> None:
        c0 = time.thread_time_ns()
        last: tuple = ("end", None)
        try:
            items = produce()
            try:
                while self._acquire():  # False: the consumer left; close the producer (below), here
                    try:
                        item = next(items)
                    except StopIteration:
                        break
                    c1 = time.thread_time_ns()
                    self._put(("item", item, c1 - c0))
                    c0 = time.thread_time_ns()
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:  # delivered to the consumer, raised there
            last = ("error", exc)
        self._put((*last, time.thread_time_ns() - c0))

    def _acquire(self) -> bool:
        """Wait for a free slot; False once the consumer has left."""
        while not self._stop.is_set():
            if self._slots.acquire(timeout=_POLL_S):
                return not self._stop.is_set()
        return False

    def _put(self, message: tuple) -> None:
        """Hand ``message`` to the consumer; once it has left, report the item and CPU as discarded."""
        with self._lock:
            if not self._stop.is_set():
                self._queue.put(message)
                return
        self._discard(message)

    def _discard(self, message: tuple) -> None:
        kind, value, cpu_ns = message
        if self._on_discard is not None:
            self._on_discard(value if kind == "item" else None, cpu_ns)

    def __iter__(self) -> Iterator[tuple[T, int]]:
        while True:
            kind, value, cpu_ns = self._queue.get()
            if kind == "item":
                self._slots.release()  # the consumer holds this one: the producer may make the next
                yield value, cpu_ns
            elif kind == "end":
                self.tail_cpu_ns = cpu_ns
                return
            else:
                self.tail_cpu_ns = cpu_ns
                raise value

    def close(self) -> None:
        """Stop the producer at its next hand-over; do not wait for it. Items made but not taken are
        dropped (and reported to ``on_discard``)."""
        with self._lock:
            self._stop.set()
            dropped = []
            try:
                while True:
                    dropped.append(self._queue.get_nowait())
            except queue.Empty:
                pass
        for message in dropped:
            self._discard(message)
        self._slots.release()  # a producer waiting for a slot sees the stop at once

    def join(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` s) for the producer thread to end; True if it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
