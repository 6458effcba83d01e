"""memray per-module attribution: a module that allocates a known amount is charged that amount."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from hltrun.framework.module import Filter, Producer
from hltrun.framework.registry import module_class, register_module
from hltrun.framework.services.memray_attribution import OUTSIDE, attribute, module_frames, thread_owners
from tests.helpers import run_config

memray = pytest.importorskip("memray")

MB = 1024 * 1024


@dataclass
class AllocParameters:
    keep_mb: int = 0  # allocated in begin_job and kept to the end
    temp_mb: int = 0  # allocated and released on every event


@register_module("TestAllocator")
class Allocator(Producer):
    Parameters = AllocParameters

    def begin_job(self, job) -> None:
        self.kept = np.ones(self.params.keep_mb * MB, np.uint8)  # written: a real allocation

    def produce(self, event) -> None:
        temp = np.ones(self.params.temp_mb * MB, np.uint8)
        event.put(int(temp[0]))
        del temp


@register_module("TestAllocatingFilter")
class AllocatingFilter(Filter):
    """Calls the producer on demand (event.get) and allocates 1 MB of its own per event."""

    Parameters = AllocParameters

    def filter(self, event) -> bool:
        own = np.ones(self.params.temp_mb * MB, np.uint8)
        return bool(event.get("alloc") + own[0])


CFG = """
source: {type: TestCountingSource, n: 10}
modules:
  alloc: {type: TestAllocator, keep_mb: 24, temp_mb: 4}
  gate: {type: TestAllocatingFilter, temp_mb: 1}
  sq: {type: TestSquare}
paths:
  p: [gate, sq]
"""


def test_known_allocations_are_charged_to_their_module(write_config, tmp_path):
    capture = tmp_path / "capture.bin"
    with memray.Tracker(capture):  # started in a frame that encloses the whole job (see the module doc)
        summary, process = run_config(write_config(CFG))
    assert summary.events_processed == 10
    labels = [(label, module_class(cfg.type)) for label, cfg in process.config.modules.items()]
    stats = attribute(capture, module_frames(labels))
    alloc, gate = stats["alloc"], stats["gate"]
    # 24 MB kept + 10 x 4 MB temporaries; each within 2 % (numpy adds small headers)
    assert alloc.allocated == pytest.approx((24 + 40) * MB, rel=0.02)
    assert alloc.freed == pytest.approx(40 * MB, rel=0.02)  # the kept block is alive at the end
    assert alloc.peak == pytest.approx(28 * MB, rel=0.02)  # kept + one temporary at a time
    assert alloc.live == pytest.approx(24 * MB, rel=0.02)
    # the filter's own 1 MB per event, not the producer's 4 MB it triggered through event.get
    assert gate.allocated == pytest.approx(10 * MB, rel=0.02) and gate.peak == pytest.approx(MB, rel=0.05)
    assert stats.get("sq", None) is None or stats["sq"].allocated < 0.1 * MB
    assert OUTSIDE in stats  # the framework allocates too, and is not charged to modules


def test_two_labels_of_one_class_are_reported_together():
    frames = module_frames([("a", Allocator), ("b", Allocator), ("g", AllocatingFilter)])
    owners = {owner for ranges in frames.values() for _, _, owner, _ in ranges}
    assert owners == {"a+b", "g"}


@register_module("TestBaseAllocator")
class BaseAllocator(Producer):
    """A user base class whose ``produce`` allocates ``temp_mb`` (released) per event."""

    Parameters = AllocParameters

    def produce(self, event) -> None:
        temp = np.ones(self.params.temp_mb * MB, np.uint8)
        event.put(int(temp[0]))
        del temp


@register_module("TestDerivedAllocator")
class DerivedAllocator(BaseAllocator):
    """Its own ``produce`` calls the base's: the allocation is in the base's frame, the work its own."""

    def produce(self, event) -> None:
        super().produce(event)


@register_module("TestInheritingAllocator")
class InheritingAllocator(BaseAllocator):
    """Runs the base's ``produce`` as is: the same code as the base's label, nothing tells them apart."""


def test_a_base_class_method_is_charged_to_the_module_that_ran_it(write_config, tmp_path):
    """Two modules on one base class: the allocations in the base's ``produce`` are the module's whose
    call ran it (they all went to the first label listed: ``base`` showed 10 + 80 + 40 MB, ``derived``
    nothing), and the label that runs it as is shares it with the base's, as two labels of one class."""
    capture = tmp_path / "capture.bin"
    with memray.Tracker(capture):
        summary, process = run_config(write_config(
            "source: {type: TestCountingSource, n: 10}\n"
            "modules:\n  base: {type: TestBaseAllocator, temp_mb: 1}\n"
            "  derived: {type: TestDerivedAllocator, temp_mb: 8}\n"
            "  inherits: {type: TestInheritingAllocator, temp_mb: 4}\n"
            "paths:\n  p: [base, derived, inherits]\n"))
    assert summary.events_processed == 10
    labels = [(label, module_class(cfg.type)) for label, cfg in process.config.modules.items()]
    stats = attribute(capture, module_frames(labels))
    assert stats["derived"].allocated == pytest.approx(80 * MB, rel=0.02)
    assert stats["derived"].peak == pytest.approx(8 * MB, rel=0.02)
    assert stats["base+inherits"].allocated == pytest.approx(50 * MB, rel=0.02)
    assert stats["base+inherits"].peak == pytest.approx(4 * MB, rel=0.02)
    assert "base" not in stats and "inherits" not in stats


