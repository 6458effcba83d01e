"""Memory service: model-loading memory at begin_job, per-call growth, per-event RSS, memray capture."""

from __future__ import annotations

import gc
import json
import logging
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from hltrun.framework.event import EventID
from hltrun.framework.module import Producer, Source
from hltrun.framework.registry import register_module
from hltrun.framework.report import write_report_files
from tests.helpers import run_config

SCHEMA = Path(__file__).parents[1] / "framework" / "report" / "hltrun-report.schema.json"


@dataclass
class HogParameters:
    begin_mb: int = 0
    per_event_mb: int = 0


@register_module("TestMemoryHog")
class MemoryHog(Producer):
    """Keeps ``begin_mb`` from begin_job and ``per_event_mb`` more on every event.

    Fresh anonymous mappings, every page written: malloc could hand back pages that earlier tests
    freed but the process kept resident, which would not raise RSS. The pages are filled in place
    (numpy over the mapping), not copied from a temporary ``bytes``: an 8 MB temporary comes from
    malloc, whose heap may grow once and keep it, which made a call's RSS step 16 MB now and then.
    """

    Parameters = HogParameters

    @staticmethod
    def _resident(mb: int) -> mmap.mmap:
        block = mmap.mmap(-1, mb * 1024 * 1024)
        np.frombuffer(block, dtype=np.uint8).fill(1)  # every page written, nothing else allocated
        return block

    def begin_job(self, job) -> None:
        self.kept = [self._resident(self.params.begin_mb)]

    def produce(self, event) -> None:
        self.kept.append(self._resident(self.params.per_event_mb))
        event.put(len(self.kept))


CFG = """
source: {type: TestCountingSource, n: 6}
modules:
  hog: {type: TestMemoryHog, begin_mb: 40, per_event_mb: 8}
  sq: {type: TestSquare}
paths:
  p: [hog, sq]
services:
  Memory: {memray: memray.bin}
"""


def test_memory_attributes_growth_to_the_module(write_config, tmp_path):
    # RSS is process-wide: garbage of earlier tests collected inside a hog call would lower its delta
    gc.collect()
    gc.disable()
    try:
        summary, process = run_config(write_config(CFG), f"options.reportDir={tmp_path}")
    finally:
        gc.enable()
    (memory,) = process.services
    r = memory.results()
    hog = next(m for m in r["modules"] if m["label"] == "hog")
    sq = next(m for m in r["modules"] if m["label"] == "sq")
    assert 38 <= hog["begin_job_rss_mb"] <= 60
    assert hog["calls"] == 6 and 7.5 * 1024 <= hog["mean_rss_growth_per_call_kb"] <= 10 * 1024
    assert sq["mean_rss_growth_per_call_kb"] < 1024
    rss = memory.rss_per_event_mb()
    assert len(rss) == 6 and rss[-1] - rss[0] >= 5 * 7.5
    assert r["peak_rss_mb"] >= r["rss_after_begin_job_mb"] + 40
    assert "MemoryReport" in memory.text_report(summary) and " hog" in memory.text_report(summary)


def test_memory_json_validates_and_memray_capture(write_config, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    summary, process = run_config(write_config(CFG), f"options.reportDir={tmp_path}")
    write_report_files(tmp_path, summary, process.services)
    doc = json.loads((tmp_path / "hltrun.json").read_text())
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()), cls=jsonschema.Draft202012Validator)
    assert len(doc["services"]["Memory"]["rss_per_event_mb"]) == 6
    html = (tmp_path / "report.html").read_text()
    assert '<img alt="RSS along the job"' in html and "<h2>Memory</h2>" in html
    pytest.importorskip("memray")
    assert (tmp_path / "memray.bin").stat().st_size > 0


def test_memray_native_without_a_capture_is_said(write_config, tmp_path, caplog):
    """``memray_native: true`` adds native stacks to the memray capture; without ``memray`` (no capture
    file) the job ran as without it and said nothing, so it passed for a native capture made."""
    cfg = CFG.replace("Memory: {memray: memray.bin}", "Memory: {memray_native: true}")
    logger = logging.getLogger("hltrun")  # the CLI's logger may not propagate to caplog's
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("WARNING", logger="hltrun"):
            summary, _ = run_config(write_config(cfg), f"options.reportDir={tmp_path}")
    finally:
        logger.removeHandler(caplog.handler)
    assert summary.failure is None and not list(tmp_path.glob("*.bin"))
    said = {r.getMessage() for r in caplog.records if "memray_native" in r.getMessage()}
    assert said == {"services.Memory.memray_native: true without memray (the capture file it adds native stacks "
                    "to): no capture is made; set services.Memory.memray=<file>"}


