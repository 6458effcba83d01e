"""CMSSW's FrameworkJobReport XML (``cmsRun -j FILE``), for the scripts and workflow tools that read it.

Layout as FWCore/MessageLogger's JobReport writes it and WMCore's FwkJobReport parser reads it:
one ``<InputFile>`` per input (LFN/PFN, ModuleLabel, InputType, InputSourceClass, EventsRead, Runs:
``<Run ID><LumiSection ID/>`` for every lumi section read from it, no NEvents, as CMSSW's
associateInputLumiSection),
a ``<SkippedFile Pfn Lfn>`` per file ``skipBadFiles`` gave up, wholly or from a bad entry on (an
``<InputFile>`` with its EventsRead then says how many of its events were used),
one ``<File>`` per output module (PFN, ModuleLabel, OutputModuleClass, TotalEvents, Runs: every lumi
section the output saw with ``NEvents`` its events written, 0 included, as CMSSW's
associateLumiSection; then Inputs), runs and lumis in increasing order (CMSSW's std::map); a
``<PerformanceReport>`` with the ``Timing``, ``ApplicationMemory`` and ``ProcessingSummary``
summaries, and, when the job failed, a ``<FrameworkError ExitStatus=... Type=...>`` carrying the
edm::errors code cmsRun would give (8009 configuration, 8020 file open, 8021 file read, 8035
unavailable accelerator, 9000 caught signal, ...) next to hltrun's own Unix exit code.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..atomic import write_text
from ..errors import CMSSW_CATEGORIES, category_of
from ..summary import JobSummary

CAUGHT_SIGNAL = 9000  # edm::errors::CaughtSignal


Lumis = dict[int, dict[int, "int | None"]]  # run -> lumi -> events (None: not reported, an input's)


@dataclass
class InputRecord:
    pfn: str
    events_read: int
    entries: int | None = None
    runs: Lumis = field(default_factory=dict)


@dataclass
class OutputRecord:
    pfn: str
    module_label: str
    module_class: str
    events_written: int
    runs: Lumis = field(default_factory=dict)


def parse_lumis(counts: dict[str, int] | None, with_events: bool) -> Lumis:
    """{"run:lumi": n} (the source's and output's accounting) as run -> lumi -> n (None without events)."""
    runs: Lumis = {}
    for key, n in (counts or {}).items():
        run, lumi = (int(x) for x in key.split(":"))
        runs.setdefault(run, {})[lumi] = int(n) if with_events else None
    return runs


def _runs(parent: ET.Element, runs: Lumis) -> None:
    """CMSSW's <Runs><Run ID><LumiSection ID [NEvents]/></Run></Runs>, sorted as its std::map."""
    el = ET.SubElement(parent, "Runs")
    for run in sorted(runs):
        r = ET.SubElement(el, "Run", ID=str(run))
        for lumi in sorted(runs[run]):
            n = runs[run][lumi]
            attrs = {"ID": str(lumi)} if n is None else {"ID": str(lumi), "NEvents": str(n)}
            ET.SubElement(r, "LumiSection", attrs)


@dataclass
class JobReportData:
    """What the report says, gathered by the caller from the summary, config and services."""

    summary: JobSummary
    source_label: str = "source"
    source_class: str = "RootJetSource"
    inputs: list[InputRecord] = field(default_factory=list)
    outputs: list[OutputRecord] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)  # skipBadFiles: wholly or partly (EventsRead says)
    cpu_s: float | None = None
    peak_rss_mb: float | None = None
    peak_vsize_mb: float | None = None
    exit_code: int = 0
    error: BaseException | None = None


def cmssw_error(exit_code: int, error: BaseException | None) -> tuple[int, str]:
    """(edm::errors code, category name) for a failed job."""
    if isinstance(error, KeyboardInterrupt) or exit_code >= 128:
        return CAUGHT_SIGNAL, "CaughtSignal"
    code = getattr(error, "cmssw_code", None)
    if code is not None:  # a Python exception from a module is StdException, as in options.TryToContinue
        category = category_of(error)
        return CMSSW_CATEGORIES.get(category, int(code)), category
    return {2: (8009, "Configuration"), 3: (8021, "FileReadError")}.get(exit_code, (8001, "OtherCMS"))


def _metrics(parent: ET.Element, metric: str, values: Sequence[tuple[str, Any]]) -> None:
    """One PerformanceSummary, its metrics sorted by name as CMSSW's std::map writes them."""
    summary = ET.SubElement(parent, "PerformanceSummary", Metric=metric)
    for name, value in sorted(values):
        if value is not None:
            ET.SubElement(summary, "Metric", Name=name, Value=_fmt(value))


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _text(parent: ET.Element, tag: str, text: Any) -> ET.Element:
    el = ET.SubElement(parent, tag)
    el.text = "" if text is None else str(text)
    return el


def _file_element(root: ET.Element, tag: str, pfn: str, module_label: str) -> ET.Element:
    """The fields JobReport writes first for an input and an output file alike."""
    el = ET.SubElement(root, tag)
    ET.SubElement(el, "State", Value="closed")
    for name, value in (("LFN", ""), ("PFN", pfn), ("Catalog", ""), ("ModuleLabel", module_label), ("GUID", "")):
        _text(el, name, value)
    return el


