"""Nothing lost, nothing silently wrong (issue 10): thresholds that travel with the scores, signals,
duplicates, data-quality counters, bounded per-event rows, configuration ergonomics.

The bad-input matrix (exit codes and messages) is tests/test_bad_inputs.py; this file holds the
checks that need more than an exit code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from hltrun.framework.errors import ModuleError
from hltrun.framework.event import Event, EventID
from hltrun.framework.schema import build
from hltrun.modules.anomaly_filter import AnomalyFilterParameters, AnomalyScoreFilter
from hltrun.modules.duplicates import DuplicateChecker, keys
from hltrun.modules.products import JetScores
from tests.conftest import make_events, write_counts
from tests.helpers import run_config, wait_for_temporary

REPO = Path(__file__).resolve().parents[1]
CARD = json.loads((REPO / "data" / "models" / "thresholds.json").read_text())

PATH = """
process: T
source: {{type: RootJetSource, files: [{file}], chunk_size: 30}}
modules:
  batcher: {{type: JetBatcher, src: source, max_jets: 2}}
  vae: {{type: VAEAnomalyScorer, src: batcher, model: {model}, backend: onnxruntime, warm_up: [1]}}
  anomalyFilter: {{type: AnomalyScoreFilter, src: vae}}
paths:
  p: [batcher, vae, anomalyFilter]
services: {{Timing: {{}}, Memory: {{}}}}
"""


# ------------------------------------------------------------------ 1. thresholds travel with the model

@pytest.mark.parametrize("model", ["conv_vae", "gcn_vae"])
def test_filter_cuts_on_the_scorers_model(model, write_config, counts_file):
    """Switching the model in one place switches the threshold (it stayed on conv_vae's 0.80)."""
    summary, _ = run_config(write_config(PATH.format(file=counts_file, model=model)))
    f = summary.module_summaries["anomalyFilter"]
    assert f["model"] == model
    assert f["threshold"] == pytest.approx(CARD[model]["bkg_eff_1e-2"])


def test_scores_of_another_model_are_refused():
    f = AnomalyScoreFilter("f", build(AnomalyFilterParameters, {}, "f"))
    first = Event(EventID(1, 1, 1), 0, 0)
    first.put_as("vae", JetScores(np.array([9.0], np.float32), model="gcn_vae", thresholds={"bkg_eff_1e-2": 8.0}))
    assert f.filter(first) and f.threshold == 8.0  # taken from the scores when begin_job could not ask
    other = Event(EventID(1, 1, 2), 1, 0)
    other.put_as("vae", JetScores(np.array([9.0], np.float32), model="conv_vae", thresholds={"bkg_eff_1e-2": 0.8}))
    with pytest.raises(ModuleError, match="scores from model 'conv_vae'"):
        f.filter(other)


# ------------------------------------------------------------------ 2. a second signal aborts, still clean

SLOW = """
process: SIG
source: {{type: TestCountingSource, n: 1000}}
modules:
  slow: {{type: TestModuloFilter, divisor: 2, sleep_ms: 4000}}
  out: {{type: RootOutputModule, file: {out}}}
paths: {{p: [slow]}}
endpaths: {{e: [out]}}
"""


def test_second_signal_aborts_but_removes_temporaries(tmp_path):
    out = tmp_path / "o.root"
    cfg = tmp_path / "slow.yaml"
    cfg.write_text(textwrap.dedent(SLOW.format(out=out)))
    code = "import sys, tests.plugins; from hltrun.framework.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, str(cfg), "--report-dir", str(tmp_path / "rep")],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wait_for_temporary(out, proc, 60)
    time.sleep(0.5)  # inside the first 4-second event
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGHUP)  # the second signal, before the event in flight ends
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGHUP, err
    assert "second signal" in err
    assert not list(tmp_path.glob("o.root*"))
    assert not (tmp_path / "rep" / "hltrun.json").exists()


SLOW_REPORT = """
process: SIG
source: {{type: TestCountingSource, n: {n}}}
modules:
  slow: {{type: TestModuloFilter, divisor: 2, sleep_ms: 100}}
  out: {{type: RootOutputModule, file: {out}}}
paths: {{p: [slow]}}
endpaths: {{e: [out]}}
services: {{Timing: {{}}, TestSlowReport: {{started: {started}, writing: {writing}, sleep_s: 60, until_signals: {signals}}}}}
"""


