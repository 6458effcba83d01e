"""Golden test: the TrigReport, whole lines, as FWCore/Framework/src/Schedule.cc writes them.

The expected text below was written from Schedule.cc's stream statements (``"TrigReport " <<
std::right << std::setw(5) << 1 << std::setw(5) << bit << " " << std::setw(10) << timesRun ...``),
not from hltrun's output: a changed width, header, bit column or counter fails here. The report opens
with a blank line and its Module Summary is sorted by label in byte order (``getTriggerReport``'s
``sort_all(rep.workerSummaries)``; WorkerSummary compares moduleLabel), not in configuration order.

A "Modules in Path" row's second column is the module's place in its path, as cmsRun prints it today:
Schedule.cc writes ``mod.bitPosition``, which ``fillModuleInPathSummary`` sets from
``Path::bitPosition(which)`` = ``WorkerInPath::bitPosition()`` = its PlaceInPathContext's ``placeInPath``
(StreamSchedule::fillWorkers counts 0, 1, 2, ... along the path); CMSSW before ~2014 printed the path's bit
there (``pi->bitPosition()``), which hltrun copied. End-path rows count 0, 1, ... too (``bitpos++``).
"""

from __future__ import annotations

from hltrun.framework.report.trigreport import trig_report
from hltrun.framework.summary import JobSummary, ModuleCounters, PathCounters, PathModuleCounters

EXPECTED = """
TrigReport ---------- Event  Summary ------------
TrigReport Events total = 4000 passed = 115 failed = 3885

TrigReport ---------- Path   Summary ------------
TrigReport  Trig Bit#   Executed     Passed     Failed      Error Name
TrigReport     1    0       4000        115       3885          0 HLT_AnomalyDetection
TrigReport     1    1       4000       3885        115          0 HLT_Inverted

TrigReport -------End-Path   Summary ------------
TrigReport  Trig Bit#   Executed     Passed     Failed      Error Name
TrigReport     0    0       4000       4000          0          0 outputPath

TrigReport ---------- Modules in Path: HLT_AnomalyDetection ------------
TrigReport  Trig Bit#    Visited     Passed     Failed      Error Name
TrigReport     1    0       4000       4000          0          0 batcher
TrigReport     1    1       4000       4000          0          0 Vae
TrigReport     1    2       4000        115       3885          0 anomalyFilter

TrigReport ---------- Modules in Path: HLT_Inverted ------------
TrigReport  Trig Bit#    Visited     Passed     Failed      Error Name
TrigReport     1    0       4000       3885        115          0 anomalyFilter

TrigReport ------ Modules in End-Path: outputPath ------------
TrigReport  Trig Bit#    Visited     Passed     Failed      Error Name
TrigReport     0    0       4000       4000          0          0 out
TrigReport     0    1       4000       4000          0          0 counter

TrigReport ---------- Module Summary ------------
TrigReport    Visited   Executed     Passed     Failed      Error Name
TrigReport       4000       4000       4000          0          0 Vae
TrigReport       8000       4000        115       3885          0 anomalyFilter
TrigReport       4000       4000       4000          0          0 batcher
TrigReport       4000       4000       4000          0          0 counter
TrigReport       4000       4000       4000          0          0 out
"""


def _summary() -> JobSummary:
    s = JobSummary("HLTAD", 1, events_processed=4000, events_passed=115, events_failed=3885)
    def ok(label: str) -> PathModuleCounters:
        return PathModuleCounters(label, visited=4000, passed=4000)

    cut = PathModuleCounters("anomalyFilter", visited=4000, passed=115, failed=3885)
    s.paths["HLT_AnomalyDetection"] = PathCounters(4000, 115, 3885, 0, [ok("batcher"), ok("Vae"), cut])
    s.paths["HLT_Inverted"] = PathCounters(4000, 3885, 115, 0, [PathModuleCounters("anomalyFilter", 4000, 3885, 115, 0)])
    s.endpaths["outputPath"] = PathCounters(4000, 4000, 0, 0, [ok("out"), ok("counter")])
    s.path_entries = {"HLT_AnomalyDetection": ["batcher", "Vae", "anomalyFilter"],
                      "HLT_Inverted": ["~anomalyFilter"], "outputPath": ["out", "counter"]}
    every = ModuleCounters(visited=4000, executed=4000, passed=4000)
    s.modules = {"batcher": every, "Vae": every,  # capital V: std::string order puts it before lower case
                 "anomalyFilter": ModuleCounters(visited=8000, executed=4000, passed=115, failed=3885),
                 "out": every, "counter": every}
    return s