def test_the_per_event_reader_agrees_with_psutil():
    # kills: the fast statm reader swapping vsize and RSS or using the wrong page size (psutil is the reference)
    import psutil

    from hltrun.framework.services.memory import _statm_reader

    vsize, rss = _statm_reader()()
    info = psutil.Process().memory_info()
    assert abs(vsize - info.vms) < 64 << 20 and abs(rss - info.rss) < 64 << 20
    assert vsize > rss


@register_module("TestMemoryFreer")
class MemoryFreer(Producer):
    """Maps and fills 16 MB at begin_job and unmaps it in its first call: RSS falls while it runs."""

    def begin_job(self, job) -> None:
        self.block = MemoryHog._resident(16)

    def produce(self, event) -> None:
        if self.block is not None:
            self.block.close()
            self.block = None
        event.put(1)


def test_a_module_during_which_rss_fell_is_explained(write_config):
    """The menu's Module Summary showed 'hltL1sJetOrHTT ... -1.1 kB/call ... -5.72 MB' with no word on what a
    negative RSS growth means: the header says RSS growth, and a negative figure gets one line saying that RSS
    fell while the module ran (memory freed, any owner's) and what attributes allocations (memray)."""
    summary, process = run_config(write_config(
        "source: {type: TestCountingSource, n: 4}\nmodules:\n  freer: {type: TestMemoryFreer}\n"
        "paths:\n  p: [freer]\nservices:\n  Memory: {}\n"))
    (memory,) = process.services
    freer = next(m for m in memory.results()["modules"] if m["label"] == "freer")
    assert freer["total_rss_growth_mb"] < -8
    text = memory.text_report(summary)
    assert "MemoryReport ---------- Module Summary ---[RSS growth]----" in text
    note = next(line for line in text.splitlines() if "negative" in line)
    assert note.startswith("MemoryReport  (") and "freed" in note and "memray" in note


def _statm_descriptors() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").endswith("/statm")
        except OSError:
            pass
    return count


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="Linux's /proc")
def test_jobs_in_one_process_leave_no_descriptor_open(tmp_path):
    """Each job's Memory service (and the one its reports are rendered with) opened /proc/self/statm and never
    closed it: two descriptors a job, so a process running jobs one after another (hltbench, a notebook, a
    test session) ran out of them. Now they are closed with the service."""
    import gc

    from hltrun.framework.cli import main

    cfg = tmp_path / "job.yaml"
    cfg.write_text("process: FDS\nsource: {type: TestCountingSource, n: 20}\n"
                   "modules: {even: {type: TestModuloFilter, divisor: 2}}\npaths: {p: [even]}\nservices: {Memory: {}}\n")
    gc.collect()
    before = _statm_descriptors()
    for _ in range(3):
        assert main([str(cfg), "-q", "--report-dir", str(tmp_path / "rep")]) == 0
    gc.collect()
    assert _statm_descriptors() == before


@dataclass
class TransientParameters:
    mb: int = 64
    on_event: int = 3  # event number (EventID.event) whose call maps, fills and unmaps ``mb`` MB


@register_module("TestMemoryTransient")
class MemoryTransient(Producer):
    """A large intermediate: ``mb`` MB of fresh written pages, returned to the system before the call
    returns (a network's big MatMul output), so no RSS reading between module calls ever sees it."""

    Parameters = TransientParameters

    def produce(self, event) -> None:
        if event.id.event == self.params.on_event:
            block = MemoryHog._resident(self.params.mb)
            block.close()
        event.put(1)