def _wait_for(marker: Path, proc: "subprocess.Popen[str]") -> None:
    """Until the job in ``proc`` touches ``marker`` (it fails the test if the job ends first)."""
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate(timeout=60)[1]


@pytest.mark.parametrize("signals", [2, 1], ids=["second signal while reports are written",
                                                 "first signal while reports are written"])
def test_a_signal_while_reports_are_written_leaves_no_partial_report(tmp_path, signals):
    """Issue 23.8: Timing's resources.json was renamed into place before the next report file was
    written, so a signal then (a second one aborts, a first one stops) left part of a report set.
    A second signal aborts: no report file. A first one, once the loop has ended, is noted: the whole
    set is written (it used to leave no report at all), once, as it was begun: all events processed, not
    marked (it was written a second time, marked, seconds more for a job asked to end); the exit code
    says the signal."""
    started, writing, rep = tmp_path / "events-flow", tmp_path / "writing-reports", tmp_path / "rep"
    cfg = tmp_path / "slow.yaml"
    cfg.write_text(textwrap.dedent(SLOW_REPORT.format(n=1000 if signals == 2 else 3, out=tmp_path / "o.root",
                                                      started=started, writing=writing,
                                                      signals=signals)))
    code = "import sys, tests.plugins; from hltrun.framework.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, str(cfg), "--report-dir", str(rep)],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if signals == 2:
        _wait_for(started, proc)
        proc.send_signal(signal.SIGINT)  # the first: the loop stops, the reports are written
    _wait_for(writing, proc)
    proc.send_signal(signal.SIGINT)  # while TestSlowReport writes, after Timing wrote resources.json
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert ("second signal" in err) == (signals == 2), err
    assert "Traceback" not in err, err
    if signals == 2:
        assert sorted(p.name for p in rep.iterdir()) == []  # no report file, whole or partial, no temporary
        return
    names = sorted(p.name for p in rep.iterdir())
    assert {"hltrun.json", "resources.json", "slow.txt"} <= set(names) and not [n for n in names if ".tmp" in n]
    job = json.loads((rep / "hltrun.json").read_text())["job"]
    assert (job["stopped_by_signal"], job["events_processed"]) == (None, 3)
    assert writing.read_text() == "writing\n"  # the set written once, its services' files too


# ------------------------------------------------------------------ 4. duplicate event ids

def test_duplicate_checker_matches_a_set():
    rng = np.random.default_rng(5)
    checker, seen = DuplicateChecker(), set()
    for _ in range(40):
        run, lumi, event = rng.integers(1, 3, 300), rng.integers(1, 4, 300), rng.integers(0, 4000, 300)
        got = checker.first_seen(keys(run, lumi, event))
        want = []
        for t in zip(run.tolist(), lumi.tolist(), event.tolist()):
            want.append(t not in seen)
            seen.add(t)
        assert got.tolist() == want
    assert checker.remembered == len(seen)


def test_check_each_file_forgets_the_previous_file():
    checker = DuplicateChecker("checkEachFile")
    k = keys(np.ones(3), np.ones(3), np.arange(3))
    assert checker.first_seen(k).all()
    checker.new_file()
    assert checker.first_seen(k).all()
    assert not DuplicateChecker("checkAllFilesOpened").first_seen(np.concatenate([k, k]))[3:].any()


@pytest.mark.parametrize("mode", ["checkAllFilesOpened", "checkEachFile"])
def test_the_duplicate_check_agrees_with_a_set_of_ids_on_random_streams(mode):
    """Random (run, lumi, event) chunks with repeats within a chunk, across chunks and across files, against a
    Python set: the same first-seen mask, every id remembered once; and the runs merged in place never change
    an array the checker held before the call (a run is only ever a fresh concatenation)."""
    rng = np.random.default_rng(7)
    for _ in range(40):
        checker, seen = DuplicateChecker(mode), set()
        for _ in range(int(rng.integers(1, 5))):  # files
            checker.new_file()
            seen = set() if mode == "checkEachFile" else seen
            for _ in range(int(rng.integers(1, 8))):  # chunks
                n = int(rng.integers(0, 200))
                ids = rng.integers(0, [3, 3, 40], (n, 3))
                held = [(run, run.tobytes()) for run in checker._runs]
                got = checker.first_seen(keys(ids[:, 0], ids[:, 1], ids[:, 2]))
                want = []
                for t in map(tuple, ids.tolist()):
                    want.append(t not in seen)
                    seen.add(t)
                assert got.tolist() == want
                assert checker.remembered == len(seen)
                assert all(run.tobytes() == before for run, before in held)


