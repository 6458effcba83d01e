"""Leak check: the RSS slope per 1000 events after the warm-up flags a leaking module, not a clean one."""

from __future__ import annotations

import gc
import mmap
from dataclasses import dataclass

import numpy as np
import pytest

from hltrun.framework.module import Producer
from hltrun.framework.registry import register_module
from hltrun.framework.services.memory_leak import check_leak, check_workers, describe, lagged_slope
from tests.helpers import run_config

KB = 1024


@dataclass
class LeakParameters:
    kb_per_event: int = 64


@register_module("TestLeaker")
class Leaker(Producer):
    """Keeps ``kb_per_event`` more on every event: a fresh mapping, every page written, so RSS grows even
    where malloc's heap holds resident free memory left by earlier tests."""

    Parameters = LeakParameters

    def begin_job(self, job) -> None:
        self.kept: list[mmap.mmap] = []

    def produce(self, event) -> None:
        block = mmap.mmap(-1, self.params.kb_per_event * KB)
        np.frombuffer(block, dtype=np.uint8).fill(1)
        self.kept.append(block)
        event.put(len(self.kept))


CFG = """
source: {{type: TestCountingSource, n: 600}}
modules:
  m: {{type: {module}}}
paths:
  p: [m]
services:
  Memory: {{leak_warmup: 100}}
"""


def _leak(write_config, module: str) -> dict:
    gc.collect()
    summary, process = run_config(write_config(CFG.format(module=module)))
    (memory,) = process.services
    return memory.results()["leak"], memory.text_report(summary)


def test_a_leaking_module_is_flagged(write_config):
    leak, text = _leak(write_config, "TestLeaker")
    # 64 kB per event = 65,536 kB per 1000 events; RSS pages and malloc headers: within 10 %
    assert leak["flagged"] and leak["slope_kb_per_1000"] == pytest.approx(64 * 1000, rel=0.10)
    assert leak["events_used"] == 500
    assert "POSSIBLE LEAK: above the 1024 kB threshold" in text


def test_a_clean_module_is_not_flagged(write_config):
    leak, text = _leak(write_config, "TestSquare")
    assert leak["slope_kb_per_1000"] is not None and not leak["flagged"]
    assert abs(leak["slope_kb_per_1000"]) < 1024
    assert "below the 1024 kB threshold" in text


PAGE_JITTER = np.random.default_rng(3).integers(0, 7, 5400) * 4096  # RSS moves by a few pages event to event


def test_one_off_steps_are_not_a_leak():
    """A chunk read once (RSS up 20 MB at one event), then an arena grown once: only the spans across a
    step grow, the median stays ~0."""
    x = np.arange(100, 1100)
    rss = 200 * 2**20 + (x >= 600) * 20 * 2**20 + (x >= 950) * 2**20 + PAGE_JITTER[:1000]
    leak = check_leak(x, rss, 100, 1024)
    assert abs(leak.slope_kb_per_1000) < 100 and not leak.flagged  # a page over a span: 40 kB / 1000 events
    assert leak.growth_after_warmup_kb == pytest.approx(21 * 1024, abs=30)  # still shown next to it


def test_a_warm_up_ramp_and_a_step_at_each_new_file_are_not_a_leak():
    """The shipped menu's RSS: +2 MB over the first 2000 events, then flat, -8 MB and +13 MB when the second
    and third files open. A least-squares slope in each of 5 windows put three windows on the ramp and the
    steps: +1700 kB / 1000 events, POSSIBLE LEAK."""
    x = np.arange(100, 5500)
    rss = (250 * 2**20 + np.minimum(x, 2000) * 2 * 1024 + (x >= 2600) * -8 * 2**20 + (x >= 4100) * 13 * 2**20
           + PAGE_JITTER)
    leak = check_leak(x, rss, 100, 1024)
    assert leak.slope_kb_per_1000 < 100 and not leak.flagged


def test_another_streams_temporary_blocks_are_not_a_leak():
    """Two streams, one allocating and freeing 50 MB per event: RSS read after an event holds the other
    stream's block at random. Least-squares slopes over windows of it read as +/-800 MB / 1000 events."""
    x = np.arange(100, 1100)
    holds = np.random.default_rng(5).random(len(x)) < 0.5
    leak = check_leak(x, 300 * 2**20 + holds * 50 * 2**20 + PAGE_JITTER[:1000], 100, 1024)
    assert abs(leak.slope_kb_per_1000) < 100 and not leak.flagged


