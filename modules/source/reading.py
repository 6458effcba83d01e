"""The event loop's reads of one file: chunk by chunk, through decompression pools and read-ahead.

Apart from the checks and the Source's event accounting: this is the part that runs in other threads
(the decompression pool, the read-ahead reader) and counts their CPU, so what may run concurrently
with the streams is in one place. ``ChunkReading`` is a part of ``RootJetSource``: it uses the
source's parameters, counters, kept files and ``bulk_io``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator

import awkward as ak

from hltrun.framework.errors import SourceError

from .. import decompression
from ..decompression import TimedPool, threads_for
from ..jets import requested_specs
from ..read_ahead import ReadAhead
from .chunk import Chunk, chunk_counts
from .conversion import convert
from .tree import changed_since, iterate_columns, read_columns, read_failure

log = logging.getLogger("hltrun")
READ_AHEAD_THREADS = "hltrun-read-ahead-"  # the read-ahead thread's name prefix (then the file's name)
LATE_WAIT_S = 10.0  # how long end_job waits for read-ahead threads still finishing a discarded chunk


def read_ahead_depth(setting: int, cores: int | None = None) -> int:
    """The ``read_ahead`` depth to use: 0 where the process may run on one core only (its affinity,
    as a batch slot sets it): there the reader thread would preempt the streams, moving the read
    into the events' real time instead of overlapping it. Said once, in one warning line."""
    if setting and (decompression.available_cores() if cores is None else cores) < 2:
        log.warning("source: read_ahead=%d ignored (read_ahead=0): this process may run on one core only, "
                    "where the reader thread would slow the events down instead of overlapping them", setting)
        return 0
    return setting