def test_a_duplicate_check_merge_holds_its_runs_twice_not_three_times():
    """The ids kept cost 16 bytes per event (a 10 M-event job: 160 MB); merging the two largest runs
    briefly needs their size again, not twice again (np.sort's copy of the concatenation, and the
    chunk's sorted unique ids held through the merge, until 2026-12-07): measured with tracemalloc,
    which sees numpy's buffers. The call holds the chunk's new run (a third of the merge here) and
    the merged run: 1.38 x the merged bytes; it was 2.85 x."""
    import tracemalloc

    checker = DuplicateChecker()
    n = 100_000
    checker.first_seen(keys(np.ones(2 * n), np.ones(2 * n), np.arange(2 * n)))  # one run of 2n ids
    chunk = keys(np.ones(n), np.full(n, 2), np.arange(n))  # n new ids: 2 * n >= 2n, so the runs merge
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        checker.first_seen(chunk)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert checker.remembered == 3 * n and len(checker._runs) == 1
    merged = 3 * n * 16
    assert merged <= peak < 2 * merged, f"a merge of {merged} bytes of ids peaked at {peak} bytes more"


# ------------------------------------------------------------------ 7. data quality

def test_jets_without_constituents_are_counted_not_scored(tmp_path, write_config):
    events = make_events(60, seed=7)
    emptied = 0
    for e in events:
        for j in e["jets"][:1]:  # the leading-in-file jet of every event loses its constituents
            j["c_pt"], j["c_eta"], j["c_phi"] = (j[k][:0] for k in ("c_pt", "c_eta", "c_phi"))
            emptied += 1
    path = write_counts(tmp_path / "empty.root", events)
    summary, process = run_config(write_config(PATH.format(file=path, model="conv_vae")))
    assert summary.data_quality["source"]["jets_without_constituents"] == emptied
    real = [sum(1 for j in e["jets"] if len(j["c_pt"])) for e in events]
    assert summary.module_summaries["vae"]["jets"] == sum(min(n, 2) for n in real)
    assert summary.data_quality["vae"]["events_without_jets"] == sum(1 for n in real if n == 0)
    from hltrun.framework.report import text_report
    from hltrun.framework.report.html import render

    text = text_report(summary, process.services)
    assert f"data quality 'source': invalid links 0, jets without constituents {emptied}" in text
    assert "jets without constituents" in render(summary, [], text).split("<h2>Text report</h2>")[0]


# ------------------------------------------------------------------ 8. configuration ergonomics

