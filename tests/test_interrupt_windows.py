"""Signals at the edges of a job, outside the event loop: after the loop (end_job, the reports), while
the job report is written, and during start-up imports. README "stopped by": SIGINT / SIGTERM / SIGHUP
exit 128 + the signal in one line, every report is written marked stopped with the events processed,
no temporary is left, the report folder holds the previous set or the whole new one.

Deterministic: the signal is sent by this process to itself (``os.kill``) at the precise point a
patched function reaches, so that its handler runs there, on the main thread; or the interrupt is
raised there directly. No race with a real job on a busy machine.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from pathlib import Path

import pytest

import hltrun.framework.report.files as report_files
from hltrun.framework.cli import main
from hltrun.modules.root_output import RootOutputModule

JOB = """
process: WIN
source: {{type: TestCountingSource, n: {n}}}
modules:
  even: {{type: TestModuloFilter, divisor: 2}}
  out: {{type: RootOutputModule, file: {out}}}
paths: {{p: [even]}}
endpaths: {{e: [out]}}
services: {{Timing: {{}}}}
"""
N = 40


@pytest.fixture(autouse=True)
def system_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system's temporary folder inside the test's, so that a temporary left there is seen."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _job(tmp_path: Path) -> Path:
    cfg = tmp_path / "job.yaml"
    cfg.write_text(JOB.format(n=N, out=tmp_path / "o.root"))
    return cfg


def _temporaries(tmp_path: Path) -> list[Path]:
    return [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def _signal_once(monkeypatch: pytest.MonkeyPatch, owner: object, name: str, sig: int, after: bool = False) -> list[int]:
    """Patch ``owner.name`` to send ``sig`` to this process the first time it is called (before the
    call, or after it with ``after``): the handler runs right there, as a signal arriving then does."""
    original = getattr(owner, name)
    sent: list[int] = []

    def patched(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if not sent and not after:
            sent.append(sig)
            os.kill(os.getpid(), sig)
        result = original(*args, **kwargs)
        if not sent and after:
            sent.append(sig)
            os.kill(os.getpid(), sig)
        return result

    monkeypatch.setattr(owner, name, patched)
    return sent


# ------------------------------------------------------------------ 1. a signal after the event loop

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("where", ["output end_job", "report folder"])
def test_a_signal_after_the_loop_still_writes_every_report_marked_stopped(where, sig, tmp_path, monkeypatch, capfd):
    """A signal once every event was processed (the output's end_job logging "event(s) written to", or
    while the report folder is written): it dropped every report (exit 130, no TrigReport, an empty
    folder) or left the folder empty. Now: the console report and the whole folder, with all the events
    processed, then exit 128 + the signal in one line. The reports begun after the signal are marked
    stopped by it; the folder being written when it came is finished as begun, written once: it was
    written a second time, marked, doubling the seconds a SIGTERM'd job took to end."""
    if where == "output end_job":
        sent = _signal_once(monkeypatch, RootOutputModule, "end_job", sig, after=True)
    else:  # after hltrun.json and resources.json are staged, before the set is renamed into place
        sent = _signal_once(monkeypatch, report_files, "write_timing_root", sig)
    sets: list[int] = []
    write_all = report_files.write_all
    monkeypatch.setattr(report_files, "write_all", lambda *args: sets.append(1) or write_all(*args))
    rep = tmp_path / "rep"
    code = main([str(_job(tmp_path)), "--report-dir", str(rep), "-j", str(tmp_path / "fjr.xml")])
    out, err = capfd.readouterr()
    assert sent and code == 128 + sig, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and ("interrupted by the user" if sig == signal.SIGINT
                                 else f"stopped by {signal.Signals(sig).name}") in errors[0], err
    assert "TrigReport" in out and f"Events total = {N}" in out
    if where == "output end_job":  # printed after the signal: marked
        # "JobReport  stopped by: interrupted by the user ..." / "JobReport  stopped by SIGTERM" (said once)
        name = signal.Signals(sig).name
        assert ("JobReport  stopped by: interrupted by the user" if sig == signal.SIGINT
                else f"JobReport  stopped by {name}\n") in out, out
    job = json.loads((rep / "hltrun.json").read_text())["job"]
    marked = signal.Signals(sig).name if where == "output end_job" else None  # begun before the signal: as begun
    assert (job["stopped_by_signal"], job["events_processed"]) == (marked, N)
    assert sets == [1]  # the report folder written once
    assert {p.name for p in rep.iterdir()} >= {"hltrun.json", "resources.json", "timing.root"}
    assert f'UnixExitStatus="{128 + sig}"' in (tmp_path / "fjr.xml").read_text()  # written after: it says the signal
    assert not _temporaries(tmp_path)
    assert (tmp_path / "o.root").is_file()  # every event was processed: the output is whole


