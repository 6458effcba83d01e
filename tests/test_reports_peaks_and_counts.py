"""Every peak and every count the reports write, against a source independent of the code under test.

One CLI job (1 stream, ``-j`` and ``--report-dir``) over a ROOT file whose event numbers are known:
``skipEvents`` passes over some, a filter keeps the multiples of 3, a module raises on two events
that ``TryToContinue`` skips, the output selects the filter's path. Counts: from the event numbers
read back with uproot, against the TrigReport, hltrun.json, the job report XML and the ROOT output.
Peaks: a module maps and fills 96 MB for ten events mid-job and reads /proc/self/statm itself with
them held; every peak the reports write must reach that reading, well above the RSS at the end
(a peak that kept the last value instead of the maximum under-reports by the 96 MB).
"""

from __future__ import annotations

import contextlib
import gc
import io
import json

import pytest
import uproot

from tests.conftest import make_events, write_counts
from tests.plugins import WITNESS
from tests.reportparse import parse_jobreport, parse_memoryreport, parse_trigreport

MB = 1024.0 * 1024.0
BUMP_MB = 96
SKIP, BAD, HOLD = 5, (1010, 1016), (1020, 1030)  # BAD: no multiple of 3 (the filter's count stays simple)
CONFIG = """
process: WITNESS
options: {{skipEvents: {skip}, TryToContinue: [StdException]}}
source: {{type: RootJetSource, files: [{file}], chunk_size: 20}}
modules:
  three: {{type: TestEventNumberFilter, divisor: 3}}
  bad: {{type: TestFailOn, run: 1, events: [{bad}]}}
  bump: {{type: TestMemoryBump, mb: {mb}, hold_from: {hold[0]}, hold_until: {hold[1]}}}
  out: {{type: RootOutputModule, file: {out}, select_events: [p]}}
paths:
  p: [three]
endpaths:
  e: [bad, bump, out]
services:
  Memory: {{}}
"""


@pytest.fixture()  # per test, not per module: mutmut selects tests by the calls made inside each test
def job(tmp_path) -> dict:
    from hltrun.framework.cli import main

    data = write_counts(tmp_path / "in.root", make_events(60))
    cfg = tmp_path / "job.yaml"
    cfg.write_text(CONFIG.format(skip=SKIP, file=data, bad=", ".join(map(str, BAD)), mb=BUMP_MB, hold=HOLD,
                                 out=tmp_path / "out.root"))
    buf = io.StringIO()
    gc.collect()  # RSS is process-wide: no earlier test's garbage freed mid-job
    gc.disable()
    try:
        with contextlib.redirect_stdout(buf):
            code = main([str(cfg), "-q", "--report-dir", str(tmp_path / "reports"), "-j", str(tmp_path / "fjr.xml")])
    finally:
        gc.enable()
    assert code == 0
    text = buf.getvalue()
    return {"text": text, "input": str(data), "output": str(tmp_path / "out.root"),
            "events": uproot.open(data)["Events"]["event"].array(library="np").tolist(),
            "json": json.loads((tmp_path / "reports" / "hltrun.json").read_text()),
            "fjr": parse_jobreport((tmp_path / "fjr.xml").read_text()),
            "written": uproot.open(tmp_path / "out.root")["Events"].num_entries}


def test_every_count_is_the_one_known_from_the_event_numbers(job):
    read = job["events"][SKIP:]
    errors = [n for n in read if n in BAD]
    passed = [n for n in read if n % 3 == 0 and n not in BAD]
    failed = len(read) - len(passed) - len(errors)
    assert len(read) == 55 and len(errors) == 2 and 0 < len(passed) < len(read) - len(errors)

    trig = parse_trigreport(job["text"])
    # as CMSSW's TrigReport: failed = total - passed (the events skipped on an error among them)
    assert trig["events"] == {"total": len(read), "passed": len(passed), "failed": len(read) - len(passed)}
    assert (trig["paths"]["p"]["executed"], trig["paths"]["p"]["passed"]) == (len(read), len(passed))
    assert (trig["endpaths"]["e"]["executed"], trig["endpaths"]["e"]["error"]) == (len(read), len(errors))

    doc = job["json"]["job"]
    assert (doc["events_read"], doc["events_processed"], doc["events_passed"], doc["events_failed"],
            doc["events_error"], doc["events_skipped"], doc["events_not_processed"]) == \
        (len(read), len(read), len(passed), failed, len(errors), SKIP, 0)

    m = job["fjr"]["metrics"]
    assert {name: int(m[("ProcessingSummary", name)]) for name in
            ("NumberEvents", "NumberPassed", "NumberFailed", "NumberErrors", "NumberRead", "NumberSkipped",
             "NumberNotProcessed")} == \
        {"NumberEvents": len(read), "NumberPassed": len(passed), "NumberFailed": failed,
         "NumberErrors": len(errors), "NumberRead": len(read), "NumberSkipped": SKIP, "NumberNotProcessed": 0}
    assert job["fjr"]["inputs"] == {job["input"]: len(read)}
    assert job["fjr"]["outputs"] == {job["output"]: len(passed)} and job["written"] == len(passed)


def test_every_peak_reaches_the_memory_held_mid_job(job):
    before, held = WITNESS["bump"]["before"], WITNESS["bump"]["held"]
    assert held[1] - before[1] >= 0.9 * BUMP_MB * MB  # the pages were resident while held
    # the peaks are read after the event, a few calls after the module's own reading: a margin of a
    # quarter of the bump for what else the process did meanwhile, three quarters below the bump
    vsize, rss = held[0] / MB - BUMP_MB / 4, held[1] / MB - BUMP_MB / 4

    mem = job["json"]["services"]["Memory"]
    assert mem["rss_end_mb"] < rss - BUMP_MB / 2  # the bump was given back: the last value is no peak
    assert mem["peak_rss_mb"] >= rss and mem["peak_vsize_mb"] >= vsize
    (worker,) = mem["workers"]
    assert worker["peak_rss_mb"] >= rss and worker["peak_vsize_mb"] >= vsize
    (cmssw,) = mem["cmssw"].values()
    assert cmssw["PeakValueRss"] >= rss and cmssw["PeakValueVsize"] >= vsize

    text = parse_memoryreport(job["text"])
    assert text["summary_rss_end"] < rss - BUMP_MB / 2
    assert text["peak_rss"] >= rss and text["peak_vsize"] >= vsize  # SimpleMemoryCheck's lines
    assert text["summary_peak_rss"] >= rss and text["summary_peak_vsize"] >= vsize

    m = job["fjr"]["metrics"]
    assert m[("ApplicationMemory", "PeakValueRss")] >= rss and m[("ApplicationMemory", "PeakValueVsize")] >= vsize
