"""FrameworkJobReport XML: CMSSW's elements, EventsRead per input, TotalEvents per output, error codes."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from hltrun.framework.errors import AcceleratorUnavailable, ConfigError, FileOpenError, ModuleError, SourceError
from hltrun.framework.report.jobreport_xml import InputRecord, JobReportData, OutputRecord, cmssw_error, render, write
from hltrun.framework.summary import JobSummary


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


def _wrapped(cause: Exception) -> ModuleError:
    """What the schedule raises for a Python exception in a module: a ModuleError from the cause."""
    try:
        try:
            raise cause
        except Exception as exc:
            raise ModuleError(f"module 'sq' (TestSquare) failed: {type(exc).__name__}: {exc}") from exc
    except ModuleError as err:
        return err


@pytest.mark.parametrize("error,unix,code,kind", [
    (ConfigError("options.numberOfThreads: bad"), 2, 8009, "Configuration"),
    (FileOpenError("source: input file not found: x.root"), 3, 8020, "FileOpenError"),
    (SourceError("source: failed to read"), 3, 8021, "FileReadError"),
    (AcceleratorUnavailable("modules.vae: tensorrt requested but no GPU"), 4, 8035, "UnavailableAccelerator"),
    (ModuleError("module 'vae' failed"), 4, 8001, "OtherCMS"),
    (_wrapped(ValueError("boom")), 4, 8002, "StdException"),  # a Python exception from module code
    (KeyboardInterrupt(), 143, 9000, "CaughtSignal"),  # SIGTERM: hltrun.framework.interrupt.Interrupted
])
def test_failed_job_carries_cmssw_and_unix_codes(error, unix, code, kind):
    data = _data(exit_code=unix, error=error)
    data.summary.failure = str(error)
    err = ET.fromstring(render(data)).find("FrameworkError")
    assert (int(err.get("ExitStatus")), err.get("Type"), int(err.get("UnixExitStatus"))) == (code, kind, unix)
    assert err.text == (str(error) or None)
    assert cmssw_error(unix, error) == (code, kind)


def _hltrun(*args, cwd):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, "-m", "hltrun.framework.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(root)})


@pytest.mark.slow
def test_cli_job_report_counts_events_per_input_and_output(tmp_path):
    pytest.importorskip("onnxruntime")
    import uproot
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "o.root"
    res = _hltrun(root / "configs" / "path.yaml", "-q", "-n", "300", "-j", tmp_path / "fjr.xml",
                  "source.files=[data/rsg_ww_1p5TeV.root, data/zprime_tt_2TeV.root]", "options.skipEvents=1400",
                  f"modules.out.file={out}", "modules.vae.backend=onnxruntime", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    doc = ET.parse(tmp_path / "fjr.xml").getroot()
    reads = {Path(i.findtext("PFN")).name: int(i.findtext("EventsRead")) for i in doc.findall("InputFile")}
    assert reads == {"rsg_ww_1p5TeV.root": 100, "zprime_tt_2TeV.root": 200}  # 1500 entries each, 1400 skipped
    (f,) = doc.findall("File")
    assert int(f.findtext("TotalEvents")) == uproot.open(out)["Events"].num_entries > 0
    assert f.findtext("ModuleLabel") == "out" and f.findtext("OutputModuleClass") == "RootOutputModule"
    assert doc.find("FrameworkError") is None


@pytest.mark.parametrize("args,unix,code", [
    (["source.files=[missing.root]"], 3, 8020),
    (["options.numberOfThreads=x"], 2, 8009),
])
def test_cli_job_report_of_a_failed_job(tmp_path, args, unix, code):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    res = _hltrun(root / "configs" / "path.yaml", "-q", "-n", "5", "-j", tmp_path / "fjr.xml", *args, cwd=tmp_path)
    assert res.returncode == unix, res.stderr
    err = ET.parse(tmp_path / "fjr.xml").getroot().find("FrameworkError")
    assert (int(err.get("ExitStatus")), int(err.get("UnixExitStatus"))) == (code, unix)


def test_cli_job_report_destination_checked_first(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "d").mkdir()
    res = _hltrun(root / "configs" / "path.yaml", "-q", "-n", "5", "-j", tmp_path / "d", cwd=tmp_path)
    assert res.returncode == 4 and "--job-report" in res.stderr and "folder" in res.stderr
    assert not (tmp_path / "output").exists()  # nothing ran


def test_an_input_whose_name_is_not_utf8_is_named_in_the_job_report(tmp_path, capfd):
    """``source.files: [in/*.root]`` matching a Latin-1 file name (``caf\\xe9.root``): ``-j`` ended the job in
    a traceback, exit 1 (``UnicodeEncodeError: ... surrogates not allowed``). Every text file hltrun writes
    (framework/atomic.py) writes such a byte as an escape, so the report is UTF-8 and names the file."""
    import os

    from hltrun.framework.cli import main
    from tests.test_destinations import ROOT_JOB, SAMPLE

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / os.fsdecode(b"caf\xe9.root")).write_bytes(SAMPLE.read_bytes())
    cfg = tmp_path / "job.yaml"
    cfg.write_text(ROOT_JOB.format(source=folder / "*.root", out=tmp_path / "o.root"))
    assert main([str(cfg), "-q", "-n", "5", "-j", str(tmp_path / "fjr.xml")]) == 0
    assert "Traceback" not in capfd.readouterr().err
    names = [e.text for e in ET.parse(tmp_path / "fjr.xml").getroot().find("InputFile").iter("PFN")]
    assert names == [str(folder / "caf\\udce9.root")]
