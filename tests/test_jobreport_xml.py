"""FrameworkJobReport XML: CMSSW's elements, EventsRead per input, TotalEvents per output, error codes."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from framework.errors import AcceleratorUnavailable, ConfigError, FileOpenError, ModuleError, SourceError
from framework.report.jobreport_xml import InputRecord, JobReportData, OutputRecord, cmssw_error, render, write
from framework.summary import JobSummary


def _data(**kw) -> JobReportData:
    s = JobSummary("HLTAD", 2, events_read=700, events_processed=700, events_passed=15, events_failed=685,
                   wall_s=3.5, loop_s=2.0, begin_job_s=0.4)
    return JobReportData(s, inputs=[InputRecord("data/a.root", 500), InputRecord("data/b.root", 200)],
                         outputs=[OutputRecord("out/o.root", "out", "RootOutputModule", 15)],
                         cpu_s=5.25, peak_rss_mb=150.5, peak_vsize_mb=900.0, **kw)


def test_successful_job_report_has_cmssw_layout(tmp_path):
    path = write(tmp_path / "fjr" / "report.xml", _data())
    root = ET.parse(path).getroot()
    assert root.tag == "FrameworkJobReport" and root.find("FrameworkError") is None
    ins = root.findall("InputFile")
    assert [i.findtext("PFN") for i in ins] == ["data/a.root", "data/b.root"]
    assert [int(i.findtext("EventsRead")) for i in ins] == [500, 200]
    assert all(i.findtext("InputSourceClass") == "RootJetSource" and i.findtext("ModuleLabel") == "source"
               for i in ins)
    (out,) = root.findall("File")
    assert (out.findtext("PFN"), out.findtext("ModuleLabel"), out.findtext("OutputModuleClass"),
            int(out.findtext("TotalEvents"))) == ("out/o.root", "out", "RootOutputModule", 15)
    assert [i.findtext("PFN") for i in out.find("Inputs")] == ["data/a.root", "data/b.root"]
    metrics = {(s.get("Metric"), m.get("Name")): m.get("Value")
               for s in root.find("PerformanceReport") for m in s}
    assert float(metrics[("Timing", "TotalJobTime")]) == 3.5
    assert float(metrics[("Timing", "TotalJobCPU")]) == 5.25
    assert float(metrics[("Timing", "EventThroughput")]) == pytest.approx(350.0)
    assert float(metrics[("Timing", "AvgEventTime")]) == pytest.approx(2.0 / 700)
    assert float(metrics[("ApplicationMemory", "PeakValueRss")]) == 150.5
    assert int(metrics[("ProcessingSummary", "NumberEvents")]) == 700
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("error,unix,code,kind", [
    (ConfigError("options.streams: bad"), 2, 8009, "Configuration"),
    (FileOpenError("source: input file not found: x.root"), 3, 8020, "FileOpenError"),
    (SourceError("source: failed to read"), 3, 8021, "FileReadError"),
    (AcceleratorUnavailable("modules.vae: tensorrt requested but no GPU"), 4, 8035, "UnavailableAccelerator"),
    (ModuleError("module 'vae' failed"), 4, 8001, "OtherCMS"),
    (KeyboardInterrupt(), 143, 9000, "CaughtSignal"),  # SIGTERM: framework.interrupt.Interrupted
])
def test_failed_job_carries_cmssw_and_unix_codes(error, unix, code, kind):
    data = _data(exit_code=unix, error=error)
    data.summary.failure = str(error)
    err = ET.fromstring(render(data)).find("FrameworkError")
    assert (int(err.get("ExitStatus")), err.get("Type"), int(err.get("UnixExitStatus"))) == (code, kind, unix)
    assert err.text == (str(error) or None)
    assert cmssw_error(unix, error) == (code, kind)
