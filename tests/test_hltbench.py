"""hltbench: one program, every study a sub-command; its shared runner; the tools' imports point one way.

No timing is asserted here: the studies' figures are measured by running them, not by unit tests.
"""
from __future__ import annotations

import ast
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hltrun.tools.bench import runner
from hltrun.tools.bench.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
NOT_STUDIES = {"__init__", "__main__", "cli", "runner", "flops", "plots"}  # tools/bench modules that are not studies


def test_help_lists_every_study(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name, (_, help_line) in COMMANDS.items():
        assert f"    {name}" in out, name
        assert help_line.split()[0] in out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_study_has_its_own_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: hltbench {command}" in capsys.readouterr().out


def test_no_study_lists_them_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in COMMANDS)


def test_old_style_flags_name_the_backends_study_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--models", "conv_vae", "--batch-sizes", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "hltbench backends --models conv_vae --batch-sizes 1" in err


def test_unknown_study_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["nonesuch"])
    assert exit_.value.code == 2
    assert "invalid choice: 'nonesuch'" in capsys.readouterr().err


def test_every_study_module_is_a_sub_command() -> None:
    """No study orphaned: each module of tools/bench/ with a ``run`` is behind a sub-command, each
    sub-command's module exists, and no benchmark script is left loose in tools/."""
    modules = {p.stem for p in (TOOLS / "bench").glob("*.py")} - NOT_STUDIES
    assert modules == {module for module, _ in COMMANDS.values()}
    assert not sorted(TOOLS.glob("bench_*.py")) and not (TOOLS / "profile_onnx.py").exists()
    assert not (ROOT / "framework/services/timing_bench.py").exists()
    for module in modules:
        tree = ast.parse((TOOLS / "bench" / f"{module}.py").read_text())
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert {"add_arguments", "run"} <= defined, module
        assert "main" not in defined, f"{module}: a second way to start it"
        assert not any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body), module


