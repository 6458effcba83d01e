"""Read-ahead keeps exactly ``read_ahead`` chunks ahead of the loop (no more), is off where the
process may run on one core only (said once), and every nanosecond of background CPU is counted:
the file check's partial reads in the decompression pool, and chunks read ahead but never taken."""

from __future__ import annotations

import logging
import threading
import pytest

import hltrun.modules.decompression as decompression
import hltrun.modules.root_source as rs
import hltrun.modules.source.checks as checks
from hltrun.modules.source.reading import read_ahead_depth
from hltrun.framework.errors import SourceError, one_line
from hltrun.modules.decompression import TimedPool
from hltrun.modules.read_ahead import ReadAhead
from tests.conftest import make_events
from tests.test_source_inputs import DATA
from tests.test_source_decompression import _decompress_threads, _source, _spin, write_baskets

HANG_S = 30  # hang detectors only: a working test never waits that long


# ------------------------------------------------------------------ depth

@pytest.mark.parametrize("depth", [1, 2, 3])
def test_read_ahead_keeps_exactly_depth_items_ahead(depth):
    """The consumer takes item 0 and works: the producer makes items 1..depth, then waits. Each
    production records how many items the consumer had asked for by then, so 'never more than depth
    ahead' is checked at every item, whatever the scheduling; the bounded wait below only gives a
    producer that runs too far the chance to show it (a right one never makes that item)."""
    made: list[tuple[int, int]] = []  # (item, items the consumer had asked for when it was made)
    asked = 0
    cond = threading.Condition()

    def produce():
        for i in range(depth + 6):
            with cond:
                made.append((i, asked))
                cond.notify_all()
            yield i

    ahead = ReadAhead(produce, depth, name="hltrun-read-ahead-test")
    items = iter(ahead)
    asked = 1
    assert next(items)[0] == 0
    with cond:  # items 1..depth are made while the consumer holds item 0 ...
        assert cond.wait_for(lambda: len(made) >= depth + 1, HANG_S)
        # ... and item depth + 1 is not (an unbounded or one-too-many producer makes it at once)
        too_far = cond.wait_for(lambda: len(made) > depth + 1, 0.5)
    assert not too_far and [i for i, _ in made] == list(range(depth + 1))
    got = [0]
    for _ in range(depth + 5):
        asked += 1
        got.append(next(items)[0])
    assert got == list(range(depth + 6))
    # item i is made only once the consumer has asked for item i - depth: at most depth ahead
    assert all(i < n + depth for i, n in made), made
    with pytest.raises(StopIteration):
        next(items)
    assert not _decompress_threads()


def test_closing_a_producer_waiting_for_a_slot_ends_it_and_counts_what_was_dropped():
    """Early stop (maxEvents) with the read-ahead full: close returns at once, the producer (waiting
    for a free slot) ends and closes its generator, and every item made but never taken is reported
    to ``on_discard`` with its CPU, as is the CPU after the stop (the generator's closing)."""
    full, closed = threading.Event(), threading.Event()
    discarded: list[tuple[int | None, int]] = []
    lock = threading.Lock()

    def produce():
        try:
            for i in range(10):
                _spin(0.003)
                if i == 2:
                    full.set()
                yield i
        finally:
            _spin(0.003)
            closed.set()

    def on_discard(item, cpu_ns):
        with lock:
            discarded.append((item, cpu_ns))

    ahead = ReadAhead(produce, 2, name="hltrun-read-ahead-test", on_discard=on_discard)
    items = iter(ahead)
    assert next(items)[0] == 0
    assert full.wait(HANG_S)
    ahead.close()
    assert ahead.join(HANG_S) and closed.is_set()
    assert sorted(i for i, _ in discarded if i is not None) == [1, 2]  # made, never taken
    assert [i for i, _ in discarded].count(None) == 1  # the CPU after the stop, once
    assert all(cpu >= 2.5e6 for _, cpu in discarded)  # each one's own CPU (3 ms spins)
    assert not _decompress_threads()


# ------------------------------------------------------------------ one core

@pytest.fixture
def one_core(monkeypatch):
    monkeypatch.setattr(decompression, "available_cores", lambda: 1)


