"""Output module (content, order, atomic write), jet batcher, score filter, and the CLI's exit codes."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot

from hltrun.framework.eventloop import JobFailed
from hltrun.modules.anomaly_filter import AnomalyScoreFilter
from hltrun.modules.products import JetCollection, JetScores
from tests.helpers import run_config

OUT = """
process: TEST
options: {{numberOfThreads: {streams}}}
source: {{type: TestCountingSource, n: 40}}
modules:
  even: {{type: TestModuloFilter, divisor: 2, sleep_ms: {sleep}}}
  sq: {{type: TestSquare}}
  out: {{type: RootOutputModule, file: {file}, keep: [sq], select_events: [p_even], basket_events: 3}}
paths:
  p_even: [even, sq]
  p_all: [sq]
endpaths:
  e: [out]
"""


def _write(write_config, tmp_path, streams, name, sleep=0):
    out = tmp_path / f"{name}.root"
    run_config(write_config(OUT.format(streams=streams, file=out, sleep=sleep), f"{name}.yaml"))
    return uproot.open(out)["Events"].arrays(library="np")


def test_output_content(write_config, tmp_path):
    data = _write(write_config, tmp_path, 1, "one")
    assert list(data["event"]) == list(range(2, 41, 2))
    assert data["HLT_p_even"].all() and data["HLT_p_all"].all()
    assert list(data["sq"]) == [n * n for n in range(2, 41, 2)]
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("streams", [1, 2])
def test_output_lists_every_lumi_section_read_with_its_events(write_config, tmp_path, streams):
    """Events kept: the even ones; LuminosityBlocks: all 40 processed (TestCountingSource: run 1, lumi 1)."""
    _write(write_config, tmp_path, streams, "lumis")
    lumis = uproot.open(tmp_path / "lumis.root")["LuminosityBlocks"].arrays(library="np")
    assert lumis["run"].tolist() == [1] and lumis["luminosityBlock"].tolist() == [1]
    assert lumis["eventsProcessed"].tolist() == [40]


def test_an_output_without_selected_events_still_has_the_trigger_branches(write_config, tmp_path):
    """No event selected: the Events tree is empty but keeps the HLT_* bits every other output has
    (it had the ids only, so a reader asking for HLT_p_even, or merging it with other outputs, failed)."""
    out = tmp_path / "none.root"
    run_config(write_config(OUT.format(streams=1, file=out, sleep=0).replace("divisor: 2", "divisor: 1000"),
                            "none.yaml"))
    with uproot.open(out) as f:
        t = f["Events"]
        assert t.num_entries == 0
        assert {"run", "luminosityBlock", "event", "HLT_p_even", "HLT_p_all"} <= set(t.keys())
        assert t["HLT_p_even"].typename == "bool"
        assert f["LuminosityBlocks"]["eventsProcessed"].array(library="np").tolist() == [40]


def test_output_identical_for_any_streams(write_config, tmp_path):
    one = _write(write_config, tmp_path, 1, "s1", sleep=1)
    three = _write(write_config, tmp_path, 3, "s3", sleep=1)
    assert one.keys() == three.keys()
    for key in one:
        np.testing.assert_array_equal(one[key], three[key])


def test_failed_job_leaves_no_output(write_config, tmp_path):
    out = tmp_path / "fail.root"
    text = OUT.format(streams=1, file=out, sleep=0).replace("sq: {type: TestSquare}", "sq: {type: TestSquare, fail_on: 20}")
    with pytest.raises(JobFailed):
        run_config(write_config(text))
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_batcher_leading_jets_relative(write_config, counts_file, sample_events):
    from hltrun.modules.jet_batcher import JetBatcher, JetBatcherParameters
    from hltrun.framework.event import Event, EventID

    constituents = np.zeros((3, 120, 3), np.float32)
    constituents[:, :5] = [1.0, 3.0, 10.0]
    from hltrun.modules.jets import to_jet_relative

    eta, phi = np.full(3, 0.5, np.float32), np.full(3, -3.0, np.float32)
    jets = JetCollection(np.array([300., 200., 100.], np.float32), eta, phi, np.zeros(3, np.float32),
                         np.full(3, 5), constituents, to_jet_relative(constituents, eta, phi))
    event = Event(EventID(1, 1, 1), 0, 0)
    event.put_as("source", jets)
    event.current_module = "batcher"
    JetBatcher("batcher", JetBatcherParameters()).produce(event)
    batch = event.get("batcher")
    assert batch.inputs.shape == (2, 100, 3) and batch.inputs.dtype == np.float32
    np.testing.assert_allclose(batch.inputs[0, 0], [0.5, 6.0 - 2 * np.pi, 10.0], rtol=1e-6)
    assert batch.mask[:, :5].all() and not batch.mask[:, 5:].any()
    assert (batch.inputs[:, 5:] == 0).all()


@pytest.mark.parametrize("reduce, expected", [("max", True), ("min", False), ("sum", True), ("leading", False)])
def test_score_filter_reductions(reduce, expected):
    from hltrun.framework.event import Event, EventID
    from hltrun.framework.schema import build
    from hltrun.modules.anomaly_filter import AnomalyFilterParameters

    f = AnomalyScoreFilter("f", build(AnomalyFilterParameters, {"threshold": 1.0, "reduce": reduce}, "f"))
    event = Event(EventID(1, 1, 1), 0, 0)
    event.put_as("vae", JetScores(np.array([0.5, 2.0], np.float32)))
    assert f.filter(event) is expected
    empty = Event(EventID(1, 1, 2), 1, 0)
    empty.put_as("vae", JetScores(np.zeros(0, np.float32)))
    assert f.filter(empty) is False and f.summary()["events_without_score"] == 1


def _cli(*args, cwd=None):
    code = "import sys, tests.plugins; from hltrun.framework.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or Path(__file__).parents[1], timeout=120)


def test_cli_config_error_is_one_line(write_config):
    path = write_config("source: {type: TestCountingSource}\noptions: {numberOfThreads: x}\n")
    res = _cli(path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"hltrun: error: {path}: options.numberOfThreads: expected int, got 'x'"]
    assert "Traceback" not in res.stderr


def test_cli_without_arguments_names_the_configuration_only():
    """The overrides are optional: the message must not list them as required (argparse did)."""
    res = _cli()
    assert res.returncode == 2
    assert res.stderr.splitlines()[0] == "usage: hltrun [options] CONFIG [key.path=value ...]"
    assert res.stderr.splitlines()[-1].startswith("hltrun: error: the configuration is required")
    assert "key.path=value are optional" in res.stderr and "required: config" not in res.stderr


def test_cli_module_error_exit_code_and_debug(write_config):
    path = write_config("source: {type: TestCountingSource}\nmodules:\n  sq: {type: TestSquare, fail_on: 3}\n"
                        "paths:\n  p: [sq]\n")
    res = _cli(path)
    assert res.returncode == 4
    assert res.stderr.strip().endswith("failed on run 1, lumi 1, event 3: ValueError: boom on 3")
    assert "Traceback" not in res.stderr and "TrigReport" in res.stdout  # partial report still printed
    assert "Traceback" in _cli(path, "--debug").stderr


def test_cli_missing_source_file_and_dump(write_config, tmp_path):
    path = write_config(f"source: {{type: RootJetSource, files: [{tmp_path / 'missing.root'}]}}\n")
    res = _cli(path, "-n", "5")
    assert res.returncode == 3 and "input file not found" in res.stderr
    dump = _cli(path, "-n", "5", "--dump", "options.numberOfThreads=3")  # options and overrides intermixed
    assert dump.returncode == 0 and "maxEvents: 5" in dump.stdout and "numberOfThreads: 3" in dump.stdout


def test_hltdiff_finds_decision_and_score_changes(write_config, tmp_path):
    from hltrun.tools.hltdiff import compare, main

    a = tmp_path / "a.root"
    b = tmp_path / "b.root"
    run_config(write_config(OUT.format(streams=1, file=a, sleep=0), "a.yaml"))
    run_config(write_config(OUT.format(streams=2, file=b, sleep=0), "b.yaml"))
    assert main([str(a), str(b)]) == 0
    c = tmp_path / "c.root"
    text = OUT.format(streams=1, file=c, sleep=0).replace("select_events: [p_even]", "select_events: [p_all]")
    run_config(write_config(text, "c.yaml"))
    old = uproot.open(a)["Events"].arrays()
    new = uproot.open(c)["Events"].arrays()
    diff = compare(old, new, selected_old=False, selected_new=False)  # c keeps more events than a
    assert (diff.common, diff.only_in_old, diff.only_in_new) == (20, 0, 20)
    assert diff.identical  # told both keep every event, c's 20 extra events are skipped, as hltDiff skips them
    assert main([str(a), str(c)]) == 1  # detected: a keeps accepted events only, so c gains HLT_p_all accepts
    assert main([str(a), str(tmp_path / "missing.root")]) == 2
    import awkward as ak

    changed = ak.with_field(old, ak.where(old["event"] == 4, old["sq"] + 1, old["sq"]), "sq")
    diff = compare(old, changed)
    assert diff.branches["sq"] == 1 and [e[:3] for e in diff.examples["sq"]] == [(1, 1, 4)]
    sq4 = int(old["sq"][old["event"] == 4][0])  # the product moved by one: said with its relative change
    assert diff.examples["sq"][0][3] == f"{sq4} -> {sq4 + 1} (relative {1 / sq4:.2g})"
    even = next(t for t in diff.triggers if t.name == "HLT_p_even")
    assert (even.gained, even.lost, even.other) == (0, 0, 1)  # same decision, changed product


def test_hltdiff_matches_repeated_event_ids_by_occurrence():
    import awkward as ak

    from hltrun.tools.hltdiff import compare

    old = ak.Array({"run": [1, 1, 1], "luminosityBlock": [1, 1, 1], "event": [5, 5, 6], "s": [1.0, 2.0, 3.0]})
    new = ak.Array({"run": [1, 1], "luminosityBlock": [1, 1], "event": [5, 6], "s": [1.0, 3.0]})
    diff = compare(old, new)
    assert (diff.common, diff.only_in_old, diff.only_in_new) == (2, 1, 0)
    assert diff.branches["s"] == 0


def test_begin_job_lines_are_printed_once_for_many_streams(tmp_path):
    """Each stream has its own scorer; its backend line is one line per distinct backend, not per stream."""
    res = _cli(Path(__file__).parents[1] / "configs" / "path.yaml", "-n", "16", "options.numberOfThreads=6",
               "options.wantSummary=false", f"modules.out.file={tmp_path / 'out.root'}")
    assert res.returncode == 0, res.stderr
    backend_lines = [line for line in res.stderr.splitlines() if line.startswith("hltrun: modules.vae:")]
    # one backend line (or, when auto times engines on this machine, one block): never once per stream
    assert backend_lines and len(backend_lines) == len(set(backend_lines)), res.stderr
    # the model file the chosen engine reads: .onnx, or the .tflite beside it where auto timed TFLite fastest here
    assert sum(f"model data/models/conv_vae.{ext}" in line for line in backend_lines for ext in ("onnx", "tflite")) == 1, \
        res.stderr


def _out_of_files(name: str, code: int = errno.EMFILE) -> OSError:
    return OSError(code, os.strerror(code), name)


@pytest.mark.parametrize("where", ["module", "report", "job report", "job report too"])
def test_too_many_open_files_is_one_line(write_config, tmp_path, monkeypatch, capsys, where):
    """``ulimit -n 12``: EMFILE surfaces wherever the next file is opened — in a module (wrapped by the
    loop), in the reports' lazy import once the job is done (it was "internal error: OSError"), in the
    job report's (it was a traceback). One line naming the limit and what to do, exit 1, said once."""
    import resource

    import tests.plugins as plugins
    from hltrun.framework import report
    from hltrun.framework.cli import main
    from hltrun.framework.report import jobreport_xml

    def fail(*args, **kwargs):
        raise _out_of_files("/some/file.py")

    places = {"module": [(plugins.Square, "produce")], "report": [(report, "text_report")],
              "job report": [(jobreport_xml, "write")], "job report too": [(report, "text_report"),
                                                                            (jobreport_xml, "write")]}
    for owner, name in places[where]:
        monkeypatch.setattr(owner, name, fail)
    path = write_config("source: {type: TestCountingSource}\nmodules:\n  sq: {type: TestSquare}\npaths:\n  p: [sq]\n")
    monkeypatch.setattr(resource, "getrlimit", lambda which: (12, resource.RLIM_INFINITY))
    assert main([str(path), "-n", "3", "-q", "-j", str(tmp_path / "job.xml")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("hltrun: error: too many open files (opening /some/file.py): this process may have 12 "
                       "open (ulimit -n); raise the limit, e.g. ulimit -n 4096")
    assert sum("too many open files" in line for line in err) == 1
    assert not any("internal error" in line or "Traceback" in line for line in err)


@pytest.mark.parametrize("soft, hard, hint", [
    (12, 20000, "ulimit -n 4096"),
    (8192, 65536, "ulimit -n 16384"),                     # twice what the job ran out of
    (1024, 2048, "ulimit -n 2048 (this process's hard limit; beyond it ask the administrator)"),
    (20000, 20000, "ask the administrator for a higher hard limit (ulimit -Hn)")])
def test_the_descriptor_line_suggests_a_limit_the_user_can_set(monkeypatch, soft, hard, hint):
    """``ulimit -n`` cannot go over the hard limit without privileges: the line never suggests one it cannot set."""
    import errno
    import resource

    from hltrun.framework import cli

    monkeypatch.setattr(resource, "getrlimit", lambda which: (soft, hard))
    line = cli._descriptors_line(OSError(errno.EMFILE, "Too many open files", "/x.py"))
    assert line == f"too many open files (opening /x.py): this process may have {soft} open (ulimit -n); " \
                   f"raise the limit, e.g. {hint}"


def test_a_full_system_file_table_is_named_as_such(write_config, monkeypatch, capsys):
    """ENFILE is the system's limit, not the process's: raising ``ulimit -n`` would not help."""
    import tests.plugins as plugins
    from hltrun.framework.cli import main

    def fail(*args, **kwargs):
        raise _out_of_files("/some/file.py", errno.ENFILE)

    monkeypatch.setattr(plugins.Square, "produce", fail)
    path = write_config("source: {type: TestCountingSource}\nmodules:\n  sq: {type: TestSquare}\npaths:\n  p: [sq]\n")
    assert main([str(path), "-n", "3", "-q"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "hltrun: error: too many open files in the system (opening /some/file.py): the system's table is full "
        "(ENFILE), not this process's limit; retry when other processes have closed theirs")


@pytest.mark.parametrize("name, shown", [("x\ny.root", "x\\ny.root"), ("a\rb\x1bMc.root", "a\\rb\\x1bMc.root"),
                                         ("p\u2028q.root", "p\\u2028q.root")])
def test_an_error_quoting_control_characters_stays_one_line(write_config, tmp_path, capsys, name, shown):
    """A file name with a newline (or a carriage return, a terminal escape) in it printed the error over
    two lines, or rewrote the terminal: the final line writes control characters as escapes."""
    from hltrun.framework.cli import main

    import json

    path = write_config(f"source: {{type: RootJetSource, files: [{tmp_path / 'a.root'}]}}\n")
    missing = tmp_path / name
    assert main([str(path), "-q", "-n", "3", f"source.files=[{json.dumps(str(missing))}]"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n") and "\r" not in err and "\x1b" not in err
    assert err == f"hltrun: error: source: input file not found: {tmp_path}/{shown}\n"


def test_an_output_given_as_input_says_what_it_is(write_config, tmp_path):
    """hltrun's output keeps ids, trigger bits and products, not the jets' constituents: a second job
    reading it is told so (it was told to set source.branches.*, as if names were the problem)."""
    from hltrun.framework.errors import SourceError
    from tests.test_source import read_all

    _write(write_config, tmp_path, 1, "first")
    with pytest.raises(SourceError, match=r"^source: .*first.root is an hltrun output \(process 'TEST': run, lumi and "
                                          r"event numbers, HLT_\* bits and kept products, not the jets' constituents\); "
                                          r"give hltrun the files that job read$"):
        read_all([tmp_path / "first.root"])


def test_an_event_skipped_on_error_is_counted_in_its_lumi_section(write_config, tmp_path):
    """TryToContinue skips event 3 before the output sees it: LuminosityBlocks still counts it as processed
    (9 written, 10 processed, as the job report). It said 9, and hltdiff then took lumi 1 for one this job did
    not read in full and compared none of its events: an old job's accepts this one lost were "not read"
    and the outputs "agree" (repro/hltdiff_errored_lumi.py)."""
    out = tmp_path / "o.root"
    summary, _ = run_config(write_config(f"""
options: {{TryToContinue: [StdException]}}
source: {{type: TestCountingSource, n: 10}}
modules:
  bad: {{type: TestFailOn, run: 1, events: [3]}}
  out: {{type: RootOutputModule, file: {out}}}
paths:
  p: [bad]
endpaths:
  e: [out]
"""))
    with uproot.open(out) as f:
        assert f["Events"]["event"].array(library="np").tolist() == [1, 2, 4, 5, 6, 7, 8, 9, 10]
        assert f["LuminosityBlocks"]["eventsProcessed"].array(library="np").tolist() == [10]
        assert f["Runs"]["eventsProcessed"].array(library="np").tolist() == [10]
    assert summary.events_processed == 10


def test_an_event_whose_kept_product_fails_is_not_counted_as_written(write_config, tmp_path):
    """The kept product's producer runs on demand inside the output's write and fails on event 3
    (TryToContinue): the event is not in the file, so the job report's per-lumi NEvents written must not
    count it either (it said 10 for 9 rows)."""
    out = tmp_path / "o.root"
    summary, _ = run_config(write_config(f"""
options: {{TryToContinue: [StdException]}}
source: {{type: TestCountingSource, n: 10}}
modules:
  sq: {{type: TestSquare, fail_on: 3}}
  out: {{type: RootOutputModule, file: {out}, keep: [sq]}}
endpaths:
  e: [out]
"""))
    with uproot.open(out) as f:
        assert f["Events"]["event"].array(library="np").tolist() == [1, 2, 4, 5, 6, 7, 8, 9, 10]
        assert f["LuminosityBlocks"]["eventsProcessed"].array(library="np").tolist() == [10]
    assert summary.module_summaries["out"]["lumis_written"] == {"1:1": 9}
    assert summary.module_summaries["out"]["events_written"] == 9


@pytest.mark.parametrize("streams", [1, 4])
def test_a_dropped_output_counts_no_event_written_on_any_number_of_streams(write_config, tmp_path, streams):
    """The job stops on event 30's error: the output is dropped (no file), so nothing was written. The
    summary and the job report said otherwise: the rows flushed to the temporary before the stop (28 at 1
    stream, a number that moves with the streams' timing at 4; with SIGTERM on the shipped path, 999 of 1109
    events at 1 stream, 995 of 1002 at 4), in a <File> that does not exist. (A graceful signal keeps the
    output: tests/test_graceful_stop.py.)"""
    from hltrun.framework.report.jobreport_xml import gather

    out = tmp_path / "o.root"
    with pytest.raises(JobFailed) as failed:
        run_config(write_config(f"""
process: TEST
options: {{numberOfThreads: {streams}}}
source: {{type: TestCountingSource, n: 60}}
modules:
  bad: {{type: TestFailOn, events: [30]}}
  out: {{type: RootOutputModule, file: {out}, basket_events: 3}}
paths:
  p: [bad]
endpaths:
  e: [out]
"""))
    summary = failed.value.summary
    assert summary.events_processed >= 29 and not out.exists()
    written = summary.module_summaries["out"]
    assert (written["events_written"], written["lumis_written"]) == (0, {})
    assert gather(summary, 4, failed.value.cause).outputs == []


def _model_beside_its_configuration(tmp_path: Path) -> Path:
    """my/path.yaml, the shipped path naming ``model: m.onnx``, and the Conv-VAE as my/m.onnx beside it: my/."""
    import shutil

    repo = Path(__file__).resolve().parents[1]
    mine = tmp_path / "my"
    mine.mkdir()
    shutil.copy(repo / "data" / "models" / "conv_vae.onnx", mine / "m.onnx")
    (mine / "path.yaml").write_text((repo / "configs" / "path.yaml").read_text().replace("model: conv_vae",
                                                                                            "model: m.onnx"))
    return mine


@pytest.mark.parametrize("threshold", [[], ["modules.anomalyFilter.threshold=1"]])
def test_a_model_beside_the_configuration_run_from_another_folder_is_said_so(tmp_path, monkeypatch, capsys, threshold):
    """my/path.yaml names ``model: m.onnx`` (beside it) and is run from the folder above: names are relative to the
    working directory, as cmsRun's, and the line said only "model file not found: m.onnx" about a file the user
    could see. It now says where the file is and what to do; run from my/ it is found (no hint to give)."""
    from hltrun.framework.cli import main as hltrun

    _model_beside_its_configuration(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert hltrun(["my/path.yaml", "-n", "1", *threshold]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(
        "model file not found: m.onnx (relative names are relative to the working directory, as in cmsRun: "
        "my/m.onnx is beside the configuration; give that path, or run from my)"), err
    assert hltrun(["my/path.yaml", "-n", "1", "modules.vae.model=none.onnx", *threshold]) == 4
    assert capsys.readouterr().err.strip().endswith("model file not found: none.onnx")  # nothing beside it either


def test_a_model_not_found_from_a_removed_working_directory_is_one_line(tmp_path):
    """The hint beside "model file not found" compares the configuration's folder with the working directory; run
    from a folder since removed (a batch job's scratch area cleaned, another shell's rm -r), ``os.getcwd`` fails,
    and the error line became a FileNotFoundError traceback, exit 1. The line stays, with its hint (the file is
    beside the configuration, named by its absolute path), exit 4."""
    repo = Path(__file__).resolve().parents[1]
    mine = _model_beside_its_configuration(tmp_path)
    gone = tmp_path / "gone"
    gone.mkdir()
    script = 'cd "$1" && rmdir "$1" && exec "$2" -m hltrun.framework.cli "$3" -n 1 -q'
    done = subprocess.run(["sh", "-c", script, "sh", str(gone), sys.executable, str(mine / "path.yaml")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(repo)})
    assert done.returncode == 4 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"hltrun: error: modules.vae: model file not found: m.onnx (relative names are relative to the working "
        f"directory, as in cmsRun: {mine / 'm.onnx'} is beside the configuration; give that path, or run from {mine})"]
