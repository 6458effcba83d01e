"""CPU a module spends on threads of its own (a BLAS or inference thread pool) is in no module's CPU
time, which is its stream's thread's clock: the loop's ``unattributed_cpu_ms`` (the process's CPU
over the loop that no stream's clock counted) shows it, and the farm's CPU projection includes it.

Known truth from outside the service: a module that hands a known CPU burn to a thread it starts and
joins (as numpy's matmul hands work to OpenBLAS's threads). CPU time is not inflated by a busy machine,
so the lower bounds are exact up to the clock's granularity.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import hltrun.framework.services  # noqa: F401 - registers Timing
from hltrun.framework.config import validate
from hltrun.framework.eventloop import EventProcessor
from hltrun.framework.module import Producer
from hltrun.framework.process import Process
from hltrun.framework.registry import register_module
from hltrun.framework.report.timereport import farm_report, loop_report
from hltrun.framework.services.timing import Timing
from tests.plugins import burn_cpu

POOL_BURN_MS = 10.0  # per event, on the module's helper thread
EVENTS = 8


@register_module("_TOTPooled")
class _Pooled(Producer):
    """Its work runs on a thread it starts and joins: its own thread only waits."""

    def produce(self, event: Any) -> None:
        worker = threading.Thread(target=burn_cpu, args=(POOL_BURN_MS,), name="pool")
        worker.start()
        worker.join()
        event.put(1)


@register_module("_TOTOwnThread")
class _OwnThread(Producer):
    def produce(self, event: Any) -> None:
        burn_cpu(POOL_BURN_MS)
        event.put(1)


def _run(streams: int, module: str = "_TOTPooled") -> tuple[dict, Any]:
    data = {"process": "POOL", "options": {"maxEvents": EVENTS, "numberOfThreads": streams},
            "source": {"type": "TestCountingSource", "n": EVENTS}, "modules": {"pooled": {"type": module}},
            "paths": {"p": ["pooled"]}, "services": {"Timing": {"calibrate": False}}}
    process = Process(validate(data, "<test>"))
    summary = EventProcessor(process).run()
    (service,) = [s for s in process.services if isinstance(s, Timing)]
    return service.result(summary), summary


@pytest.mark.parametrize("streams", [1, 2])
def test_cpu_on_a_modules_own_threads_is_in_the_farm_cpu(streams: int) -> None:
    res, summary = _run(streams)
    assert summary.events_processed == EVENTS
    (module,) = res["modules"]
    burnt_ms = EVENTS * POOL_BURN_MS * 0.95  # thread_time granularity
    # the farm pays it: its CPU per event holds the pool's burn (it held the module's thread's ~0.1 ms)
    assert res["farm"]["cpu_per_event_ms"] >= POOL_BURN_MS * 0.95
    assert res["loop"]["unattributed_cpu_ms"] >= burnt_ms
    assert res["loop"]["unattributed_cpu_per_event_ms"] == pytest.approx(res["loop"]["unattributed_cpu_ms"] / EVENTS)
    # the module's CPU time is its stream's thread's, which only waited: the pool's CPU is not in it
    assert module["cpu_ms"] < burnt_ms / 2
    assert "LoopReport     unattributed CPU/event = " in loop_report(res)
    assert "ms/event of CPU on threads no stream runs" in farm_report(res)


def test_cpu_on_the_streams_thread_is_the_modules_not_the_other_threads() -> None:
    """The same burn on the stream's own thread: in the module's CPU time, not counted twice."""
    res, _ = _run(1, "_TOTOwnThread")
    (module,) = res["modules"]
    assert module["cpu_ms"] >= EVENTS * POOL_BURN_MS * 0.95
    assert 0 <= res["loop"]["unattributed_cpu_ms"] < EVENTS * POOL_BURN_MS / 2
    assert "threads no stream runs" not in farm_report(res)