@pytest.fixture
def warnings_logged():
    """The 'hltrun' logger's warnings (a CLI test earlier in the session may have stopped it
    propagating to the root logger, and raised its level: both are undone here for the test only)."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger, handler = logging.getLogger("hltrun"), Collect(logging.WARNING)
    level = logger.level
    logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_read_ahead_is_off_on_one_core_with_one_warning(tmp_path, one_core, warnings_logged, monkeypatch):
    """On one core the reader thread would preempt the streams (its read lands in the events' real
    time): the source reads in the pull instead, and says so once, naming the option."""
    monkeypatch.setattr(checks, "KEEP_BYTES", 0)
    path = write_baskets(tmp_path / "b.root", make_events(120, seed=5), per_basket=30)
    seen: set[str] = set()
    real = rs.RootJetSource._convert

    def spying(self, *args, **kwargs):
        seen.add(threading.current_thread().name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(rs.RootJetSource, "_convert", spying)
    src = _source([path, path], chunk_size=20, read_ahead=2, allowDuplicateFiles=True,
                  duplicateCheckMode="noDuplicateCheck")
    n = sum(1 for _ in src.events(0, None))
    src.end_job()
    warnings = [m for m in warnings_logged if "read_ahead" in m]
    assert n == 240 and len(warnings) == 1 and "one core" in warnings[0] and "read_ahead=0" in warnings[0]
    assert seen and not any(name.startswith("hltrun-read-ahead") for name in seen)  # read in the pull
    assert src.accounting()["read_ahead_cpu_ns"] == 0


def test_read_ahead_stays_on_with_two_cores(tmp_path, monkeypatch, warnings_logged):
    monkeypatch.setattr(decompression, "available_cores", lambda: 2)
    monkeypatch.setattr(checks, "KEEP_BYTES", 0)
    path = write_baskets(tmp_path / "b.root", make_events(60, seed=5), per_basket=30)
    src = _source([path], chunk_size=20, read_ahead=2)
    assert sum(1 for _ in src.events(0, None)) == 60
    assert not [m for m in warnings_logged if "read_ahead" in m]
    assert src.accounting()["read_ahead_cpu_ns"] > 0


def test_read_ahead_zero_never_warns(one_core, warnings_logged):
    assert read_ahead_depth(0) == 0 and read_ahead_depth(1, cores=4) == 1
    assert not warnings_logged


# ------------------------------------------------------------------ background CPU, all of it

@pytest.fixture
def pools(monkeypatch):
    """The CPU of every decompression pool the source made, read once the pool is closed."""
    closed: list[int] = []
    real = TimedPool.close

    def recording(self, failed):
        real(self, failed)
        closed.append(self.settle())

    monkeypatch.setattr(TimedPool, "close", recording)
    return closed


def test_the_file_checks_partial_reads_count_their_pool_cpu(tmp_path, pools, monkeypatch):
    """A multi-basket file is not kept: the check reads its head and tail only, in the pool. That
    pool's CPU is background CPU of the source like any other."""
    monkeypatch.setattr(checks, "KEEP_BYTES", 0)
    path = write_baskets(tmp_path / "b.root", make_events(200, seed=6), per_basket=40)
    src = _source([path], chunk_size=30, decompression_threads=2)  # begin_job: the check only
    assert len(pools) == 1 and pools[0] > 0
    assert src.accounting()["decompression_cpu_ns"] == pools[0]


@pytest.mark.parametrize("depth", [1, 2])
def test_chunks_read_ahead_and_dropped_at_max_events_count_their_cpu(tmp_path, pools, monkeypatch, depth):
    """maxEvents inside a file with read-ahead: the chunks read ahead are never taken, but their
    reader and pool CPU was spent: it is counted (every pool nanosecond, exactly; the reader's
    conversions, each a known CPU spin, at least), while chunks and data quality count only what
    was taken."""
    monkeypatch.setattr(checks, "KEEP_BYTES", 0)
    path = write_baskets(tmp_path / "b.root", make_events(300, seed=3), per_basket=20)
    converted, all_made = [], threading.Event()
    real = rs.RootJetSource._convert

    def spinning(self, *args, **kwargs):
        _spin(0.01)  # each conversion costs its thread 10 ms of CPU
        chunk = real(self, *args, **kwargs)
        converted.append(threading.current_thread().name)
        if len(converted) == 3 + depth:
            all_made.set()
        return chunk

    monkeypatch.setattr(rs.RootJetSource, "_convert", spinning)
    src = _source([path], chunk_size=20, decompression_threads=2, read_ahead=depth)
    events = src.events(0, 45)  # 3 chunks taken (the third in part)
    got = 0
    for _ in events:
        got += 1
        if got == 44:  # the reader has read ``depth`` chunks past the one the loop holds
            assert all_made.wait(HANG_S)
    src.end_job()
    acc = src.accounting()
    assert got == 45 and acc["chunks"] == 3 and len(converted) == 3 + depth
    assert all(name.startswith("hltrun-read-ahead") for name in converted)
    assert acc["read_ahead_cpu_ns"] >= 0.95 * 0.01e9 * len(converted)  # the dropped chunks too
    assert len(pools) == 2 and acc["decompression_cpu_ns"] == sum(pools)  # check's pool + loop's
    assert not _decompress_threads()


# ------------------------------------------------------------------ one-line messages

def test_multi_line_library_messages_become_one_complete_line():
    exc = OSError("expected Chunk of length 23012,\nreceived 16442 bytes from FSSpecSource\nfor file path /x.root")
    assert one_line(exc) == ("expected Chunk of length 23012, received 16442 bytes from FSSpecSource "
                             "for file path /x.root")
    assert one_line(ValueError(""), "corrupt data") == "corrupt data"
    long = one_line(ValueError("word " * 500), limit=100)
    assert len(long) == 100 and long.endswith("…") and "\n" not in long


def test_a_truncated_file_fails_in_one_complete_line(tmp_path):
    """uproot's message for a short read spans three lines; the first ends in a comma."""
    trunc = tmp_path / "trunc.root"
    trunc.write_bytes((DATA / "qcd_dijet.root").read_bytes()[:100_000])
    with pytest.raises(SourceError) as err:
        _source([trunc])
    msg = str(err.value)
    assert "\n" not in msg and not msg.rstrip().endswith(",")
    assert "is cut short: 100000 bytes" in msg and str(trunc) in msg  # its ROOT header's end, not uproot's short read