class ChunkReading:
    """The RootJetSource's reads in the event loop (``_chunks``) and their decompression pools."""

    def _pool(self) -> TimedPool | None:
        """A decompression pool for one file's reads (``decompression_threads``); None: serial.
        One per file, closed with it: no thread outlives a read, whatever happens to the job."""
        threads = threads_for(self.params.decompression_threads, len(self._branch_names()))
        return TimedPool(threads) if threads > 1 else None

    @contextlib.contextmanager
    def _pool_cpu(self, pool: TimedPool | None) -> Iterator[None]:
        """Count the decompression threads' CPU during the block (after a failure, what they did so
        far) in ``decompression_cpu_ns``: the file check's head and tail reads are background CPU too."""
        if pool is None:
            yield
            return
        before = pool.cpu_ns
        try:
            yield
            pool.settle()  # the tasks' last microseconds (and their CPU count), inside the block
        finally:
            with self._count_lock:
                self._count["decompression_cpu_ns"] += pool.cpu_ns - before

    @contextlib.contextmanager
    def _bulk(self, pool: TimedPool | None) -> Iterator[None]:
        """``bulk_io`` that also counts the decompression threads' CPU during the block (after a
        failure, what they did so far) in ``decompression_cpu_ns``. It stays out of ``bulk_pending``:
        that CPU is the pulling thread's own, taken out of its event's CPU; the Timing service reports
        the background CPU beside it (``source_bulk.background_cpu_ms``)."""
        with self.bulk_io(), self._pool_cpu(pool):
            yield

    def _chunks(self, path: str, start: int, stop: int) -> Iterator[Chunk]:
        """Chunks of ``path``; opening, reading, converting and closing are bulk I/O (``bulk_io``). With
        ``read_ahead`` they run in a background thread and the bulk I/O is the loop's wait for them."""
        real = os.path.realpath(path)
        arrays = self._kept.pop(real, None)  # used once (a file listed again is read again)
        self._reading_kept = (real, arrays)  # where maxEvents stops in it, the next entry's lumi is read from it
        self._reach(path)  # a work unit's file past maxEvents: opened and checked now (``events`` did it)

        def produce() -> Iterator[tuple[Chunk, dict[str, int]]]:  # a file the check kept: convert only
            return self._read_file(path, start, stop) if arrays is None else self._cut(arrays, path, start, stop)

        ahead = ReadAhead(produce, self._read_ahead, name=f"{READ_AHEAD_THREADS}{os.path.basename(path)}",
                          on_discard=self._discarded) if self._read_ahead else None
        items: Iterator[Any] = iter(ahead) if ahead is not None else produce()
        try:
            while True:
                with self.bulk_io():  # serial: the read itself; read-ahead: the loop's wait for it
                    try:
                        got = next(items)
                    except StopIteration:
                        if ahead is not None:  # the reader's closing of the file
                            self._background_cpu(ahead.tail_cpu_ns)
                        return
                    except BaseException:
                        if ahead is not None:
                            self._background_cpu(ahead.tail_cpu_ns)
                        raise
                    (chunk, counts), thread_cpu = got if ahead is not None else (got, 0)
                    with self._count_lock:  # an earlier file's reader may be counting a dropped chunk
                        for key, value in counts.items():  # counted when the loop takes the chunk
                            self._count[key] += value
                    self._background_cpu(thread_cpu)
                yield chunk
        finally:  # closed when the file is done, not whenever the garbage collector finds the cycle
            if ahead is not None:
                ahead.close()  # the reader closes its file itself; nothing waits for it
                if ahead.alive:  # end_job waits for it (briefly) to count the CPU it still spends
                    self._abandoned.append(ahead)
            else:
                with self.bulk_io():
                    items.close()  # type: ignore[attr-defined]

    def _discarded(self, item: tuple[Chunk, dict[str, int]] | None, thread_ns: int) -> None:
        """A chunk read ahead but never taken (the job stopped first), or the reader's CPU after the
        loop left (``item`` None): its thread's and its pool's CPU are background CPU all the same.
        Its other counters (chunks, data quality) are not counted: no event of it was read."""
        with self._count_lock:
            self._count["read_ahead_cpu_ns"] += thread_ns
            if item is not None:
                self._count["decompression_cpu_ns"] += item[1].get("decompression_cpu_ns", 0)

    def _background_cpu(self, thread_ns: int) -> None:
        """The read-ahead thread's CPU for this pull (its pool's is in ``decompression_cpu_ns``): counted
        when the loop takes the chunk, reported beside the bulk I/O (not in the pulling thread's CPU)."""
        with self._count_lock:
            self._count["read_ahead_cpu_ns"] += thread_ns

    def _cut(self, arrays: ak.Array, path: str, start: int, stop: int) -> Iterator[tuple[Chunk, dict[str, int]]]:
        """Chunks of a file the check read whole and kept: converted only (as ``_read_file`` yields them),
        once the declared inputs' branches are read into it (``_with_declared``)."""
        arrays = self._with_declared(arrays, path, start, stop)
        for a in range(start, stop, self.params.chunk_size):
            counts = chunk_counts()
            yield self._convert(arrays[a:min(stop, a + self.params.chunk_size)], path, a, counts), counts

    def _with_declared(self, arrays: ak.Array, path: str, start: int, stop: int) -> ak.Array:
        """A kept file with the declared inputs' branches it lacks, read whole (one basket per branch): the
        consumers' check found them among its branch names without opening it again, so they are read
        here, where the loop reaches it (their lengths are checked with each chunk's conversion)."""
        missing = [name for name in self._declared_branches() if name not in arrays.fields]
        if not missing:
            return arrays
        tree = self._reopen(path)
        try:
            extra = read_columns(tree, missing)
        except Exception as exc:
            changed = changed_since(path, self._first_opened.get(os.path.realpath(path)))
            raise read_failure(path, start, stop, exc, changed) from exc
        finally:
            tree.file.close()
        for name in missing:
            arrays[name] = extra[name]
        return arrays

    def _reopen(self, path: str) -> Any:
        """Open ``path`` for the loop's reads. One begin_job checked and that fails to open now was removed,
        replaced or cut by another process meanwhile: the line says so ("input file not found" alone, for
        a file the job had found and checked, read as a typo in the file list)."""
        try:
            return self._open_tree(path)
        except SourceError as exc:
            changed = changed_since(path, self._first_opened.get(os.path.realpath(path)))
            if changed is None:
                raise
            raise type(exc)(f"{exc}; {changed}") from exc

    def _read_file(self, path: str, start: int, stop: int) -> Iterator[tuple[Chunk, dict[str, int]]]:
        """Open ``path``, read entries ``start``..``stop`` chunk by chunk and convert each; yield
        (chunk, counter increments, the pool's CPU included). Runs in the loop's thread, or in the
        read-ahead thread: it touches no counter itself, the loop adds them when it takes the chunk."""
        kept = self._open_files
        tree = (kept.take(os.path.realpath(path)) if kept is not None else None) or self._reopen(path)
        pool, failed = self._pool(), True
        reusable = False  # read to its end, or its reader stopped early: the next unit may read on the open file
        at = start  # the first entry of the chunk being read: a failure names that chunk, not the range
        try:
            names = self._read_names(tree, path)
            it = iterate_columns(tree, names, start, stop, self.params.chunk_size, pool)
            while True:
                before = pool.cpu_ns if pool is not None else 0
                try:
                    arrays, at, end = next(it)
                except StopIteration:
                    failed, reusable = False, True
                    return
                except Exception as exc:
                    bad = min(stop, at + self.params.chunk_size)
                    changed = changed_since(path, self._first_opened.get(os.path.realpath(path)))
                    raise read_failure(path, at, bad, exc, changed) from exc
                counts = chunk_counts()
                try:
                    chunk = self._convert(arrays, path, at, counts)
                except SourceError as exc:  # inconsistent branches in this chunk: it is the bad range
                    exc.first_entry = at if exc.first_entry is None else exc.first_entry
                    raise
                at = end
                counts["decompression_cpu_ns"] = pool.settle() - before if pool is not None else 0
                try:
                    yield chunk, counts
                except GeneratorExit:  # the unit's last event handed out: the loop takes no more
                    reusable = True
                    raise
        finally:
            if pool is not None:  # a consumer that stops early (maxEvents) is no failure: failed
                pool.close(failed)  # only drops queued baskets nobody will read
            if kept is not None and reusable:  # a Dask worker's next unit of this file reads on it
                kept.give(os.path.realpath(path), tree)
            else:
                tree.file.close()

    def _convert(self, arrays: ak.Array, path: str, first_entry: int, counts: dict[str, int] | None = None) -> Chunk:
        """One chunk from uproot's arrays; its data-quality counts go to ``counts`` (default: the source's)."""
        counts = self._count if counts is None else counts
        return convert(arrays, self.params, path, first_entry, counts, self._extra_jet, self._extra_cand,
                       requested_specs(self._requests), self._extra_event)
