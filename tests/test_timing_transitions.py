"""Run and lumi transitions are not an event's time: against costs known from outside the service.

A module whose ``begin_run`` / ``begin_lumi`` sleep and burn known times (conditions loaded per lumi),
and events that only sleep: an event's CPU time can then hold no transition's CPU (CPU time is not
inflated by a busy machine, so that bound is exact), and the transitions' own line holds at least the
known costs. With two streams and a new lumi on every event, the pulling stream waits for the other
stream's event to end before it may begin the lumi: that wait was the event's framework overhead
(every event about twice its own time), and is now the transitions' ``wait_real_ms``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

import hltrun.framework.services  # noqa: F401 - registers Timing
from hltrun.framework.config import validate
from hltrun.framework.event import EventID
from hltrun.framework.eventloop import EventProcessor
from hltrun.framework.module import Producer, Source
from hltrun.framework.process import Process
from hltrun.framework.registry import register_module
from hltrun.framework.report.timereport import loop_report
from hltrun.framework.services.timing import Timing
from tests.plugins import burn_cpu

RUN_SLEEP_MS, RUN_BURN_MS = 30.0, 25.0  # per begin_run
LUMI_SLEEP_MS, LUMI_BURN_MS = 20.0, 15.0  # per begin_lumi
EVENT_SLEEP_MS = 5.0  # per event: real time, ~no CPU


class _LumiSource(Source):
    """Events 1..N, ``PER_LUMI`` per lumi section, a new run every ``PER_RUN`` lumis."""

    per_lumi = 4
    per_run = 3
    n = 24

    def events(self, skip: int, limit: int | None):
        stop = self.n if limit is None else min(self.n, skip + limit)
        for i in range(skip, stop):
            lumi = i // self.per_lumi
            yield EventID(1 + lumi // self.per_run, 1 + lumi, i + 1), {"": i}


@register_module("_TTrLumiSource")
class _Lumis(_LumiSource):
    pass


@register_module("_TTrLumiPerEventSource")
class _LumiPerEvent(_LumiSource):
    per_lumi = 1
    per_run = 10**6
    n = 16


@register_module("_TTrConditions")
class _Conditions(Producer):
    """Loads 'conditions' at each run and lumi (known sleep and CPU), then sleeps per event."""

    def begin_run(self, run: int) -> None:
        burn_cpu(RUN_BURN_MS)
        time.sleep(RUN_SLEEP_MS * 1e-3)

    def begin_lumi(self, run: int, lumi: int) -> None:
        burn_cpu(LUMI_BURN_MS)
        time.sleep(LUMI_SLEEP_MS * 1e-3)

    def produce(self, event: Any) -> None:
        time.sleep(EVENT_SLEEP_MS * 1e-3)
        event.put(1)


@register_module("_TTrSleep")
class _Sleep(Producer):
    def produce(self, event: Any) -> None:
        time.sleep(EVENT_SLEEP_MS * 1e-3)
        event.put(1)


def _run(source: str, module: str, streams: int) -> tuple[dict, np.ndarray, int, Any]:
    data = {"process": "TRANSITIONS", "options": {"numberOfThreads": streams, "budgetMs": 100.0},
            "source": {"type": source}, "modules": {"m": {"type": module}}, "paths": {"p": ["m"]},
            "services": {"Timing": {"calibrate": False}}}
    process = Process(validate(data, "<test>"))
    summary = EventProcessor(process).run()
    (service,) = [s for s in process.services if isinstance(s, Timing)]
    return service.result(summary), service.merged_rows(), len(process.descriptions), summary


@pytest.mark.parametrize("streams", [1, 2])
def test_begin_run_and_lumi_are_on_their_own_line_not_in_the_first_events(streams: int) -> None:
    res, rows, n, summary = _run("_TTrLumiSource", "_TTrConditions", streams)
    runs, lumis = summary.begin_run_calls, summary.begin_lumi_calls
    assert (summary.events_processed, runs, lumis) == (24, 2, 6)
    # the events only sleep, so no event's CPU holds a lumi's 15 ms burn (the
    # first event of each lumi had it all: 15 ms, 40 ms at a new run), whatever the machine's load
    event_cpu_ms = rows[:, 3] * 1e-6
    assert event_cpu_ms.max() < LUMI_BURN_MS, event_cpu_ms.round(2).tolist()
    assert res["event"]["cpu"]["max"] < LUMI_BURN_MS
    # nor in their real time: an event's overhead held the lumi's 35 ms (every lumi's first event);
    # at most a rare descheduled event of a loaded machine may reach it now
    overhead_ms = (rows[:, 2] - rows[:, 4:4 + n].sum(axis=1)) * 1e-6
    assert np.count_nonzero(overhead_ms >= LUMI_SLEEP_MS + LUMI_BURN_MS) <= 1, overhead_ms.round(2).tolist()
    # they are on their own line: sleeps never undersleep, burn_cpu burns at least its CPU
    trans = res["transitions"]
    assert trans["count"] == lumis  # each lumi began in a pull (a new run with its first lumi)
    assert trans["hooks_real_ms"] >= runs * (RUN_SLEEP_MS + RUN_BURN_MS) + lumis * (LUMI_SLEEP_MS + LUMI_BURN_MS)
    assert trans["cpu_ms"] >= (runs * RUN_BURN_MS + lumis * LUMI_BURN_MS) * 0.95  # thread_time granularity
    # the loop's CPU holds them (CMSSW's event loop CPU), the farm's per-event CPU does not
    events_cpu = rows[:, 3].sum() * 1e-6
    assert res["loop"]["cpu_per_event_ms"] * 24 == pytest.approx(events_cpu + trans["cpu_ms"], rel=1e-6)
    assert res["farm"]["cpu_per_event_ms"] * 24 == pytest.approx(events_cpu + res["loop"]["unattributed_cpu_ms"],
                                                                 rel=1e-6)
    # all inside the loop: events + transitions <= streams x loop, the rest idle
    events_ms = rows[:, 2].sum() * 1e-6
    assert events_ms + trans["wait_real_ms"] + trans["hooks_real_ms"] <= streams * res["loop"]["real_ms"] * (1 + 1e-9)
    assert f"LoopReport     transitions Real/event = {trans['real_per_event_ms'] * 1e-3:.6f}" in \
        loop_report(res).splitlines()


def test_waiting_for_the_other_streams_event_before_a_new_lumi_is_not_the_events_time() -> None:
    """Every event begins a lumi: the pulling stream waits (holding the source) until the other
    stream's event ends, so nearly every event but the first waited ~EVENT_SLEEP_MS before it began."""
    res, rows, n, summary = _run("_TTrLumiPerEventSource", "_TTrSleep", 2)
    assert summary.events_processed == 16
    overhead_ms = (rows[:, 2] - rows[:, 4:4 + n].sum(axis=1)) * 1e-6
    # was ~EVENT_SLEEP_MS on most events (the wait); the median ignores a rare descheduled event
    assert np.median(overhead_ms) < EVENT_SLEEP_MS / 4, overhead_ms.round(2).tolist()
    assert res["transitions"]["count"] == 16 and res["transitions"]["wait_real_ms"] > 0
