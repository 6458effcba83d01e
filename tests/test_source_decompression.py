"""Parallel basket decompression in the ROOT source (``decompression_threads``): validated, really
parallel (baskets decompressed in the pool's threads), bit-identical to the serial read on every
layout and on the shipped samples, honest in its accounting, and failing exactly as the serial read
does (same one-line error, same exit code, no thread left behind, no wait on an interrupt)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import uproot

from hltrun.framework.errors import ConfigError, SourceError
from hltrun.framework.schema import build
from hltrun.modules.decompression import TimedPool, threads_for
from hltrun.modules.jets import InputSpec
from hltrun.modules.root_source import RootJetSource, RootJetSourceParameters
from hltrun.framework.context import SourceContext
from hltrun.modules.rootio import branch_groups, regroup, write_nanoaod
from tests.conftest import make_events, write_counts
from tests.test_source_inputs import DATA, LAYOUTS, same_bits

SPEC = InputSpec(2, 100, True)


def _Job() -> SourceContext:
    return SourceContext.standalone(SPEC)


def _source(files, **params) -> RootJetSource:
    src = RootJetSource("source", build(RootJetSourceParameters, {"files": [str(f) for f in files], **params},
                                        "source"))
    src.begin_job(_Job())
    return src


def _read(files, **params) -> tuple[list, RootJetSource]:
    """Every event's id, per-jet arrays and model inputs, as plain arrays."""
    src = _source(files, **params)
    out = []
    for eid, products in src.events(0, None):
        jets = products[""]
        out.append((eid, jets.pt, jets.eta, jets.phi, jets.mass, jets.n_constituents, *jets.model_input(SPEC)))
    src.end_job()
    return out, src


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x[0] == y[0] and all(same_bits(u, v) for u, v in zip(x[1:], y[1:]))
                                    for x, y in zip(a, b))


def write_baskets(path: Path, events: list[dict], per_basket: int, compression=None) -> Path:
    """The counts layout with one basket per ``per_basket`` entries in every branch (each extend
    writes one), LZMA by default as NanoAOD: the loop reads it chunk by chunk through iterate."""
    one = write_counts(path.with_suffix(".one.root"), events)
    with uproot.open(one) as f:
        tree = f["Events"]
        layout, arrays = branch_groups(tree), tree.arrays(library="ak")
    with uproot.recreate(path, compression=compression or uproot.LZMA(1)) as out:
        for start in range(0, len(arrays), per_basket):
            write_nanoaod(out, "Events", regroup(arrays[start:start + per_basket], layout))
    return path


def _decompress_threads() -> list[str]:
    """Pool and read-ahead threads still alive once those that are ending have ended (closing after
    a failure or an early stop does not wait for them, but they must stop, not idle on a queue)."""
    pool_threads = [t for t in threading.enumerate() if t.name.startswith(("hltrun-decompress", "hltrun-read-ahead"))]
    for t in pool_threads:
        t.join(10)
    return [t.name for t in pool_threads if t.is_alive()]


# ------------------------------------------------------------------ the option

@pytest.mark.parametrize("value", [-1, 65, "two", 1.5, True])
def test_bad_thread_counts_are_configuration_errors(value):
    with pytest.raises(ConfigError, match="decompression_threads"):
        build(RootJetSourceParameters, {"files": ["x.root"], "decompression_threads": value}, "source")


@pytest.mark.parametrize("value", [-1, 17, "yes", 0.5])
def test_bad_read_ahead_depths_are_configuration_errors(value):
    with pytest.raises(ConfigError, match="read_ahead"):
        build(RootJetSourceParameters, {"files": ["x.root"], "read_ahead": value}, "source")


def test_auto_and_serial_settings():
    assert threads_for(None, 11, cores=2) == threads_for(None, 11, cores=64) == 4
    assert threads_for(None, 11, cores=1) == 1  # one core: serial
    assert threads_for(None, 3, cores=2) == 3 and threads_for(None, 1, cores=8) == 1  # no idle thread
    assert threads_for(0, 11) == threads_for(1, 11) == 1
    assert threads_for(3, 11) == 3


# ------------------------------------------------------------------ identical results, really parallel

@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_threads_give_the_serial_result_on_every_layout(tmp_path, layout):
    writer, params = LAYOUTS[layout]
    path = writer(tmp_path / f"{layout}.root", make_events(90, seed=4))
    serial, _ = _read([path], chunk_size=13, decompression_threads=0, **params)
    threaded, _ = _read([path], chunk_size=13, decompression_threads=3, **params)
    assert len(serial) == 90 and _same(serial, threaded)


