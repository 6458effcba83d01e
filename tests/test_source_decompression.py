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

from framework.errors import ConfigError, SourceError
from framework.schema import build
from modules.decompression import TimedPool, threads_for
from modules.jets import InputSpec
from modules.root_source import RootJetSource, RootJetSourceParameters
from modules.rootio import branch_groups, regroup, write_nanoaod
from tests.conftest import make_events, write_counts
from tests.test_source_inputs import DATA, LAYOUTS, same_bits

SPEC = InputSpec(2, 100, True)


class _Job:
    def __init__(self) -> None:
        self.consumes = {"source": {SPEC}}


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
    """Pool threads still alive once those that are ending have ended (a pool closed after a
    failure does not wait for its threads, but they must stop, not idle on the queue)."""
    pool_threads = [t for t in threading.enumerate() if t.name.startswith("hltrun-decompress")]
    for t in pool_threads:
        t.join(10)
    return [t.name for t in pool_threads if t.is_alive()]


# ------------------------------------------------------------------ the option

@pytest.mark.parametrize("value", [-1, 65, "two", 1.5, True])
def test_bad_thread_counts_are_configuration_errors(value):
    with pytest.raises(ConfigError, match="decompression_threads"):
        build(RootJetSourceParameters, {"files": ["x.root"], "decompression_threads": value}, "source")


def test_auto_and_serial_settings():
    assert threads_for(None, 11) == min(4, 11, threads_for(None, 100))
    assert threads_for(None, 1) == 1  # one branch: nothing to run in parallel
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
def test_shipped_samples_are_identical_with_threads(sample):
    serial, _ = _read([DATA / sample], chunk_size=700, decompression_threads=0)
    threaded, _ = _read([DATA / sample], chunk_size=700, decompression_threads=2)
    assert len(serial) > 1000 and _same(serial, threaded)


# ------------------------------------------------------------------ accounting

def test_pool_cpu_is_in_the_bulk_io_cpu(tmp_path):
    """The decompression threads' CPU is added to the bulk I/O's CPU of the pull that read the
    chunk (settled inside the block), and every nanosecond of it is in the accounting."""
    path = write_baskets(tmp_path / "baskets.root", make_events(200, seed=7), per_basket=50)
    src = _source([path], chunk_size=50, decompression_threads=2)
    src.bulk_pending = None  # begin_job's check (not kept: several baskets)
    before = src.accounting()["decompression_cpu_ns"]
    pulls = []
    for _ in src.events(0, None):
        if src.bulk_pending is not None:
            pulls.append(src.bulk_pending)
            src.bulk_pending = None
    in_loop = src.accounting()["decompression_cpu_ns"] - before
    assert in_loop > 0
    loop_cpu = sum(c for _, c in pulls)
    assert loop_cpu >= in_loop  # the reading thread's own CPU plus the pool's


def _spin(cpu_s: float) -> None:
    end = time.thread_time() + cpu_s
    while time.thread_time() < end:
        pass


def test_bulk_block_includes_the_pool_cpu_of_tasks_still_ending():
    """uproot's tasks post their basket, then end: the block waits for their last CPU (settle) and
    adds every pool nanosecond to the bulk CPU, though the reading thread itself only waited."""
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
    pool.close(failed=False)
    wall_ns, cpu_ns = src.bulk_pending
    assert pool.cpu_ns >= 40e6  # the task's whole CPU ...
    assert cpu_ns >= pool.cpu_ns  # ... is in the bulk CPU, the reading thread's (~0) on top
    assert src.accounting()["decompression_cpu_ns"] == pool.cpu_ns


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
    """A corrupt basket decompressed in a pool thread gives the serial read's one-line error (at
    the file check for the first basket, in the loop for a middle one) and leaves no thread."""
    path = _corrupt_basket(write_baskets(tmp_path / "bad.root", make_events(200, seed=8), per_basket=40),
                           "FatJetPFCand_eta", basket)
    messages = []
    for threads in (0, 3):
        with pytest.raises(SourceError) as err:
            _read([path], chunk_size=30, decompression_threads=threads)
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "bad.root" in messages[0]
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
