"""Read-ahead: a producer runs in a background thread, a bounded number of items ahead of its consumer.

The ROOT source reads and converts the next chunk of a file while the streams process the current
one, as CMSSW's DAQ source does with its reader threads; the event loop then waits only for what is
not ready yet. The thread's CPU is measured per item and handed over with it, so the consumer can
report the work done off its own thread (nothing hidden). An error in the producer reaches the
consumer as the same exception, at the item where it happened. Closing never waits for the thread
(an interrupt does not hang on a read): the producer stops at its next hand-over, and closes its own
resources (its generator's ``finally``) in its own thread.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")
_POLL_S = 0.1  # how often a producer blocked on a full queue looks whether the consumer has left


class ReadAhead(Generic[T]):
    """Iterate ``produce()`` in a daemon thread ``depth`` items ahead; ``__iter__`` yields
    ``(item, cpu_ns)`` with the producer thread's CPU for that item. ``tail_cpu_ns`` is the CPU
    after the last item (closing the file), known once the iteration has ended."""

    def __init__(self, produce: Callable[[], Iterator[T]], depth: int, name: str) -> None:
        if depth < 1:
            raise ValueError(f"read-ahead depth must be >= 1, got {depth}")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.tail_cpu_ns = 0
        self._thread = threading.Thread(target=self._run, args=(produce,), name=name, daemon=True)
        self._thread.start()

    def _run(self, produce: Callable[[], Iterator[T]]) -> None:
        c0 = time.thread_time_ns()
        try:
            items = produce()
            try:
                for item in items:
                    c1 = time.thread_time_ns()
                    if not self._put(("item", item, c1 - c0)) or self._stop.is_set():
                        return  # the consumer left: close the producer (below), here
                    c0 = time.thread_time_ns()
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()
            self._put(("end", None, time.thread_time_ns() - c0))
        except BaseException as exc:  # delivered to the consumer, raised there
            self._put(("error", exc, time.thread_time_ns() - c0))

    def _put(self, message: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[tuple[T, int]]:
        while True:
            kind, value, cpu_ns = self._queue.get()
            if kind == "item":
                yield value, cpu_ns
            elif kind == "end":
                self.tail_cpu_ns = cpu_ns
                return
            else:
                self.tail_cpu_ns = cpu_ns
                raise value

    def close(self) -> None:
        """Stop the producer at its next hand-over; do not wait for it."""
        self._stop.set()
        try:  # free a slot: a producer blocked on a full queue sees the stop at once
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