def test_baskets_are_decompressed_in_the_pool_and_match_the_serial_read(tmp_path, monkeypatch):
    """A multi-basket LZMA file read chunk by chunk in the loop (not kept by the check): every
    basket is decompressed in a pool thread with threads, in the reading thread without, and the
    events are the same bit for bit."""
    import uproot.models.TBasket as tbasket

    path = write_baskets(tmp_path / "baskets.root", make_events(200, seed=6), per_basket=40)
    where: list[str] = []
    real = tbasket.Model_TBasket.read_members

    def spying(self, *args, **kwargs):
        where.append(threading.current_thread().name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(tbasket.Model_TBasket, "read_members", spying)
    serial, src0 = _read([path], chunk_size=30, decompression_threads=0)
    assert where and not any(n.startswith("hltrun-decompress") for n in where)
    assert src0.accounting()["decompression_cpu_ns"] == 0
    where.clear()
    threaded, src3 = _read([path], chunk_size=30, decompression_threads=3)
    assert where and all(n.startswith("hltrun-decompress") for n in where), set(where)
    assert len({n for n in where}) > 1  # more than one thread took baskets
    assert src3.accounting()["decompression_cpu_ns"] > 0
    assert len(serial) == 200 and _same(serial, threaded)
    assert not _decompress_threads()  # every file's pool is closed with it


@pytest.mark.parametrize("sample", sorted(p.name for p in DATA.glob("*.root")))
def test_shipped_samples_are_identical_with_threads_and_read_ahead(sample):
    """The shipped samples (one basket per branch: read whole by the check and kept; with read-ahead
    the chunks are cut and converted in the background thread)."""
    serial, src0 = _read([DATA / sample], chunk_size=700, decompression_threads=0, read_ahead=0)
    threaded, src = _read([DATA / sample], chunk_size=700, decompression_threads=2, read_ahead=1)
    assert len(serial) > 1000 and _same(serial, threaded)
    assert src0.accounting()["read_ahead_cpu_ns"] == 0 < src.accounting()["read_ahead_cpu_ns"]
    assert src.data_quality() == src0.data_quality() and src.accounting()["chunks"] == src0.accounting()["chunks"]


# ------------------------------------------------------------------ accounting

@pytest.mark.parametrize("streams", [1, 2])
@pytest.mark.parametrize("read_ahead", [0, 2])
def test_background_cpu_is_reported_beside_the_bulk_io(tmp_path, streams, read_ahead):
    """On the real event loop with the Timing service: the decompression threads' and the
    read-ahead thread's CPU is on the bulk line (``background_cpu_ms``), all of it, never subtracted
    from an event's CPU (the source's per-event CPU stays >= 0), and events + bulk + idle is still
    streams x loop (the bulk real time is what the loop waited)."""
    import hltrun.framework.services  # noqa: F401 - registers Timing
    from hltrun.framework.config import validate
    from hltrun.framework.eventloop import EventProcessor
    from hltrun.framework.process import Process
    from hltrun.framework.services.timing import Timing

    path = write_baskets(tmp_path / "baskets.root", make_events(240, seed=7), per_basket=40)
    data = {"process": "BG", "options": {"numberOfThreads": streams},
            "source": {"type": "RootJetSource", "files": [str(path)], "chunk_size": 40,
                       "decompression_threads": 2, "read_ahead": read_ahead},
            "modules": {"batcher": {"type": "JetBatcher"}}, "paths": {"p": ["batcher"]},
            "services": {"Timing": {"calibrate": False}}}
    process = Process(validate(data, "<background cpu test>"))
    summary = EventProcessor(process).run()
    (timing,) = [s for s in process.services if isinstance(s, Timing)]
    res = timing.result(summary)
    acc = summary.source
    assert acc["decompression_cpu_ns"] > 0 and (acc["read_ahead_cpu_ns"] > 0) == (read_ahead > 0)
    assert res["source_bulk"]["background_cpu_ms"] == pytest.approx(
        (acc["decompression_cpu_ns"] + acc["read_ahead_cpu_ns"]) * 1e-6)
    assert res["source"]["cpu_per_event_ms"] >= 0 and res["source_bulk"]["cpu_ms"] >= 0
    from hltrun.framework.report.timereport import budget_report

    assert f"{res['source_bulk']['background_cpu_ms']:.1f} ms CPU in background threads" in budget_report(res)
    assert acc["read"] == summary.events_processed == 240 and acc["chunks"] == 6
    loop, bulk = res["loop"], res["source_bulk"]
    # the farm pays all the CPU: the events', the bulk I/O's and the background threads'
    events_cpu_ms = timing.merged_rows()[:, 3].sum() * 1e-6
    assert res["farm"]["cpu_per_event_ms"] * 240 == pytest.approx(
        events_cpu_ms + bulk["cpu_ms"] + bulk["background_cpu_ms"], rel=1e-6)
    events_ms = timing.merged_rows()[:, 2].sum() * 1e-6
    assert events_ms + bulk["real_ms"] - bulk["at_begin_job_real_ms"] + loop["idle_real_ms"] == \
        pytest.approx(streams * loop["real_ms"], rel=1e-6)


def _spin(cpu_s: float) -> None:
    end = time.thread_time() + cpu_s
    while time.thread_time() < end:
        pass


def test_bulk_block_counts_the_pool_cpu_of_tasks_still_ending():
    """uproot's tasks post their basket, then end: the block waits for their last CPU (settle) and
    counts every pool nanosecond, apart from the pulling thread's own CPU (which only waited)."""
    src = RootJetSource("source", build(RootJetSourceParameters, {"files": ["x.root"]}, "source"))
    pool = TimedPool(1)
    posted = threading.Event()

    def task():
        _spin(0.01)
        posted.set()  # as uproot's chunk_to_basket puts its basket on the queue, then returns
        _spin(0.03)

    with src._bulk(pool):
        pool.submit(task)
        posted.wait(30)
    counted = src.accounting()["decompression_cpu_ns"]
    pool.close(failed=False)
    assert pool.cpu_ns >= 40e6 and counted == pool.cpu_ns  # the task's whole CPU, counted in the block
    wall_ns, cpu_ns = src.bulk_pending
    assert cpu_ns < pool.cpu_ns  # the pulling thread's own CPU only: it waited


# ------------------------------------------------------------------ failures

def _corrupt_basket(path: Path, branch: str, basket: int) -> Path:
    """Overwrite compressed bytes inside one basket: the file opens, that basket cannot be read."""
    with uproot.open(path) as f:
        seek = int(f["Events"][branch].member("fBasketSeek")[basket])
    data = bytearray(path.read_bytes())
    at = data.index(b"XZ", seek)
    data[at + 30:at + 80] = b"\xff" * 50
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("basket", [0, 2], ids=["at the check", "in the loop"])
def test_a_bad_basket_fails_as_in_the_serial_read(tmp_path, basket):
    """A corrupt basket decompressed in a pool thread, or read by the read-ahead thread, gives the
    serial read's one-line error (at the file check for the first basket, in the loop for a middle
    one) and leaves no thread."""
    path = _corrupt_basket(write_baskets(tmp_path / "bad.root", make_events(200, seed=8), per_basket=40),
                           "FatJetPFCand_eta", basket)
    messages = []
    for threads, ahead in ((0, 0), (3, 0), (0, 2), (3, 1)):
        with pytest.raises(SourceError) as err:
            _read([path], chunk_size=30, decompression_threads=threads, read_ahead=ahead)
        messages.append(str(err.value))
    assert len(set(messages)) == 1 and "bad.root" in messages[0], messages
    assert ("cannot read entries 0-50" in messages[0]) == (basket == 0)
    assert ("failed to read" in messages[0]) == (basket == 2)
    assert not _decompress_threads()


def test_skip_bad_files_with_threads_reads_the_good_ones(tmp_path):
    good = write_baskets(tmp_path / "good.root", make_events(100, seed=1), per_basket=40)
    bad = _corrupt_basket(write_baskets(tmp_path / "bad.root", [dict(e, event=e["event"] + 10_000)
                                                                 for e in make_events(100, seed=2)], per_basket=40),
                          "FatJetPFCand_pt", 1)
    events, src = _read([good, bad], chunk_size=30, decompression_threads=3, skipBadFiles=True)
    serial, _ = _read([good, bad], chunk_size=30, decompression_threads=0, skipBadFiles=True)
    assert _same(events, serial) and src.accounting()["bad_files"] == 1
    assert src.accounting()["read"] == len(events) == len(serial)


def test_closing_after_a_failure_does_not_wait_for_the_basket_in_flight():
    """Ctrl-C or a bad basket while the pool still works: the queued baskets are dropped and
    nothing waits for the one being decompressed (an interrupt never hangs on a pool thread)."""
    release, started = threading.Event(), threading.Event()
    ran = []

    def stuck():
        started.set()
        release.wait(60)

    pool = TimedPool(1)
    pool.submit(stuck)
    pool.submit(ran.append, 1)  # queued behind it
    assert started.wait(10)
    closer = threading.Thread(target=lambda: (pool.close(failed=True), pool.settle()))
    closer.start()
    closer.join(10)  # a hang detector, not a timing: close and settle return while `stuck` runs
    stuck_too = closer.is_alive()
    release.set()
    closer.join()
    pool.shutdown(wait=True)
    assert not stuck_too and ran == []


# ------------------------------------------------------------------ read-ahead

@pytest.fixture()
def nothing_kept(monkeypatch):
    """The file check keeps no file for the loop: every file is read chunk by chunk in the loop,
    through the read-ahead thread when it is on."""
    import hltrun.modules.source.checks as checks

    monkeypatch.setattr(checks, "KEEP_BYTES", 0)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_read_ahead_gives_the_serial_result_on_every_layout(tmp_path, layout, nothing_kept):
    writer, params = LAYOUTS[layout]
    path = writer(tmp_path / f"{layout}.root", make_events(90, seed=4))
    serial, src0 = _read([path, path], chunk_size=13, decompression_threads=0, read_ahead=0,
                         allowDuplicateFiles=True, duplicateCheckMode="noDuplicateCheck", **params)
    for threads, ahead in ((0, 1), (2, 3)):
        got, src = _read([path, path], chunk_size=13, decompression_threads=threads, read_ahead=ahead,
                         allowDuplicateFiles=True, duplicateCheckMode="noDuplicateCheck", **params)
        assert len(serial) == 180 and _same(serial, got)
        assert src.data_quality() == src0.data_quality()
        assert {k: v for k, v in src.accounting().items() if not k.endswith("cpu_ns")} == \
            {k: v for k, v in src0.accounting().items() if not k.endswith("cpu_ns")}
        assert src.accounting()["read_ahead_cpu_ns"] > 0
    assert not _decompress_threads()


@pytest.mark.parametrize("kept", [False, True], ids=["read in the loop", "kept by the check"])
@pytest.mark.parametrize("ahead", [1, 3])
def test_stopping_early_counts_what_was_taken_and_stops_the_reader(tmp_path, ahead, kept, monkeypatch):
    """maxEvents inside a file: the reader has read chunks ahead that nobody takes; they are not
    counted (chunks, data quality), the events are the serial ones, and the reader stops."""
    if not kept:
        import hltrun.modules.source.checks as checks

        monkeypatch.setattr(checks, "KEEP_BYTES", 0)
    path = write_baskets(tmp_path / "b.root", make_events(300, seed=3), per_basket=300 if kept else 25)

    def first(n, **params):
        src = _source([path], chunk_size=20, **params)
        got = [(eid, products[""].pt) for eid, products in src.events(0, n)]
        return got, src

    serial, src0 = first(45, read_ahead=0, decompression_threads=0)
    got, src = first(45, read_ahead=ahead, decompression_threads=2)
    assert len(got) == 45 and all(a[0] == b[0] and same_bits(a[1], b[1]) for a, b in zip(serial, got))
    assert not _decompress_threads()  # the reader has stopped (after finishing what it was reading) ...
    assert src.accounting()["chunks"] == src0.accounting()["chunks"] == 3  # ... and counted nothing of it
    assert src.data_quality() == src0.data_quality()


def test_a_file_gone_before_the_loop_fails_as_in_the_serial_read(tmp_path, nothing_kept):
    messages = []
    for ahead in (0, 1):
        path = write_baskets(tmp_path / f"gone{ahead}.root", make_events(50, seed=2), per_basket=25)
        src = _source([path], chunk_size=20, read_ahead=ahead)
        path.unlink()  # after the check, before the loop reaches it
        with pytest.raises(SourceError) as err:
            list(src.events(0, None))
        messages.append(str(err.value).replace(f"gone{ahead}", "gone"))
    assert messages[0] == messages[1] and "input file not found" in messages[0]
    assert not _decompress_threads()


def test_read_ahead_hands_items_in_order_with_their_cpu_and_the_error_at_its_place():
    from hltrun.modules.read_ahead import ReadAhead

    def produce():
        for i in range(5):
            _spin(0.005)
            yield i
        raise SourceError("source: broken at item 5")

    ahead = ReadAhead(produce, 2, name="hltrun-read-ahead-test")
    got = []
    with pytest.raises(SourceError, match="broken at item 5"):
        for item, cpu_ns in ahead:
            got.append(item)
            assert cpu_ns >= 4e6  # the producer's CPU for this item, measured in its thread
    assert got == [0, 1, 2, 3, 4]
    assert not _decompress_threads()


def test_closing_the_read_ahead_does_not_wait_for_a_stuck_producer():
    """Ctrl-C while the reader decompresses a big chunk: close returns at once; the reader stops at
    its next hand-over and closes its own file (its generator's finally) in its thread."""
    from hltrun.modules.read_ahead import ReadAhead

    release, closed = threading.Event(), threading.Event()

    def produce():
        try:
            yield 0
            release.wait(60)  # a long read
            yield 1
            yield 2
        finally:
            closed.set()

    ahead = ReadAhead(produce, 1, name="hltrun-read-ahead-test")
    items = iter(ahead)
    assert next(items)[0] == 0
    closer = threading.Thread(target=ahead.close)
    closer.start()
    closer.join(10)  # a hang detector, not a timing
    stuck = closer.is_alive()
    release.set()
    assert not stuck and closed.wait(10)  # the producer's finally ran, in its own thread
    assert not _decompress_threads()
