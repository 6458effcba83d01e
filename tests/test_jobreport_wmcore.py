"""The ``-j`` FrameworkJobReport as the CMS workflow tools read it: a small parser that follows the rules of
WMCore's reader (dmwm/WMCore src/python/WMCore/FwkJobReport/XMLParser.py, re-written here, not imported),
run on the reports of real jobs: a good one, a failed one, a stopped one and one that skipped a bad file.

WMCore's rules, as that file applies them:

* the root is ``<FrameworkJobReport>``; its children are dispatched by tag (``File``, ``InputFile``,
  ``PerformanceReport``, ``FrameworkError``, ``SkippedFile``, ...), anything else is a job parameter;
* an ``<InputFile>`` must have ``ModuleLabel`` (taken as ``[0]``), and ``LFN``, ``PFN``, ``Catalog``,
  ``GUID``, ``InputType``, ``InputSourceClass`` and ``EventsRead`` (``int()``): a missing one is a KeyError;
* a ``<File>`` (output) the same with ``OutputModuleClass``, ``TotalEvents`` (``int()``) and ``BranchHash``,
  and ``<Inputs><Input>`` each with ``LFN`` and ``PFN``;
* ``<Runs><Run ID>`` (a run without ID is skipped), ``<LumiSection ID [NEvents]>``: ID ``int()``, NEvents
  ``int()`` or None;
* every child of a ``<PerformanceSummary Metric>`` has ``Name`` and ``Value`` attributes; ``Timing`` goes to the
  CPU section, ``ApplicationMemory`` keeps PeakValueRss / PeakValueVsize; values cast by castMetricValue;
* ``<FrameworkError ExitStatus Type>`` (defaults 8001 and CMSException) with the text as details;
  ``<SkippedFile Pfn Lfn>``.

The expected figures come from the files themselves (uproot), not from hltrun's summary.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import uproot

from tests.conftest import make_events, write_counts
from tests.helpers import CLI_WITH_TEST_PLUGINS
from tests.test_bad_inputs import _corrupt

REPO = Path(__file__).resolve().parents[1]
RUN = CLI_WITH_TEST_PLUGINS

_FLOAT = re.compile(r"(^[-]?\d+\.\d*$|^\d*\.{1,1}\d+$)")  # WMCore's pat_float
_INT = re.compile(r"(^[0-9-]$|^[0-9-][0-9]*$)")  # WMCore's pat_int


def _cast(value: str):
    """castMetricValue: true/false, then float, then int by WMCore's patterns, else the string."""
    value = value.strip()
    if value in ("true", "false"):
        return value == "true"
    if _FLOAT.match(value):
        return float(value)
    if _INT.match(value):
        return int(value)
    return value


def _fields(node: ET.Element, nested: tuple[str, ...]) -> dict[str, str | None]:
    return {child.tag: child.text for child in node if child.tag not in nested}


def _runs(node: ET.Element) -> dict[int, dict[int, int | None]]:
    runs: dict[int, dict[int, int | None]] = {}
    for runs_node in node.findall("Runs"):
        for run in runs_node:
            if run.tag != "Run" or run.get("ID") is None:
                continue
            lumis = runs.setdefault(int(run.get("ID")), {})
            for lumi in run:
                if "ID" in lumi.attrib:
                    n = lumi.get("NEvents")
                    lumis[int(lumi.get("ID"))] = int(n) if n is not None else None
    return runs


