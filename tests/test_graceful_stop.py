"""A job stopped by a signal in its loop: SIGUSR2 and SIGINT (cmsRun's graceful stop, UnixSignalService) keep
the output with the events finished before the stop; SIGTERM and SIGHUP (cmsRun aborts, or dies) drop it, as
an error does (framework/interrupt.py says why, from CMSSW's sources).

Real signals to a real ``hltrun`` subprocess running the shipped path on the shipped samples; the test waits
for a marker the job writes once 100 events reached its end path, never for a delay. Which events the
stopped job processed does not depend on timing: the streams pull events in input order and every event
pulled is processed, except at most one read at a lumi boundary, counted as not processed; so the events
processed are the first ``events_processed`` of the input, and a clean run over that many gives the events
the kept file must hold, by id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from hltrun.framework.module import Analyzer
from hltrun.framework.registry import register_module
from tests.helpers import CLI_WITH_TEST_PLUGINS, run_config

REPO = Path(__file__).resolve().parents[1]
AFTER = 100  # events at the end path before the signal is sent


def _config(tmp_path: Path, name: str, streams: int, **extra) -> Path:  # noqa: ANN003
    """configs/path.yaml on the signal sample first (many events pass the 1 % cut), then the QCD one."""
    pytest.importorskip("onnxruntime")
    data = yaml.safe_load((REPO / "configs" / "path.yaml").read_text())
    data["source"]["files"] = [str(REPO / "data" / "rsg_ww_3p5TeV.root"), str(REPO / "data" / "qcd_dijet.root")]
    data["source"]["chunk_size"] = 500  # several chunks before the stop
    data["options"].update(numberOfThreads=streams, accelerators=["cpu"], **extra)
    data["modules"]["vae"]["backend"] = "onnxruntime"  # no timing of the engines first
    data["modules"]["out"]["file"] = str(tmp_path / f"{name}.root")
    data["services"] = {"Timing": {}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _stopped(tmp_path: Path, sig: int, streams: int) -> tuple[subprocess.CompletedProcess, dict]:
    """The job, sent ``sig`` once ``AFTER`` events reached its end path (a slow module there keeps it
    running); its exit, stderr and hltrun.json's job."""
    cfg = _config(tmp_path, "o", streams)
    data = yaml.safe_load(cfg.read_text())
    started = tmp_path / "started"
    data["modules"]["slow"] = {"type": "TestSleep", "sleep_ms": 5, "started_file": str(started),
                               "started_after": AFTER}
    data["endpaths"]["outputPath"] = ["out", "slow"]
    cfg.write_text(yaml.safe_dump(data))
    proc = subprocess.Popen([sys.executable, "-c", CLI_WITH_TEST_PLUGINS, str(cfg), "-q", "--report-dir",
                             str(tmp_path / "rep"), "-j", str(tmp_path / "fjr.xml")],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180  # begin_job and 100 events, however busy the machine
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert started.exists(), proc.communicate(timeout=60)[1][-3000:]
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    job = json.loads((tmp_path / "rep" / "hltrun.json").read_text())["job"]
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), job


def _job_report_files(path: Path) -> list[dict]:
    """Each <File> of a FrameworkJobReport: its PFN, TotalEvents and {"run:lumi": NEvents}."""
    files = []
    for f in ET.parse(path).getroot().iter("File"):
        lumis = {f"{run.get('ID')}:{ls.get('ID')}": int(ls.get("NEvents"))
                 for run in f.iter("Run") for ls in run.iter("LumiSection")}
        files.append({"pfn": f.findtext("PFN"), "events": int(f.findtext("TotalEvents")), "lumis": lumis})
    return files


def _accounted(job: dict) -> tuple[int, int, int]:
    """Every event read is processed or counted as not, every one processed ran the output's path and
    passed or failed it; (read, processed, passed)."""
    path = job["paths"]["HLT_AnomalyDetection"]
    assert job["events_read"] == job["events_processed"] + job["events_not_processed"], job
    assert job["events_not_processed"] <= 1, job  # only the event read at a lumi boundary when the stop came
    assert job["events_processed"] == job["events_passed"] + job["events_failed"] + job["events_error"], job
    assert path["executed"] == job["events_processed"] and path["error"] == job["events_error"] == 0, path
    assert path["passed"] + path["failed"] == path["executed"], path
    return job["events_read"], job["events_processed"], path["passed"]


@pytest.mark.slow
@pytest.mark.parametrize("sig, streams", [(signal.SIGUSR2, 1), (signal.SIGUSR2, 4), (signal.SIGINT, 4)],
                         ids=["SIGUSR2-1-stream", "SIGUSR2-4-streams", "SIGINT-4-streams"])
