"""Distributed execution on a real Dask LocalCluster of 2 process workers, with small work units.

Each test names the deliberate bug it was seen to catch (see the issue-9 report). Every wait here has a
bound and every test a hang guard (``HANG_S``): under mutation testing a mutant that makes the client
wait for ever (a unit that never returns, a line never printed) must fail the test, not sit at 0 % CPU
below mutmut's CPU-time limit (docs/testing.md)."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
import os
import sys
import time
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hltrun.framework.config import load
from hltrun.framework.executors import execute, report_services
from hltrun.framework.report import text_report, trig_report, write_report_files
from hltrun.framework.report.timereport import budget_report
from hltrun.tools.hltdiff import compare, read_coverage

distributed = pytest.importorskip("distributed", reason='Dask tests need the dist extra: pip install -e ".[dist]"')

ROOT = Path(__file__).parents[1]
SCHEMA = ROOT / "framework" / "report" / "hltrun-report.schema.json"

PATH = """
process: HLTAD
options:
  maxEvents: 600
  skipEvents: 2200          # last 300 QCD events, then 300 of the next file: units cross a file boundary
  accelerators: [cpu]
  executor: {{type: {type}, eventsPerTask: 75, address: {address}}}
source:
  type: RootJetSource
  files: [{files}]
  chunk_size: 100
modules:
  batcher: {{type: JetBatcher, src: source, max_jets: 2, relative: true}}
  vae: {{type: VAEAnomalyScorer, src: batcher, model: conv_vae, backend: onnxruntime}}
  anomalyFilter: {{type: AnomalyScoreFilter, src: vae, reduce: max, model: conv_vae, background_efficiency: "1e-2"}}
  out: {{type: RootOutputModule, file: {out}, keep: [vae]}}
  {extra}
paths:
  HLT_AnomalyDetection: [batcher, vae, anomalyFilter]
endpaths:
  outputPath: [out{endpath}]
services:
  Timing: {{}}
  Memory: {{}}
"""
FILES = "data/qcd_dijet.root, data/rsg_ww_3p5TeV.root"


# a hang guard, not a timing: these tests take 5-30 s on a busy 2-core machine; a mutation run may
# lower it (HLTRUN_HANG_S=120) so that a mutant that hangs fails sooner (docs/testing.md)
HANG_S = int(os.environ.get("HLTRUN_HANG_S", "600"))


@pytest.fixture(autouse=True)
def hang_guard():
    """SIGALRM in the main thread interrupts any wait there (as_completed, a pipe read, a lock) with an
    error naming the guard, so that a hung test fails instead of blocking the run."""
    import signal

    def hung(signum, frame):  # noqa: ANN001
        raise TimeoutError(f"test still running after {HANG_S} s: a wait without a bound (hang guard)")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(HANG_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def cluster():
    """One LocalCluster of 2 process workers for the module; a unit may be lost twice with its worker."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 2}):
        c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                         silence_logs=40)
    yield c.scheduler_address
    c.close(timeout=60)


def config(write_config, tmp_path: Path, address: str | None, name: str, files: str = FILES,
           extra: str = "", endpath: str = "", *overrides: str):
    text = PATH.format(type="local" if name == "local" else "dask", address=address or "null", files=files, out=tmp_path / f"{name}.root", extra=extra,
                       endpath=endpath)
    return load(write_config(text, f"{name}.yaml"), list(overrides))


def run(cfg):
    outcome = execute(cfg, None, time.perf_counter(), progress=False)
    return outcome, report_services(cfg, outcome.result)


def events(path: Path) -> dict[str, np.ndarray]:
    t = uproot.open(path)["Events"]
    return {k: v for k, v in t.arrays(library="np").items()}


def assert_same_file(a: Path, b: Path) -> None:
    """Same branches, same values, same order (stronger than hltdiff, which matches ids)."""
    ea, eb = events(a), events(b)
    assert list(ea) == list(eb)
    for key in ea:
        assert len(ea[key]) == len(eb[key]), key
        for x, y in zip(ea[key], eb[key]):
            assert np.array_equal(np.asarray(x), np.asarray(y)), key
    diff = compare(uproot.open(a)["Events"].arrays(library="ak"), uproot.open(b)["Events"].arrays(library="ak"))
    assert diff.identical and diff.common == len(ea["event"]) > 0
    coverage = read_coverage([a])  # the lumi sections read: a unit's share of each adds up to the whole
    assert coverage and coverage == read_coverage([b])


def test_a_file_listed_under_two_spellings_is_two_inputs_as_locally(cluster, write_config, tmp_path):
    """``data/qcd_dijet.root`` and its absolute path (allowDuplicateFiles): a local run reports two inputs of
    300 events; the workers counted both under the one absolute path they open, so the Dask run reported
    one input of 600 events under the last spelling (files_read, lumis_per_file, the -j report's PFNs). A
    bad file skipped whole (skipBadFiles) is still named, as locally, and counted once (it was counted once
    per worker; now the client's plan skips it, and no worker opens it)."""
    bad = tmp_path / "bad.root"
    bad.write_bytes((ROOT / "data" / "qcd_dijet.root").read_bytes()[:20000])  # cut short: no tree to read
    files = f"data/qcd_dijet.root, {bad}, {ROOT / 'data' / 'qcd_dijet.root'}"
    both = [run(config(write_config, tmp_path, address, name, files, "", "", "source.allowDuplicateFiles=true",
                       "source.skipBadFiles=true")) for address, name in ((None, "local"), (cluster, "dask"))]
    assert [outcome.code for outcome, _ in both] == [0, 0], both[1][0].result.summary.failure
    ls, ds = (outcome.result.summary for outcome, _ in both)
    assert list(ls.source["files_read"].items()) == [(f.strip(), 300) for f in files.split(",") if "bad" not in f]
    assert list(ls.source["bad_entries_per_file"]) == [str(bad)]
    assert ds.source["bad_files"] == ls.source["bad_files"] == 1  # was 1 per worker that read a unit
    for key in ("files_read", "lumis_per_file", "bad_entries_per_file"):
        assert list(ds.source[key].items()) == list(ls.source[key].items()), key


def test_dask_equals_local(cluster, write_config, tmp_path):
    # kills: events indexed per unit instead of job-wide (output order), parts assembled out of order,
    # counters summed twice (cumulative module summaries), units ignoring skipEvents/maxEvents
    local, _ = run(config(write_config, tmp_path, None, "local"))
    dask_cfg = config(write_config, tmp_path, cluster, "dask")
    dask, services = run(dask_cfg)
    assert local.code == dask.code == 0, dask.result.summary.failure
    ls, ds = local.result.summary, dask.result.summary
    assert trig_report(ls) == trig_report(ds)
    assert (ds.events_read, ds.events_processed, ds.events_skipped) == (600, 600, 2200)
    assert ds.executor["units"] == 8 == ds.executor["units_done"]  # 300/75 -> 4 units per file
    assert ds.module_summaries["out"]["events_written"] == ls.module_summaries["out"]["events_written"] == 600
    assert ds.source["read"] == 600 and ds.source["files"] == 2
    # the inputs as configured and in input order, as locally: the workers count under the absolute paths the
    # client sends them, which hltrun.json's files_read / lumis_per_file and the -j report's PFNs named
    for key in ("files_read", "lumis_per_file", "bad_entries_per_file"):
        assert list(ds.source[key].items()) == list(ls.source[key].items()), key
    assert list(ls.source["files_read"]) == [f.strip() for f in FILES.split(",")]
    from hltrun.framework.report.jobreport_xml import gather, render

    pfns = [[el.findtext("PFN") for el in ET.fromstring(render(gather(x, 0, None))).iter("InputFile")]
            for x in (ls, ds)]
    assert pfns[0] == pfns[1] == [f.strip() for f in FILES.split(",")]
    assert ds.facts == ls.facts and ds.facts["cuts"]  # the job's cut, not the sum of 8 units' (merge rule)
    # every data-quality counter a local run reports, zeros included (the JobReport's 'data quality' lines
    # and hltrun.json: a Dask run dropped the modules whose counters were all 0)
    assert ds.data_quality == ls.data_quality and ls.data_quality["source"] == \
        {"invalid_links": 0, "jets_without_constituents": 0, "jets_with_nonfinite_pt": 0}
    assert_same_file(tmp_path / "local.root", tmp_path / "dask.root")
    assert not list(tmp_path.glob("dask.root.*"))  # parts removed, nothing half-written left
    timing = services[0].result(ds)
    assert timing["events"] == 600 and sorted(timing["per_event"]["index"]) == list(range(600))
    assert {m["label"]: m["calls"] for m in timing["modules"]} == \
        {m["label"]: m["calls"] for m in report_services(dask_cfg, local.result)[0].result(ls)["modules"]}
    # the 2 workers' streams ran side by side: CPU / (loop x 2 threads), and the idle identity holds unclamped
    loop = timing["loop"]
    cpu_ms, events_ms = loop["cpu_per_event_ms"] * 600, loop["sum_streams_real_per_event_ms"] * 600
    assert loop["efficiency_cpu_real_per_thread"] == pytest.approx(cpu_ms / (loop["real_ms"] * 2))
    assert loop["idle_real_ms"] == pytest.approx(2 * loop["real_ms"] - events_ms - loop["source_bulk_real_ms"])
    assert loop["idle_real_ms"] > 0
    assert timing["streams_side_by_side"] == 2  # and the BudgetReport says so, not "on 1 stream(s)"
    assert "600 events on 2 stream(s)" in budget_report(timing)
    assert len(ds.workers) == 2 and sum(w["events"] for w in ds.workers.values()) == 600
    assert all(w["begin_job_s"] > 0 for w in ds.workers.values())  # models loaded once per worker
    assert sum(w["units"] for w in ds.workers.values()) == ds.executor["units"]
    text = text_report(ds, services)
    assert "JobReport  worker tcp://" in text and "dashboard http" in text
    jsonschema = pytest.importorskip("jsonschema")
    for path in write_report_files(tmp_path / "reports", ds, services):
        if path.name == "hltrun.json":
            jsonschema.validate(json.loads(path.read_text()), json.loads(SCHEMA.read_text()),
                                cls=jsonschema.Draft202012Validator)