# ------------------------------------------------------------------ 2. a signal while the job report is written

class _ReachedTheRestoredHandler(Exception):
    """Raised by the handler the test had before hltrun's: hltrun's handlers were gone already."""


@pytest.fixture
def previous_handlers():
    """Handlers hltrun must replace for the whole job, job report included, and restore after: a signal
    that reaches one of these was sent after hltrun restored them."""
    def reached(signum, frame):  # noqa: ANN001, ANN202, ARG001
        raise _ReachedTheRestoredHandler(signal.Signals(signum).name)

    saved = {s: signal.signal(s, reached) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: signal.Signals(s).name)
def test_a_signal_while_the_job_report_waits_for_its_fifo_is_one_line(sig, tmp_path, system_tmp, monkeypatch,
                                                                      capfd, previous_handlers):
    """``-j FIFO`` waits for the FIFO's reader after the job; a signal then was a KeyboardInterrupt
    traceback (exit -2) or the default SIGTERM (143 with ``fifo.*.tmp`` left): the job report was written
    after hltrun's handlers were restored. Now: one line, 128 + the signal, no temporary."""
    from hltrun.framework.atomic import Staged

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sent = _signal_once(monkeypatch, Staged, "_copy_in", sig)  # where open() of the FIFO blocks
    code = main([str(_job(tmp_path)), "-j", str(fifo)])
    out, err = capfd.readouterr()
    assert sent and code == 128 + sig, err
    assert "Traceback" not in err and "TrigReport" in out
    said = "interrupted by the user (Ctrl-C, SIGINT)" if sig == signal.SIGINT else f"stopped by {signal.Signals(sig).name}"
    assert err.splitlines()[-1] == f"hltrun: {said}", err
    assert not _temporaries(tmp_path)
    assert (tmp_path / "o.root").is_file()
    assert getattr(signal.getsignal(sig), "__name__", "") == "reached"  # the handler it found, given back


# ------------------------------------------------------------------ 4. a signal that cuts a start-up import