def test_a_graceful_signal_keeps_the_output_with_the_events_finished_before_it(tmp_path, sig, streams):
    """cmsRun's graceful stop closes its output files normally and its job report lists them. hltrun dropped
    the output (``committed: false``, ``events_written: 0``, no <File>), so a batch system's SIGUSR2 before
    its time limit threw away every event processed. Now the file is committed with exactly the events
    that passed, by id, and the reports say so; the job is still marked stopped (128 + signal, 9000)."""
    import uproot

    done, job = _stopped(tmp_path, sig, streams)
    name = signal.Signals(sig).name
    assert done.returncode == 128 + sig, done.stderr
    assert "Traceback" not in done.stderr and job["stopped_by_signal"] == name, done.stderr
    read, processed, passed = _accounted(job)
    assert AFTER <= processed < 4000 and passed > 0  # stopped in the loop, with events kept

    out = job["module_summaries"]["out"]
    assert out["committed"] is True and out["events_written"] == passed, out
    kept = tmp_path / "o.root"
    assert not list(tmp_path.glob("o.root.*"))  # no temporary left beside it
    with uproot.open(kept) as f:
        rows = f["Events"].arrays(["run", "luminosityBlock", "event", "HLT_AnomalyDetection", "vae_score"],
                                  library="np")
        lumis = f["LuminosityBlocks"].arrays(["run", "luminosityBlock", "eventsProcessed"], library="np")
    assert len(rows["event"]) == passed and rows["HLT_AnomalyDetection"].all()
    assert int(lumis["eventsProcessed"].sum()) == processed  # every event processed, written or not

    # the events that pass among the first `processed` of the input, from a clean run: the same, by id
    reference = tmp_path / "ref.root"
    clean, _ = run_config(_config(tmp_path, "ref", 1), f"options.maxEvents={processed}")
    assert clean.events_processed == processed
    with uproot.open(reference) as f:
        expected = f["Events"].arrays(["run", "luminosityBlock", "event", "vae_score"], library="np")
    for key in ("run", "luminosityBlock", "event"):
        assert rows[key].tolist() == expected[key].tolist(), key
    assert all(np.array_equal(a, b) for a, b in zip(rows["vae_score"], expected["vae_score"]))

    written = {}
    for run, lumi in zip(rows["run"].tolist(), rows["luminosityBlock"].tolist()):
        written[f"{run}:{lumi}"] = written.get(f"{run}:{lumi}", 0) + 1
    assert {k: v for k, v in out["lumis_written"].items() if v} == written
    files = _job_report_files(tmp_path / "fjr.xml")
    assert [(f["pfn"], f["events"]) for f in files] == [(str(kept), passed)]
    assert files[0]["lumis"] == out["lumis_written"]
    report = (tmp_path / "fjr.xml").read_text()
    assert 'ExitStatus="9000"' in report and f'UnixExitStatus="{128 + sig}"' in report  # still a stopped job
    assert "Stopped by" in (tmp_path / "rep" / "report.html").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_hard_signal_still_drops_the_output(tmp_path, sig):
    """SIGTERM (cmsRun: InitRootHandlers' stack trace and abort; a batch system's hard kill) and SIGHUP (no
    handler in cmsRun) stop the loop as before, every event read accounted for, but keep no output."""
    done, job = _stopped(tmp_path, sig, 4)
    assert done.returncode == 128 + sig, done.stderr
    _, processed, _ = _accounted(job)
    assert processed >= AFTER and job["stopped_by_signal"] == signal.Signals(sig).name
    out = job["module_summaries"]["out"]
    assert (out["committed"], out["events_written"], out["lumis_written"]) == (False, 0, {})
    assert not list(tmp_path.glob("o.root*")) and _job_report_files(tmp_path / "fjr.xml") == []


@dataclass
class _SignalAtParameters:
    event: int = 5  # EventID.event at which the module sends the signal to its own process
    signum: int = int(signal.SIGUSR2)


@register_module("TestSignalAt")
class _SignalAt(Analyzer):
    """Sends a signal to this process on one event (one stream: on the main thread, whose handler runs at
    once and notes it: the loop stops after this event)."""

    Parameters = _SignalAtParameters

    def analyze(self, event) -> None:  # noqa: ANN001
        if event.id.event == self.params.event:
            os.kill(os.getpid(), self.params.signum)