def render(data: JobReportData) -> str:
    """The FrameworkJobReport as an XML string."""
    s = data.summary
    root = ET.Element("FrameworkJobReport")
    for inp in data.inputs:
        el = _file_element(root, "InputFile", inp.pfn, data.source_label)
        _text(el, "InputType", "primaryFiles")
        _text(el, "InputSourceClass", data.source_class)
        _text(el, "EventsRead", inp.events_read)
        _runs(el, inp.runs)
    for pfn in data.skipped_files:  # JobReport::reportSkippedFile
        ET.SubElement(root, "SkippedFile", Pfn=pfn, Lfn="")
    for out in data.outputs:
        el = _file_element(root, "File", out.pfn, out.module_label)
        _text(el, "OutputModuleClass", out.module_class)
        _text(el, "TotalEvents", out.events_written)
        _text(el, "DataType", "")
        _text(el, "BranchHash", "")
        _runs(el, out.runs)
        inputs = ET.SubElement(el, "Inputs")
        for inp in data.inputs:
            i = ET.SubElement(inputs, "Input")
            _text(i, "LFN", "")
            _text(i, "PFN", inp.pfn)
    perf = ET.SubElement(root, "PerformanceReport")
    events = s.events_processed
    # FWCore/Services' Timing names; what hltrun does not measure (MinEventTime, TotalLoopCPU,
    # TotalEventSetupTime...) is left out rather than faked
    _metrics(perf, "Timing", [
        ("TotalJobTime", float(s.wall_s)), ("TotalJobCPU", data.cpu_s),
        ("AvgEventTime", s.loop_s / events if events and s.loop_s else None),
        ("EventThroughput", events / s.loop_s if s.loop_s > 0 else None),
        ("TotalLoopTime", float(s.loop_s) if s.loop_s else None),
        ("TotalInitTime", float(s.begin_job_s)), ("NumberOfStreams", s.streams)])
    _metrics(perf, "ApplicationMemory", [("PeakValueRss", data.peak_rss_mb), ("PeakValueVsize", data.peak_vsize_mb)])
    # CMSSW's three (NumberEvents, NumberBeginLumiCalls, NumberBeginRunCalls), then hltrun's accounting
    _metrics(perf, "ProcessingSummary", [
        ("NumberEvents", events), ("NumberBeginLumiCalls", s.begin_lumi_calls),
        ("NumberBeginRunCalls", s.begin_run_calls),
        ("NumberPassed", s.events_passed), ("NumberFailed", s.events_failed),
        ("NumberErrors", s.events_error), ("NumberRead", s.events_read), ("NumberSkipped", s.events_skipped),
        ("NumberNotProcessed", s.events_not_processed)])
    if data.exit_code:
        code, kind = cmssw_error(data.exit_code, data.error)
        err = ET.SubElement(root, "FrameworkError", ExitStatus=str(code), Type=kind,
                            UnixExitStatus=str(data.exit_code))
        err.text = s.failure or str(data.error or "")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def write(path: Path, data: JobReportData) -> Path:
    """Write whole or not at all, by the destination policy of framework/atomic.py."""
    return write_text(path, render(data), "--job-report")


def _proc_status_mb(key: str) -> float | None:
    """VmPeak / VmHWM of this process from /proc (Linux), in MB: psutil offers neither peak (its
    ``memory_info`` is the RSS and VMS now)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def skipped_listings(paths: list[str], bad_files: list[str]) -> list[str]:
    """One ``<SkippedFile>`` per listing skipped, as cmsRun reports each failed open of a ``fileNames``
    entry (RootInputFileSequence: every entry is an open attempt): a bad file listed twice (allowDuplicateFiles)
    is skipped, counted and named twice in hltrun.json, so twice here too (it was once). ``paths``: the bad
    files; ``bad_files``: the summary's lines, one per listing skipped, each ``"<path>: what (why)"``."""
    longest_first = sorted(paths, key=len, reverse=True)  # a name that begins a longer one is tried after it
    listed = [next((p for p in longest_first if line.startswith(p + ": ")), None) for line in bad_files]
    found = [p for p in listed if p is not None]
    return found + [p for p in paths if p not in found]  # one without a line (library use): once


def gather(summary: JobSummary, exit_code: int, error: BaseException | None,
           memory: dict[str, Any] | None = None) -> JobReportData:
    """Build the report from the job's (merged) summary and this process's resource usage.

    Inputs and their EventsRead come from the source's accounting (``files_read``: file -> events,
    ``lumis_per_file``: their lumi sections), outputs from each output module's summary (``file``,
    ``events_written``, ``lumis_written``; none for a file dropped because the job stopped: ``committed``
    False). ``memory``: the Memory service's results when it ran:
    PeakValueRss/PeakValueVsize are then its MemoryReport's peaks (the same numbers; in a Dask run the
    largest worker's); without it, this process's VmHWM/VmPeak."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    source = summary.source or {}
    entries = source.get("entries_per_file") or {}
    lumis = source.get("lumis_per_file") or {}
    inputs = [InputRecord(str(path), int(n), entries.get(path), parse_lumis(lumis.get(path), with_events=False))
              for path, n in (source.get("files_read") or {}).items()]
    outputs = [OutputRecord(str(info["file"]), label, summary.module_types.get(label, ""), int(info.get("events_written", 0)),
                            parse_lumis(info.get("lumis_written"), with_events=True))
               for label, info in summary.module_summaries.items()
               if isinstance(info, dict) and "file" in info and info.get("committed", True)]  # a dropped file: none
    if memory and memory.get("peak_rss_mb"):
        peak_rss, peak_vsize = float(memory["peak_rss_mb"]), float(memory["peak_vsize_mb"])
    else:
        peak_rss = _proc_status_mb("VmHWM") or usage.ru_maxrss / 1024.0
        peak_vsize = _proc_status_mb("VmPeak")
    skipped = skipped_listings([str(path) for path in (source.get("bad_entries_per_file") or {})], summary.bad_files)
    return JobReportData(summary, inputs=inputs, outputs=outputs, skipped_files=skipped, cpu_s=usage.ru_utime + usage.ru_stime,
                         peak_rss_mb=peak_rss, peak_vsize_mb=peak_vsize,
                         exit_code=exit_code, error=error)