def _cut_by(sig: int, chained: bool = True):  # noqa: ANN202
    """An import that a signal cuts, as a compiled extension reports it: the handler's interrupt turned
    into ImportError "initialization failed" (pybind11 raises it from the interrupt; ``chained=False``:
    a library that keeps no trace of it). Under ``handle_signals``, the signal is really sent."""
    def load(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            os.kill(os.getpid(), sig)  # hltrun's handler raises here: no stop callback at start-up
        except KeyboardInterrupt as exc:
            cut = exc
        else:  # pragma: no cover - the handler did not run
            raise AssertionError("the signal was not handled")
        if chained:
            raise ImportError("initialization failed") from cut
        raise ImportError("initialization failed")

    return load


@pytest.mark.parametrize("chained", [True, False], ids=["chained", "no trace"])
def test_a_signal_cutting_an_optional_import_is_not_a_missing_package(chained, monkeypatch):
    """``auto: onnxruntime cannot run the model: ... needs onnxruntime, which is not installed`` (exit 4)
    for Ctrl-C during start-up: ``extras.need`` took the cut import for a missing package."""
    import importlib

    from hltrun.framework.extras import need
    from hltrun.framework.interrupt import Interrupted, handle_signals

    monkeypatch.setattr(importlib, "import_module", _cut_by(signal.SIGTERM, chained))
    with handle_signals(), pytest.raises(Interrupted) as stopped:
        need("onnxruntime", "the onnxruntime backend")
    assert stopped.value.exit_code == 143


def test_a_signal_cutting_a_plugin_import_is_not_a_broken_plugin(monkeypatch, tmp_path, capfd):
    """``plugin entry point 'Timing' ... failed to load: initialization failed`` (exit 2) for a signal
    during start-up: the registry took the cut import for a broken plugin. Through the CLI: exit 143,
    its one line."""
    from hltrun.framework import registry

    class CutEntryPoint:
        name, value = "Timing", "hltrun.framework.services.timing:Timing"
        load = staticmethod(_cut_by(signal.SIGTERM))

    monkeypatch.delitem(registry._tables[registry.SERVICE_ENTRY_POINT_GROUP], "Timing", raising=False)
    real_group = registry._group
    monkeypatch.setattr(registry, "_group", lambda group: {**real_group(group), "Timing": CutEntryPoint()}
                        if group == registry.SERVICE_ENTRY_POINT_GROUP else real_group(group))
    code = main([str(_job(tmp_path))])
    err = capfd.readouterr().err
    assert (code, err.splitlines()[-1:]) == (143, ["hltrun: stopped by SIGTERM"]), err
    assert "plugin entry point" not in err and "Traceback" not in err
    assert not _temporaries(tmp_path)


@pytest.mark.parametrize("module", ["hltrun.framework.config", "hltrun.framework.report"])
def test_a_signal_while_the_cli_imports_its_loader_is_one_line(module, monkeypatch, tmp_path, capfd):
    """SIGTERM ~0.3 s after ``hltrun cfg.yaml`` started, while ``_main`` imported the configuration loader
    (PyYAML) or the report text, came out as ``Traceback ... Interrupted: stopped by SIGTERM``, exit 1: those
    imports were outside the block that turns a signal into its one line."""
    import sys
    import types

    class Cut(types.ModuleType):
        def __getattr__(self, name: str) -> object:
            if name.startswith("__"):  # the import system's questions (__path__, ...): not the import itself
                raise AttributeError(name)
            os.kill(os.getpid(), signal.SIGTERM)  # hltrun's handler raises here, on the main thread
            raise AssertionError("the signal was not handled")  # pragma: no cover

    monkeypatch.setitem(sys.modules, module, Cut(module))
    try:
        code = main([str(_job(tmp_path))])
    except KeyboardInterrupt as exc:  # what the console script showed as a traceback, exit 1
        pytest.fail(f"the interrupt escaped main(): {exc!r}")
    err = capfd.readouterr().err
    assert (code, err.splitlines()) == (143, ["hltrun: stopped by SIGTERM"]), err
    assert not _temporaries(tmp_path)


def test_a_signal_while_auto_loads_its_reference_engine_stops_the_job():
    """``auto`` timing its engines: the reference engine's failure made of a signal (any error whose
    cause is the interrupt) is the signal, not ``auto: onnxruntime cannot run the model``."""
    from hltrun.framework.errors import ModuleError
    from hltrun.framework.interrupt import Interrupted
    from hltrun.modules.inference.autoselect import choose

    def engine():  # noqa: ANN202
        try:
            raise Interrupted(signal.SIGHUP)
        except Interrupted as exc:
            raise ModuleError("the onnxruntime backend needs onnxruntime, which is not installed") from exc

    with pytest.raises(Interrupted) as stopped:
        choose({"onnxruntime": engine, "iree": engine}, 4, "onnxruntime")
    assert stopped.value.exit_code == 129


def test_an_error_after_a_stopped_job_is_that_error_not_the_old_signal(monkeypatch):
    """The interrupt raised in one job must not stand behind a real error of a later job in the same process
    (a notebook, a test session): only while ``handle_signals`` runs can an error be a signal's."""
    import importlib

    from hltrun.framework.errors import HltError
    from hltrun.framework.extras import need
    from hltrun.framework.interrupt import Interrupted, handle_signals, interrupt_behind

    with pytest.raises(Interrupted), handle_signals():
        os.kill(os.getpid(), signal.SIGTERM)
    assert interrupt_behind(ImportError("initialization failed")) is None

    def missing(name, *args):  # noqa: ANN001, ANN202
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(importlib, "import_module", missing)
    with pytest.raises(HltError, match="not installed"):
        need("onnxruntime", "the onnxruntime backend")


def test_a_nested_block_keeps_the_outer_jobs_signal_state():
    """hltrun --dask: the CLI's handle_signals around run_dask's own. A first signal noted inside must still
    make a second one abort after the inner block ends (its end used to clear the job's state)."""
    from hltrun.framework import interrupt
    from hltrun.framework.interrupt import Interrupted, handle_signals

    with handle_signals():
        with pytest.raises(Interrupted), handle_signals():
            os.kill(os.getpid(), signal.SIGINT)
        assert interrupt._received == [signal.SIGINT] and interrupt._installed
        assert interrupt.interrupt_behind(ImportError("initialization failed")) is not None
    assert interrupt._received == [] and not interrupt._installed
