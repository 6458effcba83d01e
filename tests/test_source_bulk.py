"""The source's bulk I/O (file open, chunk read and conversion) is reported on its own line,
amortised per event, and never charged to the event that happens to trigger it.

A test source burns a known CPU time in ``bulk_io`` at every chunk (BULK_MS, far above any event's
own) and sleeps a small known time per event outside it. Burns and sleeps never take less real time
than asked, so they give lower bounds; the job's wall clock, measured here, gives the upper bound on
everything recorded. A chunk that leaks back into an event shows in the events' CPU time, which a
busy machine does not stretch (their real time it does: a descheduled thread on a loaded 2-core CI
box once put 40-100 ms into an event's source time, so no real-time upper bound per event is used);
a chunk time that is lost shows in the bulk line and in the totals.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import pytest

import hltrun.framework.services  # noqa: F401 - registers Timing
from hltrun.framework.config import validate
from hltrun.framework.event import EventID
from hltrun.framework.eventloop import EventProcessor
from hltrun.framework.module import Source
from hltrun.framework.process import Process
from hltrun.framework.registry import register_module
from hltrun.framework.report.timereport import budget_report, fast_timer_json, loop_report, time_report
from hltrun.framework.services.timing import Timing
from hltrun.framework.services.timing_data import TimingData
from tests.plugins import burn_cpu

N_EVENTS, CHUNK = 24, 6
BULK_MS = 40.0  # CPU per chunk, inside bulk_io
EVENT_SOURCE_MS = 1.0  # per event, outside bulk_io: stays the event's source time
MODULE_MS = 2.0
BUDGET_MS = 30.0  # between an event's own time (~3 ms) and a chunk's (>= 40 ms)


@dataclass
class _ChunkedParameters:
    n: int = N_EVENTS
    chunk: int = CHUNK


@register_module("_TBChunkedSource")
class _ChunkedSource(Source):
    """Events in chunks; each chunk 'reads' for BULK_MS inside bulk_io."""

    Parameters = _ChunkedParameters

    def events(self, skip: int, limit: int | None):
        for i in range(self.params.n):
            if i % self.params.chunk == 0:
                with self.bulk_io():
                    burn_cpu(BULK_MS)
            time.sleep(EVENT_SOURCE_MS / 1000)
            yield EventID(1, 1, i + 1), {"": i}


def _run(streams: int) -> tuple[dict, np.ndarray, float, Timing]:
    data = {"process": "BULK", "options": {"streams": streams, "budget_ms": BUDGET_MS},
            "source": {"type": "_TBChunkedSource"},
            "modules": {"s": {"type": "TestSleep", "sleep_ms": MODULE_MS}},
            "paths": {"p": ["s"]}, "services": {"Timing": {"calibrate": False}}}
    process = Process(validate(data, "<bulk test>"))
    t0 = time.perf_counter()
    summary = EventProcessor(process).run()
    wall_ms = (time.perf_counter() - t0) * 1e3
    (timing,) = [s for s in process.services if isinstance(s, Timing)]
    return timing.result(summary), timing.merged_rows(), wall_ms, timing


@pytest.mark.parametrize("streams", [1, 2])
def test_chunk_time_is_on_its_own_line_not_in_any_event(streams):
    res, rows, wall_ms, _ = _run(streams)
    chunks = N_EVENTS // CHUNK
    bulk = res["source_bulk"]
    # not lost: every chunk's sleep is on the bulk line, which fits in the job's wall time
    assert bulk["pulls"] == chunks
    assert chunks * BULK_MS <= bulk["real_ms"] <= wall_ms
    assert bulk["real_per_event_ms"] == pytest.approx(bulk["real_ms"] / N_EVENTS)
    # not leaked: no event carries a chunk (its CPU; an event's own pull and module only sleep)
    events_cpu_ms = rows[:, 3] * 1e-6
    assert events_cpu_ms.sum() < chunks * BULK_MS / 2 and res["event"]["cpu"]["max"] < BULK_MS / 2
    source_ms = rows[:, 4] * 1e-6
    assert (source_ms >= EVENT_SOURCE_MS).all()  # the per-event part of the pull stays with the event
    # the over-budget count and the max are the events' own (their rows, bulk-free as checked above)
    assert res["budget"]["over_budget_events"] == int((rows[:, 2] * 1e-6 > BUDGET_MS).sum())
    assert res["event"]["real"]["max"] == pytest.approx(rows[:, 2].max() * 1e-6)
    # every second accounted for: events + bulk + idle == streams x loop, each part within the wall time
    loop = res["loop"]
    events_ms = rows[:, 2].sum() * 1e-6
    assert events_ms + bulk["real_ms"] <= streams * loop["real_ms"] * 1.001
    assert events_ms + bulk["real_ms"] + loop["idle_real_ms"] == pytest.approx(streams * loop["real_ms"], rel=1e-6)
    assert events_ms >= N_EVENTS * (EVENT_SOURCE_MS + MODULE_MS)
    # the mean the budget and the farm judge includes the bulk I/O, amortised
    assert res["farm"]["real_per_event_ms"] == pytest.approx(res["event"]["real"]["mean"] + bulk["real_per_event_ms"])
    assert res["budget"]["mean_share_of_budget"] == pytest.approx(
        (res["event"]["real"]["mean"] + bulk["real_per_event_ms"]) / BUDGET_MS)


def test_reports_and_resources_json_show_the_bulk_line():
    res, _, _, _ = _run(1)
    bulk = res["source_bulk"]
    assert "source bulk I/O Real/event" in loop_report(res) and "bulk" not in time_report(res)
    assert "[source bulk I/O, amortised]" in budget_report(res)
    doc = json.loads(json.dumps(fast_timer_json(res, "BULK")))
    (entry,) = [m for m in doc["modules"] if m["label"] == "source bulk I/O"]
    assert entry["time_real"] == pytest.approx(bulk["real_ms"])
    assert doc["total"]["time_real"] == pytest.approx(sum(m["time_real"] for m in doc["modules"]))
    assert doc["total"]["time_real"] >= bulk["real_ms"] + res["event"]["real"]["mean"] * N_EVENTS


def test_merged_timing_data_adds_the_bulk_line():
    _, _, _, timing = _run(1)
    one = timing.snapshot()
    both = one.merge(one)
    assert (both.bulk_real_ns, both.bulk_cpu_ns, both.bulk_pulls) == \
        (2 * one.bulk_real_ns, 2 * one.bulk_cpu_ns, 2 * one.bulk_pulls)
    assert one.bulk_pulls == N_EVENTS // CHUNK and isinstance(one, TimingData)


def test_root_source_reports_its_reads_as_bulk(counts_file):
    """The real source: file open and every chunk's read and conversion are bulk pulls, and the
    source's per-event time is then only the per-event slicing."""
    data = {"process": "BULK", "options": {},
            "source": {"type": "RootJetSource", "files": [str(counts_file)], "chunk_size": 7},
            "modules": {"batcher": {"type": "JetBatcher"}}, "paths": {"p": ["batcher"]},
            "services": {"Timing": {"calibrate": False}}}
    process = Process(validate(data, "<bulk test>"))
    summary = EventProcessor(process).run()
    (timing,) = [s for s in process.services if isinstance(s, Timing)]
    res = timing.result(summary)
    chunks = summary.source["chunks"]
    bulk = res["source_bulk"]
    assert chunks >= 3
    assert bulk["pulls"] >= chunks  # (the file open joins the first chunk's pull)
    # CPU, not real time: a busy machine stretches the events' real time (preemption), not their CPU
    assert bulk["cpu_ms"] > res["source"]["cpu_ms"]
    # the one-basket file was read whole by the check and kept: that read is bulk I/O too, done at
    # begin_job (outside the loop's wall time, so not in loop.source_bulk_real_ms)
    assert bulk["at_begin_job_real_ms"] > 0
    assert bulk["real_ms"] == pytest.approx(bulk["at_begin_job_real_ms"] + res["loop"]["source_bulk_real_ms"])
    assert bulk["at_begin_job_real_ms"] * 1e-3 <= summary.begin_job_s