def test_a_leak_in_steps_is_measured_at_its_rate():
    """6.4 MB kept every 100 events: 64 MB per 1000 events, as the steady leak."""
    x = np.arange(100, 2100)
    leak = check_leak(x, 200 * 2**20 + (x // 100) * 6.4 * 2**20, 100, 1024)
    assert leak.flagged and leak.slope_kb_per_1000 == pytest.approx(6.4 * 1024 * 10, rel=0.05)


def test_slope_of_a_line():
    x = np.arange(0, 5000, 3)
    assert lagged_slope(x, 2.5 * x + 7) == pytest.approx(2.5)


def test_too_few_events_give_no_slope():
    x = np.arange(120)
    short = check_leak(x, x * 4096, 100, 1024)
    assert short.slope_kb_per_1000 is None and "20 events after the 100-event warm-up" in short.reason
    assert "not measured" in describe(short.to_dict())


def _worker_rss(first: int, n: int, kb_per_event: float) -> tuple[np.ndarray, np.ndarray]:
    """A worker's samples: its own event numbers from ``first`` (where the process's count stood), RSS
    at 150 MB plus a few pages of jitter and ``kb_per_event`` kept per event."""
    order = np.arange(first, first + n)
    return order, 150 * 2**20 + (order - first) * kb_per_event * KB + PAGE_JITTER[:n]


def test_each_worker_gets_its_own_slope_and_the_steepest_is_named():
    """Two worker processes: one keeps 64 kB per event, the other nothing, at RSS levels 30 MB apart, their
    units interleaved along the job. Mixed in one series the slope was not measured ("RSS of 2 worker
    processes"); per worker, the leaking one is found and named, the clean one reads ~0."""
    clean_order, clean_rss = _worker_rss(0, 2000, 0)
    leak_order, leak_rss = _worker_rss(7000, 2000, 64)  # its count started later: a process's own numbering
    leak = check_workers({"tcp://a:1": (clean_order, clean_rss + 30 * 2**20), "tcp://b:2": (leak_order, leak_rss)},
                         100, 1024)
    assert leak.worker == "tcp://b:2" and leak.flagged
    assert leak.slope_kb_per_1000 == pytest.approx(64 * 1000, rel=0.02) and leak.events_used == 1900
    (b, a) = leak.workers
    assert b["worker"] == "tcp://b:2" and b["flagged"] and a["worker"] == "tcp://a:1" and not a["flagged"]
    assert abs(a["slope_kb_per_1000"]) < 100 and a["events_used"] == 1900
    line = describe(leak.to_dict())
    assert "of each of 2 worker processes, steepest on worker tcp://b:2" in line and "POSSIBLE LEAK" in line


def test_clean_workers_are_not_flagged_and_the_warm_up_is_each_workers_own():
    """Each worker loads its models in its first events: a 20 MB ramp over its first 100 is its warm-up,
    not a leak, wherever along the job (and the process's count) the worker started."""
    series = {}
    for name, first in (("w1", 0), ("w2", 5000)):
        order, rss = _worker_rss(first, 1500, 0)
        series[name] = (order, rss + np.minimum(order - first, 100) * 200 * KB)
    leak = check_workers(series, 100, 1024)
    assert not leak.flagged and all(abs(w["slope_kb_per_1000"]) < 100 for w in leak.workers)
    assert "below the 1024 kB threshold" in describe(leak.to_dict())


def test_workers_with_too_few_events_say_so_and_a_local_run_names_no_workers_in_its_line():
    few = check_workers({"w1": _worker_rss(0, 120, 64), "w2": _worker_rss(0, 30, 64)}, 100, 1024)
    assert few.slope_kb_per_1000 is None and not few.flagged
    assert "not measured on any (worker w1: 20 events after the 100-event warm-up" in describe(few.to_dict())
    one = check_workers({"host:123": _worker_rss(40, 600, 64)}, 100, 1024)
    assert one.worker == "host:123" and one.flagged
    assert describe(one.to_dict()).startswith("RSS slope after 100 warm-up events: +")


def _unit(worker: str, job_first: int, own_first: int, n: int, kb_per_event: float):
    """One work unit's MemoryData: ``n`` events from the job's event ``job_first``, the ``own_first``-th to
    be measured in its worker process, whose RSS grows by ``kb_per_event`` per event it measures."""
    from hltrun.framework.services.memory import MemoryData

    own = np.arange(own_first, own_first + n)
    rss = 150 * 2**20 + own * kb_per_event * KB + PAGE_JITTER[own % len(PAGE_JITTER)]
    rows = np.stack([np.arange(job_first, job_first + n), rss, own], axis=1).astype(np.int64)
    state = {k: 150 * 2**20 for k in ("rss_start", "rss_after_begin", "rss_end", "peak_rss", "peak_vsize",
                                      "kernel_max")}
    return MemoryData([], [], [], [], [], {worker: {**state, "end_epoch": float(job_first)}}, {worker: rows}, [],
                      events=n)


def test_a_dask_jobs_leak_is_measured_per_1000_of_the_workers_own_events():
    """Two workers take the job's units of 100 in turn: each measures only every other hundred of the job's
    events. The leaking worker's slope is per 1000 of the events it ran (its process's count), not per 1000
    of the job's: fitted on the job's event numbers it read half the leak, and its warm-up counted the
    other worker's events. An empty unit and a worker that ran no event merge in without changing it."""
    from hltrun.framework.services.memory import Memory, MemoryParameters

    units = [_unit("tcp://a:1" if i % 2 == 0 else "tcp://b:2", 100 * i, 100 * (i // 2), 100, 64 if i % 2 == 0 else 0)
             for i in range(40)]
    units[7:7] = [_unit("tcp://b:2", 4000, 2000, 0, 0), _unit("tcp://c:3", 4000, 0, 0, 0)]
    merged = units[0]
    for unit in units[1:]:
        merged = merged.merge(unit)
    memory = Memory("Memory", MemoryParameters(leak_warmup=100, leak_threshold_kb=1024))
    memory.load(merged)
    leak = memory.results()["leak"]
    assert leak["worker"] == "tcp://a:1" and leak["flagged"]
    assert leak["slope_kb_per_1000"] == pytest.approx(64 * 1000, rel=0.02)
    assert leak["events_used"] == 2000 - 100  # its own 2000 events, less its own warm-up
    by_worker = {w["worker"]: w for w in leak["workers"]}
    assert abs(by_worker["tcp://b:2"]["slope_kb_per_1000"]) < 100 and not by_worker["tcp://b:2"]["flagged"]
    assert by_worker["tcp://c:3"]["slope_kb_per_1000"] is None and not by_worker["tcp://c:3"]["flagged"]