def parse_fwjr(path: Path) -> dict:
    """The job report as WMCore's XMLParser takes it apart (a KeyError where WMCore's would raise one)."""
    root = ET.parse(path).getroot()
    assert root.tag == "FrameworkJobReport", root.tag
    report: dict = {"inputs": [], "outputs": [], "errors": [], "skipped": [], "performance": {}, "parameters": {}}
    for node in root:
        if node.tag == "InputFile":
            label = [c for c in node if c.tag == "ModuleLabel"][0].text
            f = _fields(node, ("Runs", "Branches"))
            report["inputs"].append({
                "module_label": label, "lfn": f["LFN"], "pfn": f["PFN"], "catalog": f["Catalog"], "guid": f["GUID"],
                "input_type": f["InputType"], "input_source_class": f["InputSourceClass"],
                "events": int(f["EventsRead"]), "runs": _runs(node)})
        elif node.tag == "File":
            label = [c for c in node if c.tag == "ModuleLabel"][0].text
            f = _fields(node, ("Runs", "Branches", "Inputs"))
            inputs = [{c.tag: c.text for c in i} for inputs in node.findall("Inputs") for i in inputs]
            report["outputs"].append({
                "module_label": label, "lfn": f["LFN"], "pfn": f["PFN"], "catalog": f["Catalog"], "guid": f["GUID"],
                "output_module_class": f["OutputModuleClass"], "events": int(f["TotalEvents"]),
                "branch_hash": f["BranchHash"], "runs": _runs(node),
                "inputs": [(i["LFN"], i["PFN"]) for i in inputs]})
        elif node.tag == "PerformanceReport":
            for summary in node:
                metric = summary.get("Metric")
                if metric is None:
                    continue
                values = {m.attrib["Name"]: m.attrib["Value"] for m in summary}  # both required
                if metric == "ApplicationMemory":
                    values = {k: v for k, v in values.items() if k in ("PeakValueRss", "PeakValueVsize")}
                elif metric != "Timing":  # perfCPUHandler keeps Timing's strings
                    values = {k: _cast(v) for k, v in values.items()}
                report["performance"].setdefault(metric, {}).update(values)
        elif node.tag == "FrameworkError":
            report["errors"].append((int(node.get("ExitStatus", 8001)), node.get("Type", "CMSException"), node.text))
        elif node.tag == "SkippedFile":
            report["skipped"].append((node.get("Lfn"), node.get("Pfn")))
        else:
            report["parameters"][node.tag] = node.text
    return report


# ------------------------------------------------------------------------------------------------- jobs

JOB = """
process: FJR
source: {{type: RootJetSource, files: [{files}], chunk_size: 50{source_extra}}}
options: {{skipEvents: {skip}}}
modules:
  pick: {{type: TestEventNumberFilter, divisor: 3}}
  work: {{type: TestSleep, sleep_ms: {sleep_ms}, started_file: {started}}}
  out: {{type: RootOutputModule, file: {out}, select_events: [p]}}
paths:
  p: [pick, work]
endpaths:
  e: [out]
"""


def _files(tmp: Path) -> tuple[Path, Path]:
    """Two inputs: run 1 lumis 1-3 (250 events), run 2 lumis 1-2 (150 events, ids of their own)."""
    a = write_counts(tmp / "a.root", make_events(250, seed=1))
    b = write_counts(tmp / "b.root", [dict(e, run=2, event=e["event"] + 50_000) for e in make_events(150, seed=2)])
    return a, b


def _config(tmp: Path, files: list[Path], skip: int = 0, sleep_ms: float = 0.0, source_extra: str = "") -> Path:
    cfg = tmp / "job.yaml"
    cfg.write_text(textwrap.dedent(JOB.format(files=", ".join(map(str, files)), skip=skip, sleep_ms=sleep_ms,
                                              started=tmp / "started", out=tmp / "o.root", source_extra=source_extra)))
    return cfg


def _command(tmp: Path, cfg: Path) -> list[str]:
    return [sys.executable, "-c", RUN, str(cfg), "-q", "-j", str(tmp / "fjr.xml")]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _ids(path: Path) -> list[tuple[int, int, int]]:
    with uproot.open(path) as f:
        a = f["Events"].arrays(["run", "luminosityBlock", "event"], library="np")
    return list(zip(a["run"].tolist(), a["luminosityBlock"].tolist(), a["event"].tolist()))


def _lumis(ids: list[tuple[int, int, int]], with_events: bool) -> dict[int, dict[int, int | None]]:
    runs: dict[int, dict[int, int | None]] = {}
    for (run, lumi), n in sorted(Counter((r, l) for r, l, _ in ids).items()):
        runs.setdefault(run, {})[lumi] = n if with_events else None
    return runs