def test_killed_worker_unit_is_rerun(cluster, write_config, tmp_path):
    # kills: a lost unit not re-run (missing events), a re-run appended twice (duplicates), the retry
    # not reported; marker makes the module fire only once
    marker = tmp_path / "killed.marker"
    extra = f"killer: {{type: TestKillOnce, marker: '{marker}', run: 1, event: 2300}}"
    local, _ = run(config(write_config, tmp_path, None, "local"))
    dask, _ = run(config(write_config, tmp_path, cluster, "dask", FILES, extra, ", killer"))
    assert marker.exists(), "the test module did not fire"
    s = dask.result.summary
    assert dask.code == 0, s.failure
    assert s.events_processed == local.result.summary.events_processed == 600
    assert trig_report(local.result.summary).splitlines()[:8] == trig_report(s).splitlines()[:8]
    assert_same_file(tmp_path / "local.root", tmp_path / "dask.root")
    assert len(s.retried_units) == 1
    retried = s.retried_units[0]
    assert retried["start"] <= 2299 < retried["stop"] and "qcd_dijet.root" in retried["file"]
    assert "lost while running it" in retried["reason"]
    assert "was re-run" in text_report(s, [])


def _multi_basket_copy(src: Path, dst: Path, basket: int = 500) -> Path:
    """``src`` rewritten (LZMA, as the shipped files) with one basket per ``basket`` entries."""
    from hltrun.modules.rootio import write_nanoaod

    arrays = uproot.open(src)["Events"].arrays(library="ak")
    with uproot.recreate(dst, compression=uproot.LZMA(9)) as f:
        for start in range(0, len(arrays), basket):
            a = arrays[start:start + basket]
            write_nanoaod(f, "Events", {
                "run": a["run"].to_numpy(), "luminosityBlock": a["luminosityBlock"].to_numpy(),
                "event": a["event"].to_numpy(),
                "FatJet": ak.zip({k: a[f"FatJet_{k}"] for k in ("pt", "eta", "phi", "mass", "nConstituents")}),
                "FatJetPFCand": ak.zip({k: a[f"FatJetPFCand_{k}"] for k in ("pt", "eta", "phi")})})
    return dst


def test_corrupt_file_unit_stops_job_naming_it(cluster, write_config, tmp_path):
    # kills: a failed unit swallowed (exit 0 with fewer events), a partial output left behind
    bad = _multi_basket_copy(ROOT / "data" / "qcd_dijet.root", tmp_path / "corrupt.root", basket=50)
    branch = uproot.open(bad)["Events"]["FatJetPFCand_pt"]
    seek = int(branch.member("fBasketSeek")[1])  # entries 50-99: begin_job checks only the first 50 and the last
    with open(bad, "r+b") as fh:  # the header and tree stay readable: the unit, not the plan, fails
        fh.seek(seek + 100)
        fh.write(b"\0" * 200)
    dask, _ = run(config(write_config, tmp_path, cluster, "dask", f"data/rsg_ww_3p5TeV.root, {bad}", "", "",
                         "options.skipEvents=1000"))
    s = dask.result.summary
    assert dask.code == 3
    assert "unit " in s.failure and str(bad) in s.failure and "lzma" in s.failure.lower()
    # the job report's FrameworkError as a local run's (8021 FileReadError), not 8001 OtherCMS: the
    # worker's error category came back as the exit code only
    from hltrun.framework.report.jobreport_xml import cmssw_error

    local, _ = run(config(write_config, tmp_path, None, "local", f"data/rsg_ww_3p5TeV.root, {bad}", "", "",
                          "options.skipEvents=1000"))
    assert local.code == 3 and cmssw_error(dask.code, dask.cause) == cmssw_error(local.code, local.cause) == \
        (8021, "FileReadError")
    assert "\n" not in s.failure
    assert not (tmp_path / "dask.root").exists()
    assert not list(tmp_path.glob("dask.root*"))


def _workers_idle(address: str) -> None:
    """Wait until no worker of the cluster runs a task (a hang guard of 120 s, not a timing)."""
    from distributed import Client

    with Client(address, timeout="20s") as client:
        deadline = time.monotonic() + 120
        while any(client.run(lambda dask_worker: len(dask_worker.state.executing)).values()):
            assert time.monotonic() < deadline, "a worker still runs a task after 120 s"
            time.sleep(0.05)


def test_a_unit_still_running_when_the_job_stops_leaves_no_part(cluster, write_config, tmp_path, caplog):
    # kills: parts removed while a cancelled unit still runs on a scheduler we do not own (Dask cannot
    # stop a running task): a unit that opened its part after the clean-up left it (dask.root.unit00006.part)
    import logging

    go = tmp_path / "go"

    class Release(logging.Handler):  # the executor says it waits for the running units: let them go on
        def emit(self, record: logging.LogRecord) -> None:
            if "still running" in record.getMessage():
                go.touch()

    cfg = write_config(f"""
        process: HOLD
        options: {{skipEvents: 2200, maxEvents: 150, executor: {{type: dask, eventsPerTask: 75, address: {cluster}}}}}
        source: {{type: RootJetSource, files: [data/qcd_dijet.root], chunk_size: 100}}
        modules:
          hold: {{type: TestWaitForFile, path: '{go}', unit_start: 2200}}
          bad: {{type: TestFailOn, run: 1, events: [2276]}}
          out: {{type: RootOutputModule, file: '{tmp_path / "dask.root"}'}}
        paths: {{p: [hold, bad]}}
        endpaths: {{o: [out]}}
        """)
    handler = Release()
    caplog.set_level(logging.INFO, logger="hltrun")
    logging.getLogger("hltrun").addHandler(handler)
    try:  # unit 0 (entries 2200-2275) waits for `go` before it begins; unit 1 fails on its first event
        dask, _ = run(load(cfg))
    finally:
        logging.getLogger("hltrun").removeHandler(handler)
    go.touch()  # without the wait, unit 0 begins now, after the clean-up ...
    _workers_idle(cluster)  # ... and has written its part once it is done
    assert dask.code == 4 and "bad event 2276" in dask.result.summary.failure
    assert not list(tmp_path.glob("dask.root*"))



def test_a_stopped_job_counts_no_event_written_in_its_dropped_output(cluster, write_config, tmp_path):
    """One unit fails on its 101st event after writing baskets of 3 rows to its part: the job stops and the
    output is never assembled, so the merged summary (hltrun.json, the -j job report) must count no event
    written. It counted the rows the unit had flushed (98), in a <File> that did not exist; a SIGTERM
    with --dask 2 on the shipped path counted the 1000 events of the four units done (a SIGINT now keeps
    them: test_a_graceful_signal_keeps_the_parts_of_the_units_done)."""
    from hltrun.framework.report.jobreport_xml import gather

    cfg = write_config(f"""
        process: DROP
        options: {{skipEvents: 2200, maxEvents: 150, executor: {{type: dask, eventsPerTask: 1000, address: {cluster}}}}}
        source: {{type: RootJetSource, files: [data/qcd_dijet.root], chunk_size: 100}}
        modules:
          bad: {{type: TestFailOn, run: 1, events: [2301]}}
          out: {{type: RootOutputModule, file: '{tmp_path / "dask.root"}', basket_events: 3}}
        paths: {{p: [bad]}}
        endpaths: {{o: [out]}}
        """)
    dask, _ = run(load(cfg))
    s = dask.result.summary
    assert dask.code == 4 and "bad event 2301" in s.failure and s.events_processed == 101
    assert not list(tmp_path.glob("dask.root*"))
    assert (s.module_summaries["out"]["events_written"], s.module_summaries["out"]["lumis_written"]) == (0, {})
    assert gather(s, dask.code, dask.cause).outputs == []