def test_trigreport_matches_schedule_cc_line_for_line():
    text = trig_report(_summary())
    assert text.startswith("\nTrigReport ---------- Event  Summary") and text.endswith(" out\n")
    got = text.splitlines()
    want = EXPECTED.splitlines()
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"line {i + 1}:\n got  {g!r}\n want {w!r}"
    assert len(got) == len(want)


def test_output_module_passes_when_the_event_is_not_selected(write_config, tmp_path):
    """CMSSW: an output module's worker passes for every event; selection only decides what is written."""
    from tests.helpers import run_config

    cfg = write_config(f"""
source: {{type: TestCountingSource, n: 10}}
modules:
  even: {{type: TestModuloFilter, divisor: 2}}
  out: {{type: RootOutputModule, file: {tmp_path / 'o.root'}, select_events: [p]}}
paths:
  p: [even]
endpaths:
  e: [out]
""")
    summary, process = run_config(cfg)
    out = summary.modules["out"]
    assert (out.visited, out.executed, out.passed, out.failed) == (10, 10, 10, 0)
    assert summary.endpaths["e"].passed == 10
    assert process.instances["out"][0].summary()["events_written"] == 5


def test_no_trigger_paths_means_every_event_passed():
    """Schedule.cc: without trigger paths the event summary says passed = total, failed = 0."""
    s = JobSummary("P", 1, events_processed=7, events_passed=0, events_failed=0)
    assert "TrigReport Events total = 7 passed = 7 failed = 0\n" in trig_report(s)


def test_the_job_reports_stop_line_says_a_signal_once_and_an_error_as_the_cause():
    """A signal's failure is already "stopped by SIGUSR2": the line read "stopped by: stopped by SIGUSR2"."""
    from hltrun.framework.report.trigreport import job_accounting

    s = JobSummary("P", 1, events_processed=7, events_passed=0, events_failed=7)
    s.failure, s.stopped_by_signal = "stopped by SIGUSR2", "SIGUSR2"
    assert "JobReport  stopped by SIGUSR2" in job_accounting(s).splitlines()
    s.failure, s.stopped_by_signal = "module 'vae' failed: ModuleError: boom", None
    assert "JobReport  stopped by: module 'vae' failed: ModuleError: boom" in job_accounting(s).splitlines()


def test_the_job_report_says_the_links_to_no_jet_apart_from_the_invalid_ones():
    """NanoAOD's -1 links (a muon in no jet) were counted by the source and printed nowhere: the constituents
    read did not add up to the file's candidates with nothing to say why. A line when there are some."""
    from hltrun.framework.report.trigreport import quality_lines

    s = JobSummary("P", 1, events_processed=7, events_passed=0, events_failed=7)
    s.data_quality = {"source": {"invalid_links": 0}}
    s.source = {"links_to_no_jet": 3, "invalid_links": 0}
    assert quality_lines(s) == ["JobReport  data quality 'source': invalid links 0",
                                "JobReport  links to no jet 3 (source: a jet index of -1, NanoAOD's candidate in no "
                                "jet; left out of every jet, not counted with the invalid links)"]
    s.source = {"links_to_no_jet": 0}  # a counts or nested layout, or no -1 link: nothing to say
    assert quality_lines(s) == ["JobReport  data quality 'source': invalid links 0"]