def test_a_good_job_parses_to_the_events_lumis_and_files_it_read_and_wrote(tmp_path):
    a, b = _files(tmp_path)
    skip = 30
    res = subprocess.run(_command(tmp_path, _config(tmp_path, [a, b], skip=skip)), cwd=REPO, env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    fjr = parse_fwjr(tmp_path / "fjr.xml")
    read_a, read_b = _ids(a)[skip:], _ids(b)
    assert [(i["pfn"], i["events"]) for i in fjr["inputs"]] == [(str(a), len(read_a)), (str(b), len(read_b))]
    assert [i["runs"] for i in fjr["inputs"]] == [_lumis(read_a, False), _lumis(read_b, False)]
    assert all(i["module_label"] == "source" and i["input_type"] == "primaryFiles" for i in fjr["inputs"])
    (out,) = fjr["outputs"]
    written = _ids(tmp_path / "o.root")
    assert written and all(event % 3 == 0 for _, _, event in written)  # the filter, checked on the file
    assert (out["pfn"], out["module_label"], out["events"]) == (str(tmp_path / "o.root"), "out", len(written))
    # every lumi the output saw, with the events written in it (0 included), as CMSSW's associateLumiSection
    expected = _lumis(read_a + read_b, False)
    for run, lumi in ((r, l) for r, lumis in expected.items() for l in lumis):
        expected[run][lumi] = sum(1 for r, l, _ in written if (r, l) == (run, lumi))
    assert out["runs"] == expected
    assert out["inputs"] == [(None, str(a)), (None, str(b))]
    summary = fjr["performance"]["ProcessingSummary"]
    assert summary["NumberEvents"] == len(read_a) + len(read_b)
    assert summary["NumberBeginRunCalls"] == 2 and summary["NumberBeginLumiCalls"] == 5
    assert float(fjr["performance"]["Timing"]["TotalJobTime"]) > 0
    assert set(fjr["performance"]["ApplicationMemory"]) == {"PeakValueRss", "PeakValueVsize"}
    assert fjr["errors"] == [] and fjr["skipped"] == [] and fjr["parameters"] == {}


def test_a_job_failing_at_its_file_check_parses_to_a_read_error_and_no_events(tmp_path):
    """A corrupt input without skipBadFiles: the file check at begin_job fails it (exit 3, FileReadError 8021)
    before any event, so no input was read: no <InputFile>, NumberEvents 0, no <File>."""
    a, b = _files(tmp_path)
    _corrupt(b)
    res = subprocess.run(_command(tmp_path, _config(tmp_path, [a, b])), cwd=REPO, env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 3, res.stderr
    fjr = parse_fwjr(tmp_path / "fjr.xml")
    ((code, kind, details),) = fjr["errors"]
    assert (code, kind) == (8021, "FileReadError") and str(b) in details
    assert fjr["inputs"] == [] and fjr["performance"]["ProcessingSummary"]["NumberEvents"] == 0
    assert fjr["outputs"] == [] and not (tmp_path / "o.root").exists()


def test_a_job_failing_in_a_module_parses_to_its_error_and_the_events_before_it(tmp_path):
    """A module raising on one event of the second file: StdException 8002 (exit 4); the first file was read
    whole, the second up to the failing event, and no output is kept."""
    a, b = _files(tmp_path)
    ids_b = _ids(b)
    bad = ids_b[40]
    cfg = _config(tmp_path, [a, b])
    cfg.write_text(cfg.read_text().replace("p: [pick, work]", "p: [fail, pick, work]").replace(
        "modules:\n", f"modules:\n  fail: {{type: TestFailOn, run: {bad[0]}, events: [{bad[2]}]}}\n"))
    res = subprocess.run(_command(tmp_path, cfg), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 4, res.stderr
    fjr = parse_fwjr(tmp_path / "fjr.xml")
    ((code, kind, details),) = fjr["errors"]
    assert (code, kind) == (8002, "StdException") and str(bad[2]) in details
    reads = [(i["pfn"], i["events"]) for i in fjr["inputs"]]
    # the failing event was read (cmsRun's eventReadFromFile comes before the event is processed)
    assert reads == [(str(a), len(_ids(a))), (str(b), ids_b.index(bad) + 1)]
    assert fjr["inputs"][0]["runs"] == _lumis(_ids(a), False)
    assert sum(n for _, n in reads) == fjr["performance"]["ProcessingSummary"]["NumberEvents"]
    assert fjr["outputs"] == [] and not (tmp_path / "o.root").exists()


def test_a_stopped_job_parses_to_a_caught_signal_and_the_events_it_processed(tmp_path):
    a, b = _files(tmp_path)
    proc = subprocess.Popen(_command(tmp_path, _config(tmp_path, [a, b], sleep_ms=20)), cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "started").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (tmp_path / "started").exists(), proc.communicate(timeout=60)[1]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    fjr = parse_fwjr(tmp_path / "fjr.xml")
    ((code, kind, details),) = fjr["errors"]
    assert (code, kind) == (9000, "CaughtSignal") and "SIGTERM" in details
    processed = fjr["performance"]["ProcessingSummary"]["NumberEvents"]
    assert 0 < processed < 400
    assert sum(i["events"] for i in fjr["inputs"]) == processed
    first = fjr["inputs"][0]
    assert first["pfn"] == str(a)
    used = _ids(a)[:first["events"]]  # one stream: the events were taken in order
    assert first["runs"] == _lumis(used, False)
    assert fjr["outputs"] == []  # the stopped job's output was dropped, so no <File> for it


def test_a_job_that_skipped_a_bad_file_parses_to_a_skipped_file(tmp_path):
    a, b = _files(tmp_path)
    _corrupt(b)
    res = subprocess.run(_command(tmp_path, _config(tmp_path, [a, b], source_extra=", skipBadFiles: true")),
                         cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    fjr = parse_fwjr(tmp_path / "fjr.xml")
    assert fjr["skipped"] == [("", str(b))]
    assert [(i["pfn"], i["events"]) for i in fjr["inputs"]] == [(str(a), len(_ids(a)))]
    (out,) = fjr["outputs"]
    assert out["events"] == len(_ids(tmp_path / "o.root")) > 0
    assert set(out["runs"]) == {1}  # only the good file's run reached the output
    assert fjr["errors"] == []
    assert np.sum([i["events"] for i in fjr["inputs"]]) == fjr["performance"]["ProcessingSummary"]["NumberEvents"]


@pytest.mark.parametrize("skip_bad", [False, True])
def test_a_bad_file_past_max_events_parses_as_one_found_at_begin_job(tmp_path, skip_bad):
    """A file begin_job did not open (past maxEvents), reached by a lumi selection and found bad: WMCore reads
    it as it reads a bad file found at begin_job (a <SkippedFile> with skipBadFiles, a FileOpenError without),
    and the file never reached is no <InputFile>."""
    a, b = _files(tmp_path)
    notes = tmp_path / "notes.root"
    notes.write_text("not a ROOT file")
    late = write_counts(tmp_path / "late.root", make_events(40, seed=3))  # never reached: b.root gives 10
    extra = ", lumisToProcess: ['2:1-2:2']" + (", skipBadFiles: true" if skip_bad else "")
    cfg = _config(tmp_path, [a, notes, b, late], source_extra=extra)
    cfg.write_text(cfg.read_text().replace("options: {skipEvents: 0}", "options: {skipEvents: 0, maxEvents: 10}"))
    res = subprocess.run(_command(tmp_path, cfg), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == (0 if skip_bad else 3), res.stderr
    fjr = parse_fwjr(tmp_path / "fjr.xml")
    if skip_bad:
        assert fjr["skipped"] == [("", str(notes))] and fjr["errors"] == []
        assert [(i["pfn"], i["events"]) for i in fjr["inputs"]] == [(str(a), 0), (str(b), 10)]
    else:
        ((code, kind, details),) = fjr["errors"]
        assert (code, kind) == (8020, "FileOpenError") and str(notes) in details
        assert fjr["skipped"] == [] and [(i["pfn"], i["events"]) for i in fjr["inputs"]] == [(str(a), 0)]
    assert str(late) not in (tmp_path / "fjr.xml").read_text()