def test_cli_local_cluster(tmp_path, write_config, capsys):
    # kills: --dask not wired to the executor; no LocalCluster when no address is given
    from hltrun.framework.cli import main

    cfg = write_config(PATH.format(type="local", address="null", files="data/rsg_ww_1p5TeV.root", out=tmp_path / "o.root",
                                   extra="", endpath=""))
    code = main([str(cfg), "--dask", "2", "-q", "-n", "400", "options.skipEvents=0",
                 "options.executor.eventsPerTask=100"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Dask on LocalCluster: 4/4 work units" in out
    assert uproot.open(tmp_path / "o.root")["Events"].num_entries == 400


def test_missing_extra_names_the_install_command(monkeypatch, write_config, tmp_path, capsys):
    # kills: an ImportError traceback instead of one line naming pip install -e ".[dist]"
    from hltrun.framework.cli import main

    monkeypatch.setitem(sys.modules, "distributed", None)
    cfg = write_config(PATH.format(type="local", address="null", files="data/rsg_ww_1p5TeV.root", out=tmp_path / "o.root",
                                   extra="", endpath=""))
    assert main([str(cfg), "options.executor.type=dask"]) == 2
    err = capsys.readouterr().err
    assert 'pip install -e ".[dist]"' in err and len(err.strip().splitlines()) == 1


class _Lines:
    """A pipe's lines, read by a thread: a pipe read has no timeout, a wait for a line here has."""

    def __init__(self, pipe) -> None:  # noqa: ANN001
        import threading

        self.lines: list[str] = []
        self.ended = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe) -> None:  # noqa: ANN001
        for line in iter(pipe.readline, ""):
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self.ended = True
            self._cond.notify_all()

    def wait_for(self, prefix: str, timeout_s: float) -> None:
        """Until a line starts with ``prefix``; fail at the end of the pipe or after ``timeout_s``."""
        def seen() -> bool:
            return self.ended or any(x.startswith(prefix) for x in self.lines)

        with self._cond:
            found = self._cond.wait_for(seen, timeout_s) and any(x.startswith(prefix) for x in self.lines)
        assert found, f"no line starting {prefix!r} ({'end of output' if self.ended else 'hang guard'}): " \
                      f"{self.lines[-5:]}"

    def text(self, timeout_s: float = 30) -> str:
        self._thread.join(timeout_s)
        return "".join(self.lines)


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C", "SIGUSR2"])
def test_signal_stops_the_cluster(tmp_path, write_config, how):
    # kills: SIGTERM ignored by the Dask wait loop (job runs to the end), workers left running, parts left,
    # Ctrl-C (SIGINT to the whole process group, as a terminal sends it) printing worker tracebacks; SIGUSR2
    # to the whole group (as `scancel --signal=USR2` sends it) killed the workers, whose resource tracker
    # printed KeyError tracebacks
    import signal
    import subprocess

    psutil = pytest.importorskip("psutil")
    cfg = write_config(PATH.format(type="dask", address="null", files="data/rsg_ww_1p5TeV.root",
                                   out=tmp_path / "o.root", extra="slow: {type: TestSleep, sleep_ms: 20}",
                                   endpath=", slow"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    boot = "import sys, tests.plugins; from hltrun.framework.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", boot, str(cfg), "options.skipEvents=0", "-n", "1500",
                             "options.executor.eventsPerTask=100", "--report-dir", str(tmp_path / "rep")], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    out, err = _Lines(proc.stdout), _Lines(proc.stderr)
    try:
        err.wait_for("hltrun: Dask:", 120)  # the units are submitted
        time.sleep(1.5)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "no worker processes"
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT if how == "Ctrl-C" else signal.SIGUSR2)
        proc.wait(timeout=60)
    finally:  # its own session: nothing else would stop it (or its workers) after a failure here
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    out, err = out.text(), err.text()
    sig = {"SIGTERM": signal.SIGTERM, "Ctrl-C": signal.SIGINT, "SIGUSR2": signal.SIGUSR2}[how]
    assert proc.returncode == 128 + sig, err
    import re

    done, units = map(int, re.search(r"Dask on LocalCluster: (\d+)/(\d+) work units", out).groups())
    assert units == 15 and done < units  # stopped, not run to the end (1500 events x 20 ms: ~15 s of work)
    assert ("interrupted" if how == "Ctrl-C" else f"stopped by {how}") in err and "Traceback" not in err, err
    assert "stopped on an error" not in err, err  # a signal is no error
    doc = json.loads((tmp_path / "rep" / "hltrun.json").read_text())
    assert doc["job"]["stopped_by_signal"] == signal.Signals(sig).name
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"worker processes still running: {alive}"
    assert not list(tmp_path.glob("o.root.*"))  # no part left, of the units done nor of those stopped
    written = doc["job"]["module_summaries"].get("out", {}).get("events_written", 0)
    if how == "SIGTERM" or not done:  # SIGTERM drops the output (framework/interrupt.py); no unit done: no part
        assert not (tmp_path / "o.root").exists() and written == 0
    else:  # SIGINT, SIGUSR2: cmsRun's graceful stop: the units done are kept, 100 events each (no select_events)
        assert uproot.open(tmp_path / "o.root")["Events"].num_entries == written == 100 * done


def test_our_cluster_prints_dask_tracebacks_only_with_debug(write_config, tmp_path):
    # kills: the LocalCluster's workers logging at ERROR: a worker that lost the scheduler while the
    # cluster stopped on SIGTERM printed a heartbeat traceback on a busy machine (seen once in the suite)
    import logging

    from hltrun.framework.executors.dask_executor import _close, _connect

    cfg = config(write_config, tmp_path, None, "dask", FILES, "", "", "options.executor.workers=1")
    hltrun_log = logging.getLogger("hltrun")
    before = hltrun_log.level
    levels = {}
    try:
        for ours in (logging.INFO, logging.DEBUG):  # hltrun, and hltrun --debug
            hltrun_log.setLevel(ours)
            client, cluster = _connect(cfg)
            try:
                levels[ours] = set(client.run(
                    lambda: logging.getLogger("distributed.worker").getEffectiveLevel()).values())
            finally:
                _close(client, cluster)
    finally:
        hltrun_log.setLevel(before)
    assert levels == {logging.INFO: {logging.CRITICAL}, logging.DEBUG: {logging.ERROR}}


@pytest.mark.parametrize("continue_on", ["[StdException]", "[]"])
def test_module_errors_follow_try_to_continue(cluster, write_config, tmp_path, continue_on):
    # kills: TryToContinue not honoured inside units (job stops), stop not cancelling / wrong exit code
    extra = "bad: {type: TestFailOn, run: 1, events: [2222, 2301, 2499]}"
    args = (FILES, extra, ", bad", f"options.TryToContinue={continue_on}")
    local, _ = run(config(write_config, tmp_path, None, "local", *args))
    dask, _ = run(config(write_config, tmp_path, cluster, "dask", *args))
    if continue_on != "[]":
        assert local.code == dask.code == 0
        assert trig_report(local.result.summary) == trig_report(dask.result.summary)
        assert dask.result.summary.modules["bad"].error == 3
        assert_same_file(tmp_path / "local.root", tmp_path / "dask.root")
    else:
        assert local.code == dask.code == 4
        failure = dask.result.summary.failure
        assert failure.startswith("unit ") and "bad event" in failure and "qcd_dijet.root" in failure
        assert not list(tmp_path.glob("dask.root*"))


def test_threads_per_worker_each_thread_has_its_own_process(write_config, tmp_path):
    # kills: one Process shared by two Dask threads (interleaved units corrupt counters/outputs),
    # threads_per_worker not passed to the LocalCluster
    local, _ = run(config(write_config, tmp_path, None, "local"))
    cfg = config(write_config, tmp_path, None, "dask", FILES, "", "", "options.executor.workers=1",
                 "options.executor.threadsPerWorker=2")
    dask, _ = run(cfg)
    s = dask.result.summary
    assert dask.code == 0, s.failure
    assert list(s.executor["threads"].values()) == [2]
    assert trig_report(local.result.summary) == trig_report(s)
    assert_same_file(tmp_path / "local.root", tmp_path / "dask.root")


LUMIS = """
process: LUMI
options:
  executor: {{type: {type}, eventsPerTask: 4, address: {address}}}
source: {{type: RootJetSource, files: ["{a}", "{b}"], duplicateCheckMode: noDuplicateCheck, chunk_size: 5}}
modules:
  third: {{type: TestEventNumberFilter, divisor: 3}}
  out: {{type: RootOutputModule, file: "{out}", select_events: [p]}}
paths: {{p: [third]}}
endpaths: {{e: [out]}}
"""


def test_dask_runs_and_lumis_equal_local(cluster, write_config, tmp_path, lumi_file):
    # kills: parts' LuminosityBlocks/Runs trees concatenated (a lumi split across units twice), lumis of
    # the job report taken from one unit, cumulative lumi counters summed twice across a worker's units
    from hltrun.framework.report.jobreport_xml import gather, render

    second = tmp_path / "second.root"  # a lumi section spans both files; units of 4 split the others
    second.write_bytes(lumi_file.read_bytes())
    reports, trees = {}, {}
    for name, address in (("local", None), ("dask", cluster)):
        out = tmp_path / f"{name}.root"
        cfg = load(write_config(LUMIS.format(type="local" if address is None else "dask", address=address or "null",
                                             a=lumi_file, b=second, out=out), f"{name}.yaml"), [])
        outcome, _ = run(cfg)
        assert outcome.code == 0, outcome.result.summary.failure
        xml = render(gather(outcome.result.summary, 0, None))
        root = ET.fromstring(xml)
        reports[name] = [(el.tag, el.findtext("PFN") if el.tag == "InputFile" else "out", ET.tostring(el.find("Runs")))
                         for el in root if el.tag in ("InputFile", "File")]
        f = uproot.open(out)
        trees[name] = {t: {k: v.tolist() for k, v in f[t].arrays(library="np").items()}
                       for t in ("LuminosityBlocks", "Runs")}
    assert reports["dask"] == reports["local"]
    assert trees["dask"] == trees["local"]
    lumis = trees["local"]["LuminosityBlocks"]
    assert len(lumis["run"]) == len(set(zip(lumis["run"], lumis["luminosityBlock"]))) == 5  # one row each
    assert sum(lumis["eventsProcessed"]) == 50 and sum(trees["local"]["Runs"]["eventsProcessed"]) == 50
    assert b'NEvents="0"' in reports["local"][-1][2]  # lumi (1, 3): processed, nothing written


def test_lumis_written_are_in_lumi_order_as_locally(cluster, write_config, tmp_path, lumi_file):
    """The first unit (lumi 1:1, 7 events) sleeps, so the other units' results reach the client first: the
    output's ``lumis_written`` in hltrun.json followed the order units finished (1:2, 1:3, ... 1:1), where the
    local run lists them in lumi order. The same events give the same hltrun.json: sorted where units merge."""
    text = LUMIS.replace("eventsPerTask: 4", "eventsPerTask: 7").replace(
        "paths: {{p: [third]}}", "  slow: {{type: TestSleep, sleep_ms: 300, lumi: '1:1'}}\npaths: {{p: [slow, third]}}")
    second = tmp_path / "second.root"  # lumi 1:1 opens both files: their first units sleep
    second.write_bytes(lumi_file.read_bytes())
    written = {}
    for name, address in (("local", None), ("dask", cluster)):
        cfg = load(write_config(text.format(type="local" if address is None else "dask", address=address or "null",
                                            a=lumi_file, b=second, out=tmp_path / f"{name}.root"), f"{name}.yaml"), [])
        outcome, _ = run(cfg)
        assert outcome.code == 0, outcome.result.summary.failure
        written[name] = list(outcome.result.summary.module_summaries["out"]["lumis_written"].items())
    assert written["dask"] == written["local"]
    assert [k for k, _ in written["local"]] == ["1:1", "1:2", "1:3", "2:7", "2:8"]


def test_menu_rates_dask_equal_local(cluster, tmp_path):
    # kills: seeds smeared per work unit or per chunk instead of per event, rate patterns or seed
    # counters not merged (or merged twice) across units, overlaps filled per unit
    menu = ROOT / "configs" / "menu.yaml"
    common = ["options.skipEvents=2300", "options.maxEvents=400",  # units cross the QCD/RS-graviton boundary
              "modules.convVAE.backend=onnxruntime", "modules.gcnVAE.backend=onnxruntime",
              # thresholds where the samples' jets are: the smearing decides (the shipped seeds take every event)
              "modules.hltL1sJetOrHTT.expression=L1_SingleJet600 OR L1_HTT1300"]
    local, local_services = run(load(menu, [*common, f"modules.out.file={tmp_path / 'local.root'}"]))
    dask, dask_services = run(load(menu, [*common, f"modules.out.file={tmp_path / 'dask.root'}", "source.chunk_size=64",
                                          "options.executor.type=dask", f"options.executor.address={cluster}",
                                          "options.executor.eventsPerTask=100"]))
    assert local.code == dask.code == 0, dask.result.summary.failure
    ls, ds = local.result.summary, dask.result.summary
    assert ds.executor["units"] == 4 == ds.executor["units_done"]

    def rates(services, summary):
        return next(s for s in services if type(s).__name__ == "TriggerRates").json_report(summary)

    lr, dr = rates(local_services, ls), rates(dask_services, ds)
    assert lr["events"] == 400 and 0 < lr["total"]["accepted"] < 400
    assert dr["paths"] == lr["paths"]  # rate, error and unique rate of every path
    assert dr["overlap_events"] == lr["overlap_events"] and dr["total"] == lr["total"]
    assert dr["per_lumi"] == lr["per_lumi"]
    seed = ls.module_summaries["hltL1sJetOrHTT"]
    assert 0 < seed["fired:L1_SingleJet600"] < 400 and 0 < seed["fired:L1_HTT1300"] < 400
    for label in ("hltL1sSingleJet180", "hltL1sHTT360", "hltL1sJetOrHTT", "hltPrePFHT1050"):
        assert ds.module_summaries[label] == ls.module_summaries[label]
    from hltrun.modules.root_output import read_process, read_provenance

    # the assembled parts name the process as a local output does (hltdiff -O/-N), and what made the bits
    assert read_process(tmp_path / "dask.root") == read_process(tmp_path / "local.root") == "HLTMENU"
    local, dask = read_provenance(tmp_path / "local.root"), read_provenance(tmp_path / "dask.root")
    assert dask["cuts"] == local["cuts"] and dask["cuts"]  # the menu's filters' cuts, as resolved
    assert dask["accelerators"].keys() == local["accelerators"].keys()


def test_a_unit_whose_worker_died_too_often_is_a_documented_exit_code():
    """A lost worker with no retries left stopped the job with exit 1, which the README does not list."""
    from distributed.scheduler import KilledWorker

    from hltrun.framework.executors import dask_executor

    class Lost:
        def result(self):
            raise KilledWorker("unit-0", "tcp://127.0.0.1:1", 0)

        def done(self):
            return True

    class Client:
        def cancel(self, futures):
            pass

    lost = Lost()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("distributed.as_completed", lambda futures: iter(futures))
        message, code, _ = dask_executor._collect(Client(), {lost: "unit 0 (entries 0-99)"}, None, None, retries=0)
    assert code == 4 and "its worker died 1 time(s)" in message


@pytest.mark.parametrize("collision", ["input", "job report", "report folder", "job report over the input",
                                       "job report over the model"])
def test_an_output_over_the_jobs_own_files_is_refused_before_any_unit(collision, cluster, write_config, tmp_path,
                                                                      capsys):
    """A Dask run's client built no Process, so nothing compared its outputs with its inputs or with each
    other (a local run refuses them, exit 4): ``modules.out.file=<the input>`` replaced the input, ``-j``
    or a report folder file named as the output replaced the output, exit 0. Refused before any unit runs.
    ``-j`` over the input was refused only after every unit had run, and ``-j`` over the model (which the
    client never read) replaced the model with the XML report, exit 0."""
    from hltrun.framework.cli import main

    source = tmp_path / "in.root"
    source.write_bytes((ROOT / "data" / "rsg_ww_1p5TeV.root").read_bytes())
    for name in ("conv_vae.onnx", "thresholds.json"):
        (tmp_path / name).write_bytes((ROOT / "data" / "models" / name).read_bytes())
    model = tmp_path / "conv_vae.onnx"
    out = tmp_path / "o.root"
    cfg = write_config(PATH.format(type="dask", address=cluster, files=source, out=out, extra="", endpath=""))
    argv = {"input": [f"modules.out.file={source}"], "job report": ["-j", str(out)],
            "report folder": ["--report-dir", str(tmp_path / "rep"),
                              f"modules.out.file={tmp_path / 'rep' / 'hltrun.json'}"],
            "job report over the input": ["-j", str(source)],
            "job report over the model": ["-j", str(model), f"modules.vae.model={model}"]}
    code = main([str(cfg), "-q", "-n", "100", "options.skipEvents=0", *argv[collision]])
    err = capsys.readouterr().err
    assert code == 4, err
    said = {"input": f"modules.out.file: {source} is an input file of this job ({source})",
            "job report": f"modules.out.file: {out} is also written by --job-report",
            "report folder": f"modules.out.file: {tmp_path / 'rep' / 'hltrun.json'} is also written by report folder "
                             "(--report-dir / options.reportDir)",
            "job report over the input": f"--job-report: {source} is an input file of this job ({source})",
            "job report over the model": f"--job-report: {model} is an input file of this job ({model})"}[collision]
    assert [line for line in err.splitlines() if "error" in line] == [f"hltrun: error: {said}; " + (
        "writing it would replace what the job reads: give the output another name" if "input file" in said
        else "two outputs of one job would overwrite each other: give each its own name")]
    assert source.read_bytes() == (ROOT / "data" / "rsg_ww_1p5TeV.root").read_bytes()
    assert model.read_bytes() == (ROOT / "data" / "models" / "conv_vae.onnx").read_bytes()
    assert not out.exists() or collision == "job report"  # no unit ran (the refused -j is the output's name)
    assert "Dask on" not in capsys.readouterr().out and not list(tmp_path.glob("*.part"))


def test_units_that_ran_different_engines_are_all_recorded(cluster, write_config, tmp_path):
    """Each worker resolves ``backend: auto`` itself (another CPU, another cached decision: reproduced
    with a planted auto decision on one worker); the job's facts and the output's ``Provenance`` were the
    first unit's only, so a job that scored some units on tflite and some on onnxruntime said one engine.
    Now every variant is recorded, with its units, and one warning names it."""
    import logging

    from distributed import Client

    from hltrun.modules.root_output import read_provenance
    from hltrun.tools.hltdiff import provenance_notes

    def engine(value, dask_worker=None):  # noqa: ANN001 - runs on each worker
        os.environ.pop("HLTRUN_TEST_ENGINE", None) if value is None else os.environ.update(HLTRUN_TEST_ENGINE=value)

    class Lines(logging.Handler):  # on hltrun's logger itself: a CLI test before may have stopped its propagation
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.said: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.said.append(record.getMessage())

    extra = "probe: {type: TestRecordChoice}"
    cfg = config(write_config, tmp_path, cluster, "dask", FILES, extra, ", probe")
    lines = Lines()
    logging.getLogger("hltrun").addHandler(lines)
    with Client(cluster, timeout="20s") as client:
        workers = sorted(client.scheduler_info()["workers"])
        client.run(engine, "engine-b", workers=[workers[1]])
        try:
            dask, _ = run(cfg)
        finally:
            client.run(engine, None)
            logging.getLogger("hltrun").removeHandler(lines)
    s = dask.result.summary
    assert dask.code == 0, s.failure
    assert sorted(s.workers) == workers  # both workers ran units (2 idle workers, 8 units)
    variants = s.facts["variants"]
    assert [v["accelerators"]["probe"]["backend"] for v in variants] == ["engine-a", "engine-b"] or \
        [v["accelerators"]["probe"]["backend"] for v in variants] == ["engine-b", "engine-a"]
    by_engine = {v["accelerators"]["probe"]["backend"]: v for v in variants}
    assert by_engine["engine-b"]["workers"] == [workers[1]] and by_engine["engine-a"]["workers"] == [workers[0]]
    assert sorted(u for v in variants for u in v["units"]) == list(range(8))  # each unit once
    assert by_engine["engine-b"]["units"] and by_engine["engine-a"]["units"]
    assert s.facts["accelerators"] == variants[0]["accelerators"] and 0 in variants[0]["units"]  # unit 0's
    said = [line for line in lines.said if "did not all run the same way" in line]
    assert len(said) == 1 and "scorer 'probe' engine-" in said[0] and "\n" not in said[0]
    assert "the units did not all run the same way" in text_report(s, [])
    record = read_provenance(tmp_path / "dask.root")  # the output says it too, unit by unit
    assert [(v["accelerators"]["probe"]["backend"], v["units"]) for v in record["variants"]] == \
        [(v["accelerators"]["probe"]["backend"], v["units"]) for v in variants]
    assert any("units were not all made the same way" in line
               for line in provenance_notes([tmp_path / "dask.root"], [tmp_path / "dask.root"]))


def test_workers_in_another_folder_read_the_files_the_client_planned(cluster, write_config, tmp_path):
    """Units carried the input names as written: a worker started in another folder (``dask worker`` on
    another node, in its home) read ``data/...`` relative to its own folder, so the job stopped with
    "input file not found: data/qcd_dijet.root" (exit 3) for a file the client had just read, or read
    another file of that name. Units now carry the path the client checked."""
    from distributed import Client

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    local, _ = run(config(write_config, tmp_path, None, "local"))
    with Client(cluster, timeout="20s") as client:
        before = client.run(os.getcwd)
        client.run(os.chdir, str(elsewhere))
        try:
            dask, _ = run(config(write_config, tmp_path, cluster, "dask"))  # FILES: relative to the client's folder
        finally:
            for worker, folder in before.items():
                client.run(os.chdir, folder, workers=[worker])
    assert dask.code == 0, dask.result.summary.failure
    assert_same_file(tmp_path / "local.root", tmp_path / "dask.root")


def test_a_unit_whose_file_its_worker_cannot_read_names_the_worker(write_config, tmp_path):
    """A unit's file that the client read but its worker cannot (another file system, another mount point)
    stopped the job with the source's "input file not found" and nothing saying that the client had read
    it; it is not a bad file either (skipBadFiles must not skip it): one line naming the worker, exit 3."""
    from hltrun.framework.executors.worker import JobSpec, run_unit
    from hltrun.framework.units import WorkUnit

    spec = JobSpec.from_config(config(write_config, tmp_path, None, "dask", FILES, "", "", "source.skipBadFiles=true"))
    gone = tmp_path / "moved" / "qcd_dijet.root"
    status, (message, code, partial, category) = run_unit(spec, WorkUnit(3, str(gone), 0, 75, 225))
    assert (status, code, partial) == ("failed", 3, None)
    assert category == "FileOpenError"  # the job report's 8020, as a local run's missing input
    assert message.startswith(f"unit 3 ({gone} entries 0-75): input file {gone} not found on worker ")
    assert "the client read it" in message and "\n" not in message


def test_a_signal_while_the_parts_are_assembled_finishes_the_output_and_marks_the_job(cluster, write_config,
                                                                                     tmp_path, monkeypatch, capsys):
    """Ctrl-C once every unit was done, while the client assembled the output from its parts (a local job's
    end_job): it was raised at once, so the job ended with no report at all (exit 130); or, raised inside
    uproot's file destructor during the assembly, Python printed "Exception ignored … Traceback" and lost it
    (exit 0, nothing stopped). Now, as in a local end_job: the output written whole, every report written
    marked stopped by SIGINT with all events processed, exit 130."""
    import signal

    from hltrun.framework.cli import main
    from hltrun.modules.root_output import RootOutputModule

    assemble, sent = RootOutputModule.assemble.__func__, []

    def interrupted(cls, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        sent.append(signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # the handler runs here, on the main thread
        return assemble(cls, *args, **kwargs)

    monkeypatch.setattr(RootOutputModule, "assemble", classmethod(interrupted))
    out, rep = tmp_path / "o.root", tmp_path / "rep"
    cfg = write_config(PATH.format(type="dask", address=cluster, files=FILES, out=out, extra="", endpath=""))
    code = main([str(cfg), "-q", "-n", "150", "options.skipEvents=0", "--report-dir", str(rep)])
    err = capsys.readouterr().err
    assert sent and code == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "hltrun: error: interrupted by the user " \
        "(Ctrl-C, SIGINT)", err
    job = json.loads((rep / "hltrun.json").read_text())["job"]
    assert (job["stopped_by_signal"], job["events_processed"]) == ("SIGINT", 150)
    assert uproot.open(out)["Events"].num_entries == 150 and not list(tmp_path.glob("o.root.*"))


EMPTY = """
process: HLTAD
options:
  maxEvents: 600
  skipEvents: 2200          # units 0-3: QCD, none of whose jets passes the pT cut; units 4-7: the signal's
  accelerators: [cpu]
  executor: {{type: {type}, eventsPerTask: 75, address: {address}}}
source: {{type: RootJetSource, files: [{files}], chunk_size: 100}}
modules:
  pt: {{type: JetPtFilter, min_pt: 2150}}
  batcher: {{type: JetBatcher, src: source, max_jets: 2, relative: true}}
  vae: {{type: VAEAnomalyScorer, src: batcher, model: conv_vae, backend: onnxruntime}}
  never: {{type: AnomalyScoreFilter, src: vae, reduce: max, threshold: 1.0e9}}
  out: {{type: RootOutputModule, file: {out}, select_events: [p], keep: [vae]}}
paths:
  p: [pt, batcher, vae, never]
endpaths:
  e: [out]
"""


def test_an_output_with_no_selected_event_has_a_local_runs_branches(cluster, write_config, tmp_path):
    """No event selected; the QCD units (first) never made the kept 'vae', the signal's units did (an event
    past the pT cut, rejected by the score): each part without entries has the branches its unit could learn,
    and the assembled output took the first part's, ids and bits only, where a local run has vae's too."""
    outputs = {}
    for name, address in (("local", None), ("dask", cluster)):
        outputs[name] = tmp_path / f"{name}.root"
        text = EMPTY.format(type="local" if address is None else "dask", address=address or "null", files=FILES,
                            out=outputs[name])
        outcome, _ = run(load(write_config(text, f"{name}.yaml")))
        assert outcome.code == 0, outcome.result.summary.failure
    branches = {name: {k: v.typename for k, v in uproot.open(path)["Events"].items()}
                for name, path in outputs.items()}
    assert uproot.open(outputs["dask"])["Events"].num_entries == 0
    assert "vae_score" in branches["local"] and branches["dask"] == branches["local"]


@pytest.mark.parametrize("mode, skip, limit, duplicates", [("checkAllFilesOpened", 0, -1, 151),
                                                             ("checkAllFilesOpened", 20, 400, 150),
                                                             ("checkEachFile", 0, -1, 1)])
def test_duplicates_across_files_and_units_are_skipped_as_locally(cluster, write_config, tmp_path, mode, skip, limit,
                                                                  duplicates):
    """Overlapping files (b.root repeats a.root's last 150 events) and an event repeated in another unit of
    one file: each unit only looked for duplicates within itself, so Dask processed every copy (a run's
    decisions and outputs differ from the local run's). Now the client finds them over the job, in input
    order, and maxEvents counts processed events as locally (the units read on past the duplicates)."""
    from tests.conftest import make_events, write_counts

    a = make_events(300, seed=1)
    b = a[150:] + [dict(e, event=e["event"] + 5000) for e in make_events(200, seed=2)]
    b.append(b[160])  # the same event again, 190 entries (two units of 75) later
    files = f"{write_counts(tmp_path / 'a.root', a)}, {write_counts(tmp_path / 'b.root', b)}"
    overrides = (f"source.duplicateCheckMode={mode}", f"options.skipEvents={skip}", f"options.maxEvents={limit}")
    local, _ = run(config(write_config, tmp_path, None, "local", files, "", "", *overrides))
    dask, _ = run(config(write_config, tmp_path, cluster, "dask", files, "", "", *overrides))
    assert local.code == dask.code == 0, dask.result.summary.failure
    ls, ds = local.result.summary, dask.result.summary
    assert ls.events_duplicate == duplicates  # the files are what the test says they are
    assert (ds.events_read, ds.events_processed, ds.events_duplicate, ds.events_skipped) == \
        (ls.events_read, ls.events_processed, ls.events_duplicate, ls.events_skipped)
    assert trig_report(ls) == trig_report(ds)
    assert_same_file(tmp_path / "local.root", tmp_path / "dask.root")


def test_prescaler_summaries_per_factor_dask_as_local(cluster, tmp_path):
    # kills: the prescaler's setting merged from the first unit ('prescale: 3' where a local run said '0'),
    # per-factor counters not added over units (or counted twice: the worker's cumulative counters)
    from .test_prescale_columns import counts_per_factor, factors_menu, summary_per_factor

    config = factors_menu(tmp_path)
    local, _ = run(load(config))
    # 299-event units: a unit holds lumis of both columns, and each worker's counter starts off the grid of 3
    dask, services = run(load(config, ["options.executor.type=dask", f"options.executor.address={cluster}",
                                "options.executor.eventsPerTask=299", f"modules.out.file={tmp_path / 'dask.root'}"]))
    assert local.code == dask.code == 0
    ls, ds = local.result.summary, dask.result.summary
    assert ds.executor["units"] == 7
    expected = counts_per_factor(tmp_path / "dask.root")
    for label, path in (("preP", "HLT_P"), ("preQ", "HLT_Q"), ("preR", "HLT_R")):
        assert summary_per_factor(ds.module_summaries[label]) == expected[path], label
        assert ds.module_summaries[label]["prescale"] == ls.module_summaries[label]["prescale"]
    assert ds.module_summaries["preP"]["prescale"] == "3 in c1, 0 in c2"
    # the PrescaleReport: the columns the units ran in (merged), and that each worker counted on its own
    report = next(s for s in services if type(s).__name__ == "PrescaleService").json_report(ds)
    assert report["columns_ran"] == ["c1", "c2"] and report["events_vary_between_runs"]
    assert "Dask worker" in report["counting"]
    kept = {(p["label"], p["prescale"]): (p["events"], p["accepted"]) for p in report["prescalers"]}
    assert kept == {(f"pre{path[-1]}", factor): counts
                    for path, per in expected.items() for factor, counts in per.items()}


def test_a_lumi_mask_selects_on_workers_in_another_folder_as_locally(cluster, write_config, tmp_path, lumi_file,
                                                                      monkeypatch):
    """``source.lumiMask`` named relative to the client's folder: workers validate the configuration again, so
    they must read the file the client read (not ``golden.json`` in their own folder), select the same lumi
    sections, and record the same mask (hltrun.json's facts, one variant)."""
    from distributed import Client

    monkeypatch.chdir(tmp_path)
    (tmp_path / "golden.json").write_text('{"1": [[2, 3]],\n "2": [[8, 8]]}')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "golden.json").write_text('{"1": [[1, 1]]}')  # another mask of that name: must not be read
    outcomes = {}
    for name, address in (("local", None), ("dask", cluster)):
        text = LUMIS.format(type="local" if address is None else "dask", address=address or "null", a=lumi_file,
                            b=lumi_file, out=tmp_path / f"{name}.root").replace(
            "chunk_size: 5}", "chunk_size: 5, lumiMask: golden.json, allowDuplicateFiles: true}")
        cfg = load(write_config(text, f"{name}.yaml"), [])
        if address is None:
            outcomes[name], _ = run(cfg)
            continue
        with Client(cluster, timeout="20s") as client:
            before = client.run(os.getcwd)
            client.run(os.chdir, str(elsewhere))
            try:
                outcomes[name], _ = run(cfg)
            finally:
                for worker, folder in before.items():
                    client.run(os.chdir, folder, workers=[worker])
    local, dask = (outcomes[n].result.summary for n in ("local", "dask"))
    assert outcomes["dask"].code == 0, dask.failure
    assert dask.source["lumis_per_file"] == local.source["lumis_per_file"]
    assert set(local.source["lumis_per_file"][str(lumi_file)]) == {"1:2", "1:3", "2:8"}
    assert dask.facts["lumi_mask"] == local.facts["lumi_mask"] and "variants" not in dask.facts
    assert_same_file(tmp_path / "local.root", tmp_path / "dask.root")


def test_a_workers_memoryreport_endjob_line_gives_its_memory_not_zero(write_config, tmp_path):
    """A Dask worker's Process runs unit after unit and never ends its job, so SimpleMemoryCheck's end-of-job
    reading was never taken: every worker's ``MemoryReport> EndJob`` line said ``virtual size 0 Mbytes, RSS 0
    Mbytes`` (seen on a 210k-event, 2-worker run). It is now the worker's memory when its unit ended."""
    from hltrun.framework.executors.worker import JobSpec, run_unit
    from hltrun.framework.services.memory_cmssw import report_lines
    from hltrun.framework.units import WorkUnit

    spec = JobSpec.from_config(config(write_config, tmp_path, None, "dask"))
    status, result = run_unit(spec, WorkUnit(0, str(ROOT / "data" / "qcd_dijet.root"), 0, 75, 0))
    assert status == "ok"
    (state,) = result.services["Memory"].cmssw.values()
    assert state.count == 75 and state.end.vsize > state.end.rss > 10  # MB: a Python process with a model loaded
    assert report_lines(state)[0].startswith("MemoryReport> EndJob: virtual size ")
    assert "virtual size 0 Mbytes" not in report_lines(state)[0]


MEMORY = """
process: MEM
options:
  maxEvents: {max_events}
  executor: {{type: {type}, eventsPerTask: {per_task}, address: {address}}}
source: {{type: RootJetSource, files: ["{file}"], chunk_size: {per_task}}}
modules:
  leaker: {{type: TestLeakOnFirstUnit, kb_per_event: {kb}}}
paths: {{p: [leaker]}}
services:
  Memory: {{leak_warmup: 20, leak_threshold_kb: {threshold}, per_module: false}}
"""


def _memory_job(write_config, address, name: str, file: Path, per_task: int, kb: int = 0, max_events: int = -1,
                threshold_kb: int = 1024):
    text = MEMORY.format(type="local" if name == "local" else "dask", address=address or "null", file=file,
                         per_task=per_task, kb=kb, max_events=max_events, threshold=threshold_kb)
    outcome, services = run(load(write_config(text, f"{name}.yaml"), []))
    assert outcome.code == 0, outcome.result.summary.failure
    (memory,) = services
    return outcome.result, memory


def test_a_dask_jobs_rss_series_is_as_bounded_as_a_local_jobs(cluster, write_config, tmp_path):
    """A merged series kept up to options.executor.maxTimingRows (200,000) RSS points: a 210,000-event
    2-worker job's hltrun.json was 1.6 MB against 165 kB locally (~6,500 points). Merged, the units' series
    are now thinned together to bounded.ROWS_KEPT, evenly along the job, as a local job's is."""
    from hltrun.framework.services.bounded import ROWS_KEPT
    from hltrun.tools.physics.make_large_sample import make

    n = ROWS_KEPT + 2000  # past what one local job keeps unthinned: its series is thinned once
    big = tmp_path / "big.root"
    make([ROOT / "data" / "qcd_dijet.root"], n, big)
    _, local = _memory_job(write_config, None, "local", big, 1000)
    result, dask = _memory_job(write_config, cluster, "dask", big, 1000)
    assert len(result.summary.workers) >= 1 and dask.results()["events"] == local.results()["events"] == n
    local_rss, dask_rss = local.json_report(result.summary)["rss_per_event_mb"], \
        dask.json_report(result.summary)["rss_per_event_mb"]
    assert ROWS_KEPT // 2 <= len(local_rss) <= ROWS_KEPT
    assert ROWS_KEPT // 4 <= len(dask_rss) <= ROWS_KEPT  # was n: every event of every unit
    index, stride = dask.rss_event_index(), dask.results()["rss_series_stride"]
    assert stride >= 2 and index[0] == 0 and index[-1] >= n - stride  # spans the whole job
    assert np.diff(index).max() < 2 * stride  # evenly: one sample in every bucket of `stride` events


@pytest.mark.parametrize("kb", [32, 0])
def test_a_leak_on_one_dask_worker_is_found_and_named(cluster, write_config, tmp_path, kb):
    """Samples of 2 worker processes mixed in one series gave no leak check at all ("RSS of 2 worker
    processes: one slope per process is not measured"). Each worker's own slope is now fitted: the worker
    that ran the job's first unit keeps 32 kB per event from then on and is flagged, by name; the other is
    not, and a job without the leak flags none. The threshold is 8 MB per 1000 events: a clean worker's
    first 600 events read a chunk per unit of 100 (+5 MB steps) and grow their arenas, up to ~1 MB per
    1000 events (measured): 8 times below it, and the leak's 32 MB per 1000 events 4 times above."""
    result, memory = _memory_job(write_config, cluster, "dask", ROOT / "data" / "qcd_dijet.root", 100, kb, 1200,
                                 threshold_kb=8192)
    leak, text = memory.results()["leak"], memory.text_report(result.summary)
    assert leak["slope_kb_per_1000"] is not None and "not measured" not in text
    measured = {w["worker"]: w for w in leak["workers"]}
    assert set(measured) <= set(result.summary.workers) and len(measured) >= 1
    if kb:
        first = leak["worker"]  # the steepest: the worker that ran event 0, which it alone leaks from
        assert 0 in result.services["Memory"].series[first][:, 0]
        assert leak["flagged"] and leak["slope_kb_per_1000"] > 0.5 * kb * 1000
        assert all(not w["flagged"] for name, w in measured.items() if name != first)
        line = next(line for line in text.splitlines() if "RSS slope" in line)
        assert "POSSIBLE LEAK" in line and (len(measured) == 1 or f"steepest on worker {first}" in line)
    else:
        assert not leak["flagged"] and not any(w["flagged"] for w in measured.values())
        assert "below the 8192 kB threshold" in text


def _split(src: Path, folder: Path, per_file: int, files: int) -> list[Path]:
    """The first ``files`` x ``per_file`` entries of a shipped file, ``per_file`` to a file (the layout kept)."""
    from hltrun.modules.rootio import branch_groups, regroup, write_nanoaod

    tree = uproot.open(src)["Events"]
    layout = branch_groups(tree)
    out = []
    for i, arrays in enumerate(tree.iterate(step_size=per_file, entry_stop=per_file * files, library="ak")):
        out.append(folder / f"part{i:02d}.root")
        with uproot.recreate(out[-1]) as f:
            write_nanoaod(f, "Events", regroup(arrays, layout))
    return out


def _opened_by_client(monkeypatch) -> list[str]:
    """The files this process opens (the Dask client's plan: its file checks and duplicate search), by name."""
    from hltrun.modules import root_source

    opened: list[str] = []
    real = root_source.open_tree

    def counting(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        opened.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(root_source, "open_tree", counting)
    return opened


@pytest.mark.parametrize("skip, limit, again, opened", [(0, 50, False, 2), (40, 20, False, 3), (0, 50, True, 3)])
def test_a_dask_plan_opens_only_the_files_max_events_needs(cluster, write_config, tmp_path, monkeypatch, skip, limit,
                                                           again, opened):
    """The client counted every input's entries to plan the units: -n 50 over 13 files of 25 events opened
    all 13, and a corrupt file after the 2 it needs failed the job (exit 3), where a local job opens 2 and
    runs. Now the plan opens what skipEvents + maxEvents need, and ``files_not_opened`` says so as locally;
    a second file repeating the first (``again``: all duplicates, which maxEvents does not count) makes
    both read on into the next file."""
    parts = _split(ROOT / "data" / "qcd_dijet.root", tmp_path, 25, 12)
    if again:
        parts[1].write_bytes(parts[0].read_bytes())
    corrupt = tmp_path / "corrupt.root"
    corrupt.write_bytes(parts[5].read_bytes()[:3000])  # cut short: no tree to read
    files = ", ".join(map(str, [*parts[:5], corrupt, *parts[5:]]))
    overrides = (f"options.skipEvents={skip}", f"options.maxEvents={limit}")
    local, _ = run(config(write_config, tmp_path, None, "local", files, "", "", *overrides))
    client = _opened_by_client(monkeypatch)
    dask, _ = run(config(write_config, tmp_path, cluster, "dask", files, "", "", *overrides))
    assert local.code == dask.code == 0, dask.result.summary.failure  # was 3: the corrupt file, never needed
    assert set(client) == {p.name for p in parts[:opened]}  # was every file, the corrupt one too
    ls, ds = local.result.summary, dask.result.summary
    assert ds.source["files_not_opened"] == ls.source["files_not_opened"] == 13 - opened  # was 0
    for key in ("files", "entries_in_files", "skipped", "read", "duplicates"):
        assert ds.source[key] == ls.source[key], key
    assert (ds.events_processed, ds.events_duplicate) == (limit, 25 if again else 0)
    assert_same_file(tmp_path / "local.root", tmp_path / "dask.root")
    assert "files not opened" in text_report(ds, [])


def test_an_output_over_an_input_past_max_events_is_refused_as_locally(cluster, write_config, tmp_path, capsys):
    """An input past skipEvents + maxEvents is no unit's file: the client checked the outputs against the
    units' files only, so -n 50 on Dask replaced the job's last input with its output, exit 0 (a local job
    refuses it, exit 4)."""
    from hltrun.framework.cli import main

    parts = _split(ROOT / "data" / "qcd_dijet.root", tmp_path, 25, 4)
    kept = parts[-1].read_bytes()
    cfg = write_config(PATH.format(type="dask", address=cluster, files=", ".join(map(str, parts)), out=parts[-1],
                                   extra="", endpath=""))
    code = main([str(cfg), "-q", "-n", "50", "options.skipEvents=0"])
    err = capsys.readouterr().err
    assert code == 4, err
    assert f"hltrun: error: modules.out.file: {parts[-1]} is an input file of this job ({parts[-1]})" in err
    assert parts[-1].read_bytes() == kept


TIMING = """
process: HLTAD
options:
  maxEvents: {max_events}
  accelerators: [cpu]
  budgetMs: 0.05
  executor: {{type: {type}, eventsPerTask: 2000, address: {address}}}
source: {{type: RootJetSource, files: ["{file}"], chunk_size: 1000}}
modules:
  batcher: {{type: JetBatcher, src: source, max_jets: 2, relative: true}}
paths: {{p: [batcher]}}
services:
  Timing: {{per_event_json: {per_event}}}
"""


@pytest.mark.parametrize("events, per_event", [(22_000, "true"), (3000, "false")])
def test_a_dask_jobs_timing_is_as_bounded_as_a_local_jobs(cluster, write_config, tmp_path, events, per_event):
    """The units' per-event timing rows merged up to maxTimingRows (200,000): a 22,000-event Dask job of
    2000-event units kept all 22,000 rows, and its hltrun.json was 2.97 MB against 23 kB for the same job
    run locally (one stream: histograms past 10,000 events). Now it folds where the local job folds, and
    reports the same kind of figures from the same kind of data; per_event_json: false keeps per_event out."""
    from hltrun.framework.services.bounded import ROWS_KEPT
    from hltrun.tools.physics.make_large_sample import make

    big = tmp_path / "big.root"
    make([ROOT / "data" / "qcd_dijet.root", ROOT / "data" / "rsg_ww_3p5TeV.root"], 22_000, big)
    sizes, results = {}, {}
    for name, address in (("local", None), ("dask", cluster)):
        text = TIMING.format(type="local" if address is None else "dask", address=address or "null", file=big,
                             max_events=events, per_event=per_event)
        outcome, services = run(load(write_config(text, f"{name}.yaml"), []))
        assert outcome.code == 0, outcome.result.summary.failure
        summary = outcome.result.summary
        (path,) = [p for p in write_report_files(tmp_path / name, summary, services) if p.name == "hltrun.json"]
        sizes[name], results[name] = path.stat().st_size, json.loads(path.read_text())["services"]["Timing"]
    local, dask = results["local"], results["dask"]
    assert dask["events"] == local["events"] == events
    folded = events > ROWS_KEPT
    assert dask["rows"] == local["rows"] == {"kept": 0 if folded else events, "histogram": folded,
                                            "per_stream": ROWS_KEPT}  # was kept: 22,000 on Dask
    assert dask["per_event"] is local["per_event"] is None  # histograms, or per_event_json: false
    assert sizes["dask"] < 1.5 * sizes["local"]  # was 130 times larger
    assert [(m["label"], m["calls"], m["visits"]) for m in dask["modules"]] == \
        [(m["label"], m["calls"], m["visits"]) for m in local["modules"]]
    assert sum(dask["histograms"]["event_real"]["counts"]) + dask["histograms"]["event_real"]["overflow"] == events
    ev = dask["event"]["real"]  # exact totals: source + modules + overhead add up to the events' time
    parts = dask["source"]["real_ms"] + sum(m["real_ms"] for m in dask["modules"]) + dask["overhead"]["real_ms"]
    assert parts == pytest.approx(ev["mean"] * events, rel=1e-9)
    assert ev["min"] <= ev["median"] <= ev["p90"] <= ev["p99"] <= ev["max"]
    assert 0 <= dask["budget"]["over_budget_events"] <= events


def test_a_graceful_signal_keeps_the_parts_of_the_units_done(cluster, write_config, tmp_path, monkeypatch):
    """SIGUSR2 (cmsRun's graceful stop) once two units were done: the client dropped every part (no file,
    ``events_written: 0``). Now, as a local job keeps the events finished before the stop, the output is
    assembled from the units done, and only theirs (units still running are cancelled, their parts removed):
    the file holds exactly those units' events (this output keeps every event), by id with their trigger
    bits, and the summary, hltrun.json and the job report's <File> count them."""
    import signal

    from hltrun.framework.executors import dask_executor
    from hltrun.framework.report.jobreport_xml import gather
    from hltrun.framework.results import Merger

    done: list[int] = []

    class StopAfterTwo(Merger):
        def add(self, result) -> None:  # noqa: ANN001
            super().add(result)
            done.extend(p["unit"] for p in result.parts)
            if self.count == 2:
                os.kill(os.getpid(), signal.SIGUSR2)  # the handler runs on this (the main) thread, after the add

    local = config(write_config, tmp_path, None, "local")
    reference, _ = run(local)
    assert reference.code == 0
    cfg = config(write_config, tmp_path, cluster, "dask")
    monkeypatch.setattr(dask_executor, "Merger", StopAfterTwo)
    dask, _ = run(cfg)
    s = dask.result.summary
    assert dask.code == 128 + signal.SIGUSR2 and s.stopped_by_signal == "SIGUSR2", s.failure
    units = {u.index: u for u in dask_executor.plan(cfg)[0]}
    assert len(done) == 2 and s.executor["units_done"] == 2
    processed = set()
    for index in done:
        u = units[index]
        ids = uproot.open(u.file)["Events"].arrays(["run", "luminosityBlock", "event"], entry_start=u.start,
                                                  entry_stop=u.stop, library="np")
        processed |= set(zip(ids["run"].tolist(), ids["luminosityBlock"].tolist(), ids["event"].tolist()))
    assert s.events_read == s.events_processed == len(processed) == sum(units[i].events for i in done)
    ref = events(tmp_path / "local.root")
    keys = list(zip(ref["run"].tolist(), ref["luminosityBlock"].tolist(), ref["event"].tolist()))
    expected = [k for k in keys if k in processed]  # the output keeps every event processed (no select_events)
    kept = events(tmp_path / "dask.root")
    assert list(zip(kept["run"].tolist(), kept["luminosityBlock"].tolist(), kept["event"].tolist())) == expected
    bits = [bool(b) for k, b in zip(keys, ref["HLT_AnomalyDetection"].tolist()) if k in processed]
    assert kept["HLT_AnomalyDetection"].tolist() == bits
    path = s.paths["HLT_AnomalyDetection"]
    assert (path.executed, path.passed, path.failed, path.error) == (len(processed), sum(bits),
                                                                     len(processed) - sum(bits), 0)
    out = s.module_summaries["out"]
    assert out["committed"] and out["events_written"] == len(expected) == len(kept["event"])
    assert [(o.pfn, o.events_written) for o in gather(s, dask.code, dask.cause).outputs] == \
        [(str(tmp_path / "dask.root"), len(expected))]
    assert not list(tmp_path.glob("dask.root.*"))  # every part removed, those of the cancelled units too
    # the file says it holds the units done when the job stopped, as a local job's kept file says it; it looked
    # like a whole job's (hltdiff against one: "outputs agree", nothing said that the job was stopped)
    from hltrun.modules.root_output import read_provenance

    assert read_provenance(tmp_path / "dask.root")["stopped_by_signal"] == "SIGUSR2"
    assert "stopped_by_signal" not in read_provenance(tmp_path / "local.root")


def test_max_events_zero_with_a_lumi_selection_runs_as_locally(write_config, tmp_path):
    """``maxEvents: 0`` (a dry run: the configuration, the models, the destinations checked, no event) with
    ``lumisToProcess``: a local run does it; the Dask client refused it as it refuses any maxEvents with a lumi
    selection (exit 2), though no event is read and there is nothing to plan. Now there is no unit, so it runs
    as the local job does, with the same figures (no cluster is started)."""
    overrides = ("options.maxEvents=0", "source.lumisToProcess=['1:2-1:3']")
    both = [run(config(write_config, tmp_path, None, name, FILES, "", "", *overrides)) for name in ("local", "dask")]
    for outcome, _ in both:
        assert outcome.code == 0, outcome.result.summary.failure
    (local, _), (dask, _) = both
    for s in (local.result.summary, dask.result.summary):
        assert (s.events_read, s.events_processed) == (0, 0) and s.module_summaries["out"]["committed"]
    counted = ("files", "entries_in_files", "files_not_opened", "skipped", "read")
    assert {k: dask.result.summary.source[k] for k in counted} == {k: local.result.summary.source[k] for k in counted}


def test_a_graceful_signal_before_any_unit_is_done_says_the_output_was_not_written(cluster, write_config, tmp_path,
                                                                                    monkeypatch, caplog):
    """SIGUSR2 before the first unit came back: no unit done, so no file (the units still running are
    cancelled). Nothing said so: no line (a graceful stop is documented to keep the output) and no entry for
    the output in the job's module summaries (hltrun.json), where a local job says ``committed: false``. Now
    one warning names the file and the summary says nothing was written."""
    import signal

    from hltrun.framework.executors import dask_executor

    collect = dask_executor._collect

    def stop_first(*args, **kwargs):  # noqa: ANN002, ANN003
        os.kill(os.getpid(), signal.SIGUSR2)  # on the main thread: the handler raises it here, at once
        return collect(*args, **kwargs)

    monkeypatch.setattr(dask_executor, "_collect", stop_first)
    with caplog.at_level(logging.WARNING, logger="hltrun"):
        dask, _ = run(config(write_config, tmp_path, cluster, "dask"))
    s = dask.result.summary
    assert dask.code == 128 + signal.SIGUSR2 and s.stopped_by_signal == "SIGUSR2" and s.executor["units_done"] == 0
    out = s.module_summaries["out"]
    assert (out["committed"], out["events_written"], out["lumis_written"]) == (False, 0, {})
    assert not list(tmp_path.glob("dask.root*"))
    said = [r.getMessage() for r in caplog.records if "not written" in r.getMessage()]
    assert said == [f"output {tmp_path / 'dask.root'} not written: the job stopped (stopped by SIGUSR2 before any "
                    f"work unit was done)"], said


def test_the_part_of_a_unit_done_but_not_collected_is_removed_by_an_abort(tmp_path, write_config):
    """The abort's clean-up (framework/interrupt.py) knew a unit's part only once the client had collected the
    unit: a part a worker had written, its result not yet merged when the second signal came, stayed beside
    the output for ever (seen once in a full run of the test below). Every unit's part is the job's temporary
    from before the first unit runs."""
    from hltrun.framework import interrupt
    from hltrun.framework.executors import dask_executor

    cfg = load(write_config(PATH.format(type="dask", address="null", files="data/rsg_ww_1p5TeV.root",
                                        out=tmp_path / "o.root", extra="", endpath="")),
               ["options.skipEvents=0", "options.maxEvents=1200", "options.executor.eventsPerTask=100"])
    units = dask_executor.plan(cfg)[0]
    assert len(units) > 2
    written = [tmp_path / f"o.root.{u.tag}.part" for u in (units[0], units[-1])]  # done by workers, not collected
    for part in written:
        part.write_bytes(b"part")
    try:
        dask_executor._hold_parts(cfg, units)
        removed = interrupt.remove_temporaries()  # what the abort does
    finally:
        for part in dask_executor._held_parts(cfg, units):
            interrupt.forget_temporary(part)
    assert not [p for p in written if p.exists()] and set(written) <= set(removed)


def test_a_second_signal_after_a_graceful_one_leaves_no_part_of_the_units_done(tmp_path, write_config):
    """SIGUSR2, then Ctrl-C before the job ended: the second signal aborts at once, removing the job's
    temporaries (framework/interrupt.py); the parts of the units done were not among them, so
    ``o.root.unit00000.part`` files stayed beside the output for ever (no later job removes them: they are
    no writer-named temporary). The signals come from the client itself once two units were merged
    (``Merger.add`` holds signals, so both act when it returns: the abort path, exactly), on its own
    LocalCluster, whose workers end with it. A running unit's temporary may stay: it names its writer, and
    the next job writing into the folder removes it (framework/leftovers.py)."""
    import signal
    import subprocess

    cfg = write_config(PATH.format(type="dask", address="null", files="data/rsg_ww_1p5TeV.root",
                                   out=tmp_path / "o.root", extra="", endpath=""))
    boot = ("import os, signal, sys\n"
            "from hltrun.framework.executors import dask_executor\n"
            "from hltrun.framework.results import Merger\n"
            "from hltrun.framework.cli import main\n"
            "class TwoThenStop(Merger):\n"
            "    def add(self, result):\n"
            "        super().add(result)\n"
            "        if self.count == 2:\n"
            "            os.kill(os.getpid(), signal.SIGUSR2)\n"
            "            os.kill(os.getpid(), signal.SIGINT)\n"
            "dask_executor.Merger = TwoThenStop\n"
            "sys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", boot, str(cfg), "-q", "options.skipEvents=0", "-n", "1200",
                           "options.executor.eventsPerTask=100"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=HANG_S)
    assert done.returncode == 130 and "second signal, aborting" in done.stderr, done.stderr
    assert not (tmp_path / "o.root").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]  # the units done: 2 were left


def test_cpu_on_threads_no_stream_runs_is_measured_on_dask(cluster, write_config, tmp_path):
    """A worker with one thread runs one unit at a time, so the process's CPU over a unit is the unit's:
    the CPU on threads no stream runs (a module's pool here; the worker's own threads) is reported and paid
    by the farm's CPU projection, as locally. It was null on Dask: ~47 µs per event of the workers' CPU,
    12 % of it on the shipped path in units of 2000 events, in no figure (docs/performance.md, session 39)."""
    from hltrun.framework.report.timereport import farm_report

    burn_ms = 2.0
    extra = f"burn: {{type: TestPooledBurn, burn_ms: {burn_ms}}}"
    cfg = config(write_config, tmp_path, cluster, "pooled", FILES, extra, ", burn")
    outcome, services = run(cfg)
    assert outcome.code == 0 and outcome.result.summary.executor["type"] == "dask"
    res = next(s for s in services if type(s).__name__ == "Timing").result(outcome.result.summary)
    events = outcome.result.summary.events_processed
    assert events == 600 and res["loop"]["unattributed_cpu_ms"] is not None
    # it errs low, never high: the source's background CPU taken off holds the begin_job file checks' reads
    # (outside the loop) too; with it added back the pool's burn is a floor (0.95: thread_time's granularity)
    background = res["source_bulk"]["background_cpu_ms"]
    assert res["loop"]["unattributed_cpu_ms"] + background >= events * burn_ms * 0.95
    assert res["farm"]["cpu_per_event_ms"] >= burn_ms * 0.95
    assert "threads no stream runs" in farm_report(res)
    (burn,) = [m for m in res["modules"] if m["label"] == "burn"]
    assert burn["cpu_ms"] < events * burn_ms / 2  # its stream's thread only waited


def test_units_run_in_turn_only_where_the_process_runs_one_at_a_time(cluster):
    """The process's CPU over a unit is the unit's only where the process runs one unit at a time: two
    in-process workers of one thread each (a ``LocalCluster(processes=False)`` given by its address) run two
    at once in one process, and each unit's 'CPU on threads no stream runs' held the other's whole CPU."""
    from distributed import Client, LocalCluster

    from hltrun.framework.executors.worker import worker_threads

    def on_each(client: Client) -> set[int | None]:
        return {client.submit(worker_threads, pure=False, workers=[w]).result(timeout=60)
                for w in client.scheduler_info()["workers"]}

    with Client(cluster) as client:  # the control: one process per worker of one thread
        assert on_each(client) == {1}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0",
                      silence_logs=40) as shared, Client(shared) as client:
        assert on_each(client) == {2}