def test_config_argument_falls_back_to_the_checkout(tmp_path):
    res = subprocess.run([sys.executable, "-m", "hltrun.framework.cli", "configs/path.yaml", "--dump"], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "HLTAD" in res.stdout


def test_console_says_where_the_output_went(tmp_path, capsys):
    from hltrun.framework.cli import main

    out = tmp_path / "sub" / "o.root"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(textwrap.dedent(f"""
        source: {{type: TestCountingSource, n: 5}}
        modules: {{out: {{type: RootOutputModule, file: {out}}}}}
        endpaths: {{e: [out]}}
        options: {{wantSummary: false}}
    """))
    assert main([str(cfg)]) == 0
    assert f"5 event(s) written to {out}" in capsys.readouterr().err


# ------------------------------------------------------------------ 10. bounded per-event rows

def test_service_rows_are_bounded_and_totals_exact(monkeypatch, write_config):
    from hltrun.framework.services import bounded

    monkeypatch.setattr(bounded, "ROWS_KEPT", 64)
    cfg = write_config("""
        source: {type: TestCountingSource, n: 1000}
        modules: {sq: {type: TestSquare}, even: {type: TestModuloFilter}}
        paths: {p: [sq, even]}
        services: {Timing: {}, Memory: {}}
    """)
    summary, process = run_config(cfg)
    timing, memory = process.services
    assert timing.merged_rows() is None  # past 64 rows the stream went over to histograms
    res = timing.result(summary)
    assert res["events"] == 1000 and res["rows"] == {"kept": 0, "histogram": True, "per_stream": 64}
    assert res["per_event"] is None and res["per_event_kept"] is False
    assert [m["calls"] for m in res["modules"]] == [1000, 1000]
    # exact totals: source + modules + overhead add up to the event time over all 1000 events
    parts = res["source"]["real_ms"] + sum(m["real_ms"] for m in res["modules"]) + res["overhead"]["real_ms"]
    assert parts == pytest.approx(res["event"]["real"]["mean"] * 1000, rel=1e-9)
    ev = res["event"]["real"]
    assert ev["min"] <= ev["median"] <= ev["p99"] <= ev["max"]
    r = memory.results()
    assert r["events"] == 1000 and len(memory.rss_per_event_mb()) <= 64
    assert memory.rss_event_index()[-1] >= 1000 - 2 * r["rss_series_stride"]  # spans the whole job


def test_the_rows_bound_reported_is_the_one_the_streams_applied(write_config):
    """``rows.per_stream`` (what report.html says) is the stream's bound, ``maxTimingRows`` when that is lower than
    ``bounded.ROWS_KEPT``: it said 10,000 for a job whose streams kept 50 rows."""
    cfg = write_config("""
        source: {type: TestCountingSource, n: 120}
        modules: {sq: {type: TestSquare}}
        paths: {p: [sq]}
        options: {executor: {maxTimingRows: 50}}
        services: {Timing: {}}
    """)
    summary, process = run_config(cfg)
    (timing,) = process.services
    assert timing.result(summary)["rows"] == {"kept": 0, "histogram": True, "per_stream": 50}


def _timing_rows(n_events: int, limit: int, budget_ns: int, seed: int = 0):
    """A Timing stream's rows fed with ``n_events`` random event times; returns it and the times."""
    from hltrun.framework.services.timing import _Rows

    rng = np.random.default_rng(seed)
    real = rng.lognormal(np.log(2e6), 0.5, n_events).astype(np.int64)  # ~2 ms events
    rows = _Rows(1, limit, budget_ns)
    for i, t in enumerate(real.tolist()):
        rows.append([i, 0, t, t // 2, t // 3, t // 4])
    return rows, real


def test_timing_rows_fold_into_histograms_in_fixed_memory_with_exact_totals():
    from hltrun.framework.services.timing_data import EDGES_NS

    budget = 3_000_000
    rows, real = _timing_rows(60_000, 1000, budget)
    held = len(rows.blocks) + 1  # full blocks kept plus the block being filled
    kept, hist, over = rows.result()
    assert kept is None and hist is not None and hist.count == 60_000
    for i in range(60_000, 120_000):
        rows.append([i, 0, 1_000_000, 1, 1, 1])
    assert len(rows.blocks) + 1 == held == 1  # past the limit a block is folded as soon as it is full
    _, hist, over = rows.result()
    assert hist.count == 120_000
    assert over == int((real > budget).sum())  # exact, not the bin edge's count
    assert hist.total[0] == pytest.approx(real.sum() + 60_000 * 1_000_000, rel=1e-12)  # event real: exact sum
    assert hist.maxs[0] == real.max() and hist.mins[0] == min(real.min(), 1_000_000)
    width = EDGES_NS[1] / EDGES_NS[0]
    median = np.percentile(np.concatenate([real, np.full(60_000, 1_000_000)]), 50)
    b = np.searchsorted(np.cumsum(hist.counts[0]), 60_000)
    assert EDGES_NS[b] / width <= median <= EDGES_NS[b + 1] * width  # percentiles within a bin


def test_a_closed_stderr_is_nowhere_for_the_messages_not_a_silent_failure(tmp_path):
    """``hltrun cfg 2>&-``: the job runs and exits 0 (it used to exit 1 with nothing said, on
    ``sys.stderr`` being None), and descriptor 2 is /dev/null, not the next file the job opens."""
    out = tmp_path / "o.root"
    probe = ("import os, sys; from hltrun.framework.cli import main; code = main(sys.argv[1:]); "
             "print('fd2', os.path.realpath(f'/proc/self/fd/2')); sys.exit(code)")
    res = subprocess.run([sys.executable, "-c", probe, "configs/path.yaml", "-n", "20", f"modules.out.file={out}",
                          "modules.vae.backend=onnxruntime"], cwd=REPO, stdout=subprocess.PIPE, text=True, timeout=300,
                         env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
                         preexec_fn=lambda: os.close(2))
    assert res.returncode == 0
    assert "TrigReport Events total = 20" in res.stdout and "fd2 /dev/null" in res.stdout
    assert out.is_file()