@pytest.mark.parametrize("fails", [False, True], ids=["signal alone", "signal, then an error in that event"])
def test_an_error_after_a_graceful_signal_still_drops_the_output(write_config, tmp_path, fails):
    """SIGUSR2 on event 5, and (``fails``) an error in event 5 after it, still in flight: the error stops the
    job too, so the output is dropped as for any error (a file whose last event failed is not a result);
    without it the output keeps events 1-5. In-process, on a counting source: the logic, not the timing."""
    import uproot

    from hltrun.framework.eventloop import JobFailed
    from hltrun.framework.interrupt import Interrupted, handle_signals

    out = tmp_path / "o.root"
    cfg = write_config(f"""
process: TEST
source: {{type: TestCountingSource, n: 50}}
modules:
  usr2: {{type: TestSignalAt, event: 5}}
  bad: {{type: TestFailOn, events: {[5] if fails else []}}}
  out: {{type: RootOutputModule, file: {out}}}
paths: {{p: [usr2, bad]}}
endpaths: {{e: [out]}}
""")
    with handle_signals(), pytest.raises(JobFailed) as failed:
        run_config(cfg)
    summary = failed.value.summary
    assert summary.events_processed == 5 and summary.stopped_by_signal == "SIGUSR2"
    assert isinstance(failed.value.cause, Interrupted)  # the signal came first: it stays the reason
    written = summary.module_summaries["out"]
    if fails:
        assert summary.events_error == 1 and not out.exists() and not list(tmp_path.glob("o.root*"))
        assert (written["committed"], written["events_written"]) == (False, 0)
    else:
        assert uproot.open(out)["Events"]["event"].array(library="np").tolist() == [1, 2, 3, 4, 5]
        assert (written["committed"], written["events_written"]) == (True, 5)


def test_a_kept_output_says_its_job_was_stopped_and_hltdiff_notes_it(write_config, tmp_path, capsys):
    """A file kept after a graceful stop looked like a whole job's: its provenance has ``maxEvents: -1``, and
    hltdiff against the whole job's said "outputs agree" with a note on lumi sections not read, as for a job
    run with ``maxEvents``; nothing said the job was stopped. Now its ``Provenance`` names the signal, a whole
    job's does not, and hltdiff says which side's file holds only the events before the stop."""
    from hltrun.framework.eventloop import JobFailed
    from hltrun.framework.interrupt import handle_signals
    from hltrun.modules.root_output import read_provenance
    from hltrun.tools.hltdiff import main as hltdiff

    def job(name: str, signal_at: int) -> Path:
        out = tmp_path / f"{name}.root"
        cfg = write_config(f"""
process: TEST
source: {{type: TestCountingSource, n: 50}}
modules:
  usr2: {{type: TestSignalAt, event: {signal_at}}}
  out: {{type: RootOutputModule, file: {out}}}
paths: {{p: [usr2]}}
endpaths: {{e: [out]}}
""", f"{name}.yaml")
        with handle_signals():
            try:
                run_config(cfg)
            except JobFailed as failed:
                assert failed.summary.module_summaries["out"]["committed"]
        return out

    whole, kept = job("whole", 0), job("kept", 5)  # event 0 never comes: the whole job runs to its end
    assert "stopped_by_signal" not in read_provenance(whole)
    assert read_provenance(kept)["stopped_by_signal"] == "SIGUSR2"  # as hltrun.json's job says it
    capsys.readouterr()
    assert hltdiff([str(whole), str(kept)]) == 0  # the events both read agree
    said = capsys.readouterr().out
    assert f"the new side's {kept} was kept by a job stopped by SIGUSR2" in said, said
    assert "old side's" not in said


def _stop_marks(report_dir: Path) -> dict[str, str | None]:
    """What scores.root, timing.root and resources.json each say stopped the job (None: nothing)."""
    import uproot

    marks = {}
    for name in ("scores.root", "timing.root"):
        with uproot.open(report_dir / name) as f:
            marks[name] = str(f["stopped_by_signal"]) if "stopped_by_signal" in f else None
    marks["resources.json"] = json.loads((report_dir / "resources.json").read_text()).get("stopped_by_signal")
    return marks


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGUSR2, signal.SIGTERM], ids=["SIGUSR2", "SIGTERM"])
def test_every_report_file_of_a_stopped_job_says_so(tmp_path, sig):
    """hltrun.json, report.html, the console, the job report and a kept output's Provenance said a signal
    stopped the job; scores.root, timing.root and resources.json did not, so a user opening one alone (the
    rates of scores.root) took a partial job's figures for a whole one's. Now each names the signal: a
    string ``stopped_by_signal`` in the ROOT files, a top-level field in resources.json."""
    done, job = _stopped(tmp_path, sig, 1)
    name = signal.Signals(sig).name
    assert done.returncode == 128 + sig and job["stopped_by_signal"] == name, done.stderr
    assert _stop_marks(tmp_path / "rep") == dict.fromkeys(("scores.root", "timing.root", "resources.json"), name)


@pytest.mark.slow
def test_the_report_files_of_a_whole_job_say_nothing_of_a_stop(tmp_path):
    """The same job run to its end (``maxEvents``, no signal): no ``stopped_by_signal`` in any of them."""
    cfg = _config(tmp_path, "o", 1)
    done = subprocess.run([sys.executable, "-c", CLI_WITH_TEST_PLUGINS, str(cfg), "-q", "-n", str(AFTER),
                           "--report-dir", str(tmp_path / "rep")], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "rep" / "hltrun.json").read_text())["job"]["stopped_by_signal"] is None
    assert _stop_marks(tmp_path / "rep") == dict.fromkeys(("scores.root", "timing.root", "resources.json"))