def test_memory_service_reports_the_attribution(write_config, tmp_path):
    """Through the Memory service: the tracker encloses the job, so begin_job's allocation has its owner."""
    cfg = write_config(CFG + "services:\n  Memory: {memray: capture.bin}\n")
    summary, process = run_config(cfg, f"options.reportDir={tmp_path}")
    (memory,) = process.services
    r = memory.results()
    alloc = r["allocations"]["alloc"]
    assert alloc["allocated"] == pytest.approx((24 + 40) * MB, rel=0.02)
    assert alloc["live"] == pytest.approx(24 * MB, rel=0.02) and alloc["peak"] == pytest.approx(28 * MB, rel=0.02)
    assert r["allocations"]["gate"]["allocated"] == pytest.approx(10 * MB, rel=0.02)
    text = memory.text_report(summary)
    assert "Module Allocations (memray)" in text and " alloc" in text


def _resources_json(write_config, tmp_path, memory: str) -> dict:
    """Run CFG with Timing and ``Memory: <memory>``, write the report files, return resources.json."""
    import json

    from hltrun.framework.report import write_report_files

    cfg = write_config(CFG + f"services:\n  Timing: {{}}\n  Memory: {memory}\n")
    summary, process = run_config(cfg, f"options.reportDir={tmp_path}")
    write_report_files(tmp_path, summary, process.services)
    return json.loads((tmp_path / "resources.json").read_text())


def test_resources_json_and_html_carry_the_allocations(write_config, tmp_path):
    """FastTimerService's mem_alloc / mem_free (kB) per module come from the capture, and the page shows it."""
    doc = _resources_json(write_config, tmp_path, "{memray: capture.bin}")
    mem = {m["label"]: (m["mem_alloc"], m["mem_free"]) for m in doc["modules"]}
    assert mem["alloc"][0] == pytest.approx((24 + 40) * 1024, rel=0.02)  # kB, as FastTimerService
    assert mem["alloc"][1] == pytest.approx(40 * 1024, rel=0.02)
    assert mem["gate"][0] == pytest.approx(10 * 1024, rel=0.02)
    assert mem["other"][0] > 0  # the framework's own allocations
    kb_sum = sum(m["mem_alloc"] for m in doc["modules"])  # each rounded down: the job's kB() is of its bytes
    assert kb_sum <= doc["total"]["mem_alloc"] < kb_sum + len(doc["modules"])
    page = (tmp_path / "report.html").read_text()
    assert "Allocations per module from the memray capture" in page and "<td class=\"l\">alloc</td>" in page


def test_without_a_capture_resources_json_has_zero_memory(write_config, tmp_path):
    doc = _resources_json(write_config, tmp_path, "{}")
    assert all(m["mem_alloc"] == m["mem_free"] == 0 for m in doc["modules"])


@register_module("TestThreadedAllocator")
class ThreadedAllocator(Producer):
    """Allocates on a helper thread it names (as the ROOT source's decompression pool does)."""

    Parameters = AllocParameters
    helper_threads = ("test-threaded-allocator",)

    def produce(self, event) -> None:
        import threading

        def work() -> None:
            temp = np.ones(self.params.temp_mb * MB, np.uint8)
            del temp

        helper = threading.Thread(target=work, name=f"test-threaded-allocator-{event.index}")
        helper.start()
        helper.join()
        event.put(1)


def test_allocations_on_a_modules_helper_threads_are_charged_to_it(write_config, tmp_path):
    """A thread's stack holds no module method: its name (``helper_threads``) says whose work it does."""
    capture = tmp_path / "capture.bin"
    with memray.Tracker(capture):
        summary, process = run_config(write_config(
            "source: {type: TestCountingSource, n: 10}\n"
            "modules:\n  thr: {type: TestThreadedAllocator, temp_mb: 4}\npaths:\n  p: [thr]\n"))
    labels = [(label, module_class(cfg.type)) for label, cfg in process.config.modules.items()]
    stats = attribute(capture, module_frames(labels), thread_owners(labels))
    assert stats["thr"].allocated == pytest.approx(40 * MB, rel=0.02)
    assert stats[OUTSIDE].allocated < 20 * MB  # the framework's own few MB, not the thread's 40


def test_root_source_decompression_threads_are_charged_to_the_source(tmp_path):
    """The shipped source decompresses baskets on its own threads (2 here): what they allocate is the
    source's, not the framework's (it showed as ``(outside modules)``, ~700 MB against the source's 32 MB)."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "source:\n  type: RootJetSource\n  files: [data/qcd_dijet.root]\n  decompression_threads: 2\n"
        "modules: {}\npaths: {}\n"
        f"services:\n  Memory: {{memray: {tmp_path / 'capture.bin'}}}\n")
    summary, process = run_config(cfg, "options.maxEvents=20", f"options.reportDir={tmp_path}")
    (memory,) = process.services
    allocations = memory.results()["allocations"]
    assert allocations["source"]["allocated"] > 10 * allocations[OUTSIDE]["allocated"]