def test_a_transient_peak_inside_a_module_call_is_attributed_to_it(write_config, tmp_path):
    """The job's high-water mark is set inside one call of one module and freed before it returns: the
    MemoryReport names that module and event, and the size above the RSS before the call (it showed
    only the kernel high-water mark, with no module: every per-module and per-event reading was flat)."""
    import resource

    from tests.plugins import statm

    # the kernel's mark is the process's: earlier tests may have set it high; go past it by 64 MB
    mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - statm()[1]) // (1 << 20) + 64
    if mb > 1024:
        pytest.skip(f"this process's high-water mark is {mb - 64} MB above its RSS")
    summary, process = run_config(write_config(f"""
source: {{type: TestCountingSource, n: 6}}
modules:
  before: {{type: TestSquare}}
  transient: {{type: TestMemoryTransient, mb: {mb}, on_event: 3}}
  after: {{type: TestSquare, src: transient}}
paths:
  p: [before, transient, after]
services:
  Memory: {{}}
"""))
    (memory,) = process.services
    r = memory.results()
    transient = next(m for m in r["modules"] if m["label"] == "transient")
    assert transient["max_rss_growth_per_call_kb"] < mb * 1024 / 4  # its RSS before and after: nothing
    by = r["kernel_high_water_mark_set_by"]
    assert by is not None and by["label"] == "transient" and by["event"] == [1, 1, 3]
    assert by["above_rss_before_call_mb"] >= 0.9 * mb
    text = memory.text_report(summary)
    assert f"reached in module 'transient' (run 1, lumi 1, event 3), +" in text


@dataclass
class TransientSourceParameters:
    n: int = 6
    mb: int = 64
    on_event: int = 3  # the pull that reads this event maps, fills and unmaps ``mb`` MB


@register_module("TestTransientSource")
class TransientSource(Source):
    """A source whose read of one event makes a large intermediate and frees it inside the pull (a chunk's
    decompression and conversion): no module call runs while the mark is raised."""

    Parameters = TransientSourceParameters

    def events(self, skip: int, limit: int | None):
        for i in range(skip, self.params.n if limit is None else min(self.params.n, skip + limit)):
            if i + 1 == self.params.on_event:
                MemoryHog._resident(self.params.mb).close()
            yield EventID(1, 1, i + 1), {"": i + 1}


def test_a_transient_peak_outside_module_calls_is_no_modules(write_config):
    """The source's pull sets the high-water mark between two module calls: the MemoryReport says it was
    reached outside module calls, before that event's modules. The next module call's end took it for its
    own: on the shipped path 'batcher' was named with +10 MB for a call on one event's two jets."""
    import resource

    from tests.plugins import statm

    mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - statm()[1]) // (1 << 20) + 64
    if mb > 1024:
        pytest.skip(f"this process's high-water mark is {mb - 64} MB above its RSS")
    summary, process = run_config(write_config(f"""
source: {{type: TestTransientSource, mb: {mb}, on_event: 3}}
modules:
  first: {{type: TestSquare}}
  second: {{type: TestSquare, src: first}}
paths:
  p: [first, second]
services:
  Memory: {{}}
"""))
    (memory,) = process.services
    by = memory.results()["kernel_high_water_mark_set_by"]
    assert by is not None and (by["label"], by["event"]) == ("(outside modules)", [1, 1, 3]), by
    assert by["above_rss_before_call_mb"] >= 0.9 * mb
    assert "reached outside module calls, before a module call of run 1, lumi 1, event 3 (the source's read" in \
        memory.text_report(summary)


def test_the_high_water_mark_is_read_once_per_module_call_and_once_per_event(write_config, monkeypatch):
    """The mark costs a getrusage (~2 µs): read after each module call and before each event's first call
    (where the source's read may have raised it), not before every call too (that doubled its cost on a
    path of many modules, for the framework's few bytes between two calls of one event). Counted as the
    difference between a job of 60 and one of 30 events (begin_job's reads are the same in both)."""
    from hltrun.framework.services import memory as memory_module

    reads = []
    real = memory_module._kernel_hwm
    monkeypatch.setattr(memory_module, "_kernel_hwm", lambda: reads.append(1) or real())
    modules = 4
    counts = {}
    for events in (30, 60):
        reads.clear()
        summary, _ = run_config(write_config(f"""
source: {{type: TestCountingSource, n: {events}}}
modules:
  m0: {{type: TestSquare}}
  m1: {{type: TestSquare, src: m0}}
  m2: {{type: TestSquare, src: m1}}
  m3: {{type: TestSquare, src: m2}}
paths:
  p: [m0, m1, m2, m3]
services:
  Memory: {{}}
""", f"job{events}.yaml"))
        assert summary.events_processed == events
        counts[events] = len(reads)
    assert counts[60] - counts[30] == 30 * (modules + 1)