def test_a_user_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["timing", "--repeat", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "hltbench timing: --repeat must be at least 1 (got 0)"


@pytest.mark.parametrize("argv, option", [
    (["backends", "--ghz", "-1"], "--ghz"),  # a negative limit per jet and "-11.0%" of the peak
    (["backends", "--ghz", "2", "--flops-per-cycle", "-1"], "--flops-per-cycle"),  # "-179.8%" of the peak
    (["backends", "--min-time", "nan"], "--min-time"),  # each cell timed on its minimum number of calls
    (["backends", "--min-calls", "0"], "--min-calls"),
    (["backends", "--mem-calls", "-1"], "--mem-calls"),
    (["backends", "--mem-jets", "-5"], "--mem-jets"),
    (["profile", "conv_vae", "--min-time", "-1"], "--min-time"),
    (["verdict", "conv_vae", "--min-time", "inf"], "--min-time"),  # a sweep that never ends
    (["gpu-farm", "--cpu", "a", "--gpu", "b", "--out", "{t}/farm", "--rate", "-5"], "--rate"),  # negative cores
])
def test_a_number_that_makes_no_measurement_is_refused(argv: list[str], option: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Seconds, clocks, FLOP per cycle, rates and counts out of range are refused while the command line is
    read (exit 2, argparse's line naming the option), before anything is measured or written. They were
    taken: ``--ghz -1`` printed a negative arithmetic limit and a negative fraction of the peak."""
    from hltrun.tools.bench import cli

    monkeypatch.setattr(cli, "_run_study", lambda args: 0)  # taken, it would be measured: not here
    with pytest.raises(SystemExit) as stopped:
        main([a.format(t=tmp_path) for a in argv])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"hltbench {argv[0]}: error: argument {option}: must be "), err
    assert list(tmp_path.iterdir()) == []


def test_min_time_0_times_each_cell_on_its_minimum_calls(tmp_path: Path) -> None:
    """--min-time 0 is a measurement, the quickest one: each cell's --min-calls calls per round, nothing more
    (a smoke check). The range checks refused it as they refused -1 ("must be a finite number above 0")."""
    from hltrun.tools.bench.cli import build_parser

    for argv in (["profile", "conv_vae"], ["verdict", "conv_vae"]):
        assert build_parser(argv[0]).parse_args([*argv, "--min-time", "0"]).min_time == 0.0
    out = tmp_path / "cells.json"
    assert main(["backends", "--models", "conv_vae", "--backends", "ort-bare", "--batch-sizes", "1", "--min-time", "0",
                 "--min-calls", "2", "--mem-calls", "0", "--mem-jets", "0", "--ghz", "0.8", "--json", str(out)]) == 0
    (cell,) = json.loads(out.read_text())["cells"]
    assert cell["calls"] == 2 * 3  # --min-calls in each of time_cell's 3 rounds


def test_flops_per_cycle_without_ghz_is_refused_not_ignored(capsys: pytest.CaptureFixture[str]) -> None:
    """--flops-per-cycle only sets the nominal limit with --ghz; alone it did nothing (the measured sgemm
    rate was used), silently."""
    assert main(["backends", "--models", "conv_vae", "--backends", "ort-bare", "--batch-sizes", "1", "--min-time",
                 "0.01", "--mem-calls", "1", "--mem-jets", "0", "--flops-per-cycle", "64"]) == 2
    assert capsys.readouterr().err.strip() == (
        "hltbench backends: --flops-per-cycle sets the nominal limit with --ghz; without --ghz the limit is the "
        "one-core sgemm rate measured in this run")


@pytest.mark.parametrize("argv", [["backends", "--backends", "ort-bare"], ["gpu-sweep", "--device", "cpu", "--out", "{t}/out"]])
@pytest.mark.parametrize("folder", [False, True])
def test_a_missing_model_stops_the_study_before_it_measures(argv: list[str], folder: bool, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown --models name is an argument error, exit 2 and the same line in every study that takes
    --models (gpu-sweep said it with exit 4 from its first engine, after reading the sample)."""
    if folder:
        (tmp_path / "nope.onnx").mkdir()
    argv = [a.format(t=tmp_path) for a in argv]
    assert main([*argv, "--models", "nope", "--models-dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    why = f"model file {tmp_path / 'nope.onnx'} is a folder, not a file" if folder else \
        f"model file not found: {tmp_path / 'nope.onnx'}"
    assert captured.err.strip() == f"hltbench {argv[0]}: --models nope: {why}" and not captured.out
    assert not (tmp_path / "out").exists()


def test_timing_study_runs_and_records_the_machine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "timing.json"
    assert main(["timing", "--events", "30", "--modules", "2", "--repeat", "1", "--json", str(out)]) == 0
    assert "ns per module call" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["study"] == "timing" and doc["modules"]["modules"] == 2 and doc["no_modules"]["modules"] == 0
    assert {"cpu", "cores", "python", "versions", "hltrun_commit", "load"} <= set(doc["machine"])
    assert "numpy" in doc["machine"]["versions"]


def test_profile_takes_a_shipped_model_name_or_a_path(tmp_path: Path) -> None:
    from hltrun.tools.bench.profile_onnx import model_file
    from hltrun.tools.catalogue import models_dir

    assert model_file("gcn_vae") == models_dir() / "gcn_vae.onnx"
    assert model_file(str(tmp_path / "x.onnx")) == tmp_path / "x.onnx"


def test_python_m_runs_the_same_program() -> None:
    proc = subprocess.run([sys.executable, "-m", "hltrun.tools.bench", "timing", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "usage: hltbench timing" in proc.stdout


# ---------------------------------------------------------------------- the shared runner
def test_interleave_counts_its_runs_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The studies built on interleave ran for minutes without a sign of life: on a terminal a bar counts
    the runs (and names the variant running); off a terminal (a log, CI) nothing is printed."""
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, shown in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        runner.interleave({"bare": lambda: 1, "timed": lambda: 2}, 2)
        assert ("/4 [" in stream.getvalue() and "timed" in stream.getvalue()) == shown, stream.getvalue()


def test_interleave_runs_the_variants_in_turn() -> None:
    order: list[str] = []
    got = runner.interleave({"a": lambda: order.append("a") or 1, "b": lambda: order.append("b") or 2}, 3)
    assert order == ["a", "b"] * 3 and got == {"a": [1, 1, 1], "b": [2, 2, 2]}


def test_json_and_csv_are_written_whole(tmp_path: Path) -> None:
    import numpy as np

    path = runner.write_json(tmp_path / "r.json", {"x": np.arange(3), "p": tmp_path}, "unit")
    doc = json.loads(path.read_text())
    assert doc["x"] == [0, 1, 2] and doc["p"] == str(tmp_path) and doc["machine"]["cores"]
    rows = [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    with runner.write_csv(tmp_path / "r.csv", rows, "unit").open() as fh:
        assert list(csv.DictReader(fh)) == [{"a": "1", "b": "x"}, {"a": "2", "b": "y"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.json"]  # no staging files left


def test_machine_record_names_the_commit() -> None:
    record = runner.machine()
    assert record["hltrun_commit"] != "" and record["python"].count(".") == 2


# ---------------------------------------------------------------------- one catalogue
# (imports point one way and tools has no import cycle: tests/test_import_layers.py, for every layer)
def test_one_catalogue_of_models_and_no_path_edits() -> None:
    for path in TOOLS.rglob("*.py"):
        text = path.read_text()
        if path.name != "catalogue.py":
            assert "\nMODELS = " not in text, f"{path}: a copy of catalogue.MODELS"
        assert "sys.path" not in text, f"{path}: edits sys.path"


# ---------------------------------------------------------------------- outputs checked before the study runs
def _must_not_run(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("the study ran before its output was checked")


@pytest.mark.parametrize("where", ["folder", "under a file"])
def test_an_unwritable_json_is_one_line_exit_4_before_the_study_runs(where: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from hltrun.tools.bench import timing

    monkeypatch.setattr(timing, "measure_overhead", _must_not_run)
    (tmp_path / "plain").write_text("x")
    target = tmp_path if where == "folder" else tmp_path / "plain" / "t.json"
    assert main(["timing", "--events", "100", "--json", str(target)]) == 4
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and "Traceback" not in err and not captured.out
    assert err.startswith("hltbench timing --json: ") and str(target if where == "folder" else tmp_path / "plain") in err


def test_a_missing_parent_folder_of_an_output_is_made_as_hltrun_makes_it(tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper" / "t.json"
    assert main(["timing", "--events", "20", "--modules", "1", "--repeat", "1", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["study"] == "timing"


def test_every_output_option_is_checked_by_the_one_runner_helper(tmp_path: Path) -> None:
    import argparse

    from hltrun.framework.errors import ModuleError

    (tmp_path / "plain").write_text("x")
    for option in ("out", "plots", "save_optimised"):  # folders
        flag = option.replace("_", "-")
        with pytest.raises(ModuleError, match=f"hltbench x --{flag}: .*plain is a file, not a folder"):
            runner.check_outputs(argparse.Namespace(**{option: tmp_path / "plain"}), "hltbench x")
    for option in ("json", "csv"):  # files
        with pytest.raises(ModuleError, match=f"hltbench x --{option}: .* is a folder, not a file name"):
            runner.check_outputs(argparse.Namespace(**{option: tmp_path}), "hltbench x")
    runner.check_outputs(argparse.Namespace(json=None, csv=None, out=tmp_path / "o", plots=None), "hltbench x")
    assert (tmp_path / "o").is_dir()


# ---------------------------------------------------------------------- counts are positive, at argparse level
@pytest.mark.parametrize("argv, option", [
    (["profile", "conv_vae", "--batch-sizes", "0"], "--batch-sizes"),
    (["profile", "conv_vae", "--profile-batch", "0"], "--profile-batch"),
    (["sessions", "--events", "0"], "--events"),
    (["sessions", "--threads", "0"], "--threads"),
    (["backends", "--batch-sizes", "-1", "--backends", "ort-fp32", "--models", "conv_vae"], "--batch-sizes"),
    (["backends", "--mem-batch", "0"], "--mem-batch"),
    (["score-core", "--batch-sizes", "4", "0"], "--batch-sizes"),
    (["timing", "--events", "0"], "--events"),
    (["timing", "--modules", "-3"], "--modules"),
    (["gpu-sweep", "--batches", "0", "--out", "x"], "--batches"),
    (["source", "--basket", "0"], "--basket"),
    (["backends", "--threads", "0"], "--threads"),
    (["profile", "conv_vae", "--threads", "0"], "--threads"),
    (["source", "--threads", "0"], "--threads"),
    (["batching", "--streams", "1", "0"], "--streams"),
    (["batching", "--max-batch", "0"], "--max-batch"),
    (["dask", "--events-per-task", "0"], "--events-per-task"),
    (["dask", "--overhead-events", "0"], "--overhead-events"),
])
def test_a_non_positive_count_is_refused_while_the_command_line_is_read(argv: list[str], option: str,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"hltbench {argv[0]}: error: argument {option}: must be at least 1 (got ")


def test_the_count_type_is_one_shared_function() -> None:
    import argparse

    assert runner.positive_int("3") == 3
    for bad in ("0", "-1", "x", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            runner.positive_int(bad)


@pytest.mark.parametrize("argv", [["timing", "--events", "10", "--json", "root://eos.cern.ch//store/t.json"],
                                  ["backends", "--out", "https://host/cells"],
                                  ["verdict", "conv_vae", "--out-dir", "root://h//v"]])
def test_a_remote_output_is_refused_on_the_command_line(argv, tmp_path, monkeypatch, capsys) -> None:
    """Path() folds root://h//x into the local root:/h/x: the URL is refused on the raw text, nothing written."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert "is a remote URL; the tools write local files only" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- refused or stopped: nothing left behind
def _farm_run(folder: Path, device: str, streams: int, loop_s: float) -> Path:
    """A run folder's hltrun.json as gpu-farm reads it (1000 events)."""
    folder.mkdir(parents=True)
    job = {"streams": streams, "events_processed": 1000, "loop_s": loop_s,
           "module_summaries": {"vae": {"backend": {"backend": "torch" if device != "cpu" else "onnxruntime",
                                                    "device": device}}}}
    (folder / "hltrun.json").write_text(json.dumps({"job": job}))
    return folder


def test_a_refused_study_leaves_no_output_folder_behind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--out is checked (and made) first; a study that then refuses its inputs removes what the check made."""
    assert main(["gpu-farm", "--cpu", str(tmp_path / "nope"), "--gpu", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "new" / "farm")]) == 2
    assert "not an hltrun.json" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()  # a folder that was there before stays
    assert main(["gpu-farm", "--cpu", str(tmp_path / "nope"), "--gpu", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "kept")]) == 2
    assert (tmp_path / "kept").is_dir()


@pytest.mark.parametrize("kind", ["a character device", "a FIFO"])
@pytest.mark.parametrize("given", ["folder", "file"])
def test_gpu_farm_refuses_a_report_that_is_no_regular_file(kind: str, given: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """An hltrun.json that is a device or a FIFO is refused in one line (exit 2), before it is read: a link to
    /dev/zero was read until the machine's memory ran out (the kernel killed the process), a FIFO without a
    writer waited for ever. /dev/null stands for the devices here: the same check, no memory at stake."""
    from tests.helpers import beside_a_fifo

    cpu = _farm_run(tmp_path / "cpu", "cpu", 1, 2.0)
    run = tmp_path / "gpu"
    run.mkdir()
    report = run / "hltrun.json"
    if kind == "a FIFO":
        os.mkfifo(report)
    else:
        report.symlink_to(os.devnull)
    code = beside_a_fifo(report, lambda: main(["gpu-farm", "--cpu", str(cpu), "--gpu",
                                               str(run if given == "folder" else report),
                                               "--out", str(tmp_path / "farm")]))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err
    assert err == (f"hltbench gpu-farm: {report} is {kind}, not a regular file (it is read whole: a device may "
                   "never end, a FIFO may never be written: copy it into a file first)")
    assert not (tmp_path / "farm").exists()


@pytest.mark.parametrize("how", ["KeyboardInterrupt", "a job stopped by it"])
def test_ctrl_c_stops_a_study_in_one_line_exit_130(how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C during a study (or during the hltrun job it runs: eventloop.JobFailed) is exit 130 and one line."""
    from types import SimpleNamespace

    from hltrun.framework.eventloop import JobFailed
    from hltrun.tools.bench import timing

    def stopped(*_args: object, **_kwargs: object) -> None:
        if how == "KeyboardInterrupt":
            raise KeyboardInterrupt
        raise JobFailed(SimpleNamespace(failure="interrupted by the user (Ctrl-C)"), KeyboardInterrupt())

    monkeypatch.setattr(timing, "measure_overhead", stopped)
    assert main(["timing", "--events", "10", "--json", str(tmp_path / "new" / "t.json")]) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("hltbench timing: interrupted") and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "new").exists()


def test_gpu_farm_writes_its_files_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A full disk while farm.json / farm.csv are written: exit 4, one line naming the file, the previous
    files untouched, no temporary left (framework/atomic.py, as every hltrun file)."""
    from tests.test_destinations import FullDisk, _inject

    cpu = _farm_run(tmp_path / "cpu", "cpu", 1, 2.0)
    gpu = _farm_run(tmp_path / "gpu", "gpu-nvidia", 2, 0.5)
    out = tmp_path / "farm"
    out.mkdir()
    (out / "farm.json").write_text("previous")
    (out / "farm.csv").write_text("previous")
    _inject(monkeypatch, FullDisk(free=200, after=1))  # farm.json fits, farm.csv does not
    assert main(["gpu-farm", "--cpu", str(cpu), "--gpu", str(gpu), "--out", str(out)]) == 4
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"cannot write {out / 'farm.csv'} (No space left on device)" in err
    assert sorted(p.name for p in out.iterdir()) == ["farm.csv", "farm.json"]
    assert (out / "farm.json").read_text() == (out / "farm.csv").read_text() == "previous"


def test_gpu_sweep_keeps_the_last_whole_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The sweep writes its rows after each engine; a later write that fails (a full disk) leaves the
    previous sweep.csv / sweep.json whole, never a half file, and is exit 4 in one line."""
    from tests.test_destinations import FullDisk, _inject
    from hltrun.tools.bench import gpu_sweep

    row = {"engine": "torch", "device": "cpu", "model": "conv_vae", "batch": 1, "median_ms": 1.0}

    def fake_sweep(*args: object, **kwargs: object) -> list[dict[str, object]]:
        done = args[7]
        done([row])
        return [row, {**row, "batch": 2}]

    monkeypatch.setattr(gpu_sweep, "sweep", fake_sweep)
    monkeypatch.setattr(gpu_sweep, "_versions", lambda engines: {})
    _inject(monkeypatch, FullDisk(free=100, after=2))  # the first write's two files fit, the next do not
    out = tmp_path / "sweep"
    assert main(["gpu-sweep", "--device", "cpu", "--engines", "torch", "--batches", "1", "2", "--out", str(out)]) == 4
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "No space left on device" in err
    assert sorted(p.name for p in out.iterdir()) == ["sweep.csv", "sweep.json"]
    assert [r["batch"] for r in csv.DictReader(open(out / "sweep.csv"))] == ["1"]
    assert [r["batch"] for r in json.loads((out / "sweep.json").read_text())["rows"]] == [1]


def test_batching_refuses_zero_events_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """--max-events 0 was a ZeroDivisionError traceback after two empty jobs; -1 (all) stays allowed."""
    assert main(["batching", "--max-events", "0", "--streams", "1", "--repeat", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "hltbench batching: --max-events must be at least 1, or -1 for all (got 0)"


def test_write_rebasketed_is_an_output_checked_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """hltbench source --write-rebasketed FILE: a folder there is one line, exit 4, before anything is read."""
    from hltrun.tools.bench import source

    monkeypatch.setattr(source, "rebasket", _must_not_run)
    assert main(["source", "--write-rebasketed", str(tmp_path)]) == 4
    err = capsys.readouterr().err.strip()
    assert err == f"hltbench source --write-rebasketed: {tmp_path} is a folder, not a file name"


@pytest.mark.parametrize("what", ["missing", "corrupt", "not ROOT", "folder"])
def test_a_bad_sample_is_one_line_exit_2(what: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--sample of the studies that read jets (sessions, backends): named in one line, not a traceback."""
    sample = {"missing": tmp_path / "nope.root", "corrupt": tmp_path / "cut.root", "not ROOT": tmp_path / "x.root",
              "folder": tmp_path}[what]
    (tmp_path / "cut.root").write_bytes((ROOT / "data" / "qcd_dijet.root").read_bytes()[:3000])
    (tmp_path / "x.root").write_text("not a ROOT file")
    assert main(["sessions", "--sample", str(sample), "--events", "5", "--repeat", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("hltbench sessions: --sample") and str(sample) in err


def test_sessions_checks_its_model_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sessions", "--model", str(tmp_path / "nope.onnx")]) == 2
    assert capsys.readouterr().err.strip() == f"hltbench sessions: onnxruntime: model file not found: {tmp_path / 'nope.onnx'}"


def test_profile_refuses_negative_top_nodes(capsys: pytest.CaptureFixture[str]) -> None:
    """--top-nodes -1 listed every node but the last (a slice); 0 (none) is the floor."""
    assert main(["profile", "conv_vae", "--top-nodes", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "hltbench profile: --top-nodes must be at least 0 (got -1)"


def test_framework_write_doc_is_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--write-doc appended to docs/performance.md with open('a'): a full disk (or Ctrl-C) left half a
    section; now the page is rewritten through framework/atomic.py, the old page kept on failure."""
    from hltrun.framework.errors import ModuleError
    from hltrun.tools.bench import framework
    from tests.test_destinations import FullDisk, _inject

    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n")
    _inject(monkeypatch, FullDisk(free=30))
    with pytest.raises(ModuleError, match="hltbench framework --write-doc: cannot write .*No space left"):
        framework.append_to_doc(doc, "x" * 100, 10, 1)
    assert doc.read_text() == "# Performance\n" and [p.name for p in tmp_path.iterdir()] == ["performance.md"]
    monkeypatch.undo()
    framework.append_to_doc(doc, "results", 10, 1)
    assert doc.read_text().startswith("# Performance\n\n## Framework overhead (") and doc.read_text().endswith("results\n")
