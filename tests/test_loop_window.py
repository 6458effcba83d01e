"""The JobReport's event loop is the Timing service's: one throughput window, one events/s.

The JobReport (``job.loop_s``, "event loop X s at N events/s", the FrameworkJobReport's EventThroughput) and the
BudgetReport (``services.Timing.loop``, "throughput: N events/s", the farm's measured-throughput cores) both open
the window at the first pull. Until 2026-12-07 the JobReport closed it after the last lumi's and run's end hooks,
which the Timing service leaves out: the shipped path printed 1973.7 events/s in one and 1983.6 in the other (2
streams, 1500 events). Here an ``end_run`` that sleeps a known time makes the difference far larger than any
scheduling noise: the two windows must not differ by it.
"""

from __future__ import annotations

import time
from typing import Any

import hltrun.framework.services  # noqa: F401 - registers Timing
from hltrun.framework.config import validate
from hltrun.framework.event import EventID
from hltrun.framework.eventloop import EventProcessor
from hltrun.framework.module import Producer, Source
from hltrun.framework.process import Process
from hltrun.framework.registry import register_module
from hltrun.framework.services.timing import Timing

END_RUN_SLEEP_S = 0.5


@register_module("_TLWSource")
class _Events(Source):
    """Events 1..20 of run 1, lumi 1."""

    def events(self, skip: int, limit: int | None):
        stop = 20 if limit is None else min(20, skip + limit)
        for i in range(skip, stop):
            yield EventID(1, 1, i + 1), {"": i}


@register_module("_TLWSlowEndRun")
class _SlowEndRun(Producer):
    """Writes its run's conditions at end_run (a known sleep), nothing per event."""

    def end_run(self, run: int) -> None:
        time.sleep(END_RUN_SLEEP_S)

    def produce(self, event: Any) -> None:
        event.put(1)


def test_jobreport_loop_is_the_timing_services_loop() -> None:
    data = {"process": "LOOPWINDOW", "options": {"numberOfThreads": 1}, "source": {"type": "_TLWSource"},
            "modules": {"m": {"type": "_TLWSlowEndRun"}}, "paths": {"p": ["m"]},
            "services": {"Timing": {"calibrate": False}}}
    process = Process(validate(data, "<test>"))
    summary = EventProcessor(process).run()
    (service,) = [s for s in process.services if isinstance(s, Timing)]
    timing_loop_s = service.result(summary)["loop"]["real_ms"] * 1e-3
    assert summary.events_processed == 20
    # the end_run sleep lies outside both windows: it was the whole difference (>= 0.5 s), now none of it is
    assert abs(summary.loop_s - timing_loop_s) < END_RUN_SLEEP_S / 2, (summary.loop_s, timing_loop_s)
    assert summary.wall_s >= summary.loop_s + END_RUN_SLEEP_S  # still the job's time