@pytest.mark.parametrize("max_events", [-1, 9])
def test_a_short_job_is_charged_the_share_of_the_kept_read_it_used(counts_file, max_events):
    """The file check reads a one-basket file whole at begin_job and keeps it for the loop. A job that
    stops after 9 of its entries is charged 9/n of that read, not all of it (``-n 200`` of the shipped
    2500-entry file: 1.8 ms of bulk I/O per event against 0.3 ms of processing); a job that reads the
    file through is charged all of it."""
    import uproot

    data = {"process": "BULK", "options": {"maxEvents": max_events},
            "source": {"type": "RootJetSource", "files": [str(counts_file)], "chunk_size": 7},
            "modules": {"batcher": {"type": "JetBatcher"}}, "paths": {"p": ["batcher"]},
            "services": {"Timing": {"calibrate": False}}}
    process = Process(validate(data, "<bulk share test>"))
    summary = EventProcessor(process).run()
    (timing,) = [s for s in process.services if isinstance(s, Timing)]
    bulk = timing.result(summary)["source_bulk"]
    with uproot.open(counts_file) as f:
        entries = f["Events"].num_entries
    used = entries if max_events < 0 else max_events
    assert bulk["at_begin_job_entries"] == {"kept": entries, "used": used}
    assert bulk["at_begin_job_paid_real_ms"] > 0
    assert bulk["at_begin_job_real_ms"] == pytest.approx(bulk["at_begin_job_paid_real_ms"] * used / entries)
    text = budget_report(timing.result(summary))
    share = f"the share of its {bulk['at_begin_job_paid_real_ms']:.1f} ms for the {used:,} of {entries:,} entries"
    assert (share in text) == (used < entries), text
