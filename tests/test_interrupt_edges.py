"""Signals a job gets from its surroundings rather than from a user stopping it: one its caller ignores
(``nohup`` ignores SIGHUP, a shell ignores SIGINT for a script's background job) and SIGQUIT, the hard
way out (Ctrl-\\). Real jobs in subprocesses, real signals; each waits for a marker file, not a delay.

SIGQUIT is left at its default action on purpose: it must end a job hung inside a native library (a
Python handler runs only when the main thread gets back to Python), and it dumps core where cores are
enabled, as a user asking for it expects. What it may leave are temporaries, named ``<name>.XXXXXXXX.tmp``,
never a half-written file under an output's or a report's own name (framework/atomic.py).
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

import pytest

from tests.helpers import CLI_WITH_TEST_PLUGINS

REPO = Path(__file__).resolve().parents[1]
RUN = CLI_WITH_TEST_PLUGINS

JOB = """
process: EDGE
source: {{type: TestCountingSource, n: {n}}}
modules:
  slow: {{type: TestSleep, sleep_ms: 10, started_file: {started}}}
  out: {{type: RootOutputModule, file: {out}}}
paths: {{p: [slow]}}
endpaths: {{e: [out]}}
services: {{Timing: {{}}, TestSlowReport: {{writing: {writing}, sleep_s: 60, until_signals: 1}}}}
"""


def _start(tmp_path: Path, n: int, ignore: int | None = None) -> "subprocess.Popen[str]":
    """The job, in a process that inherits ``ignore`` set to be ignored, as from ``nohup`` or a shell."""
    cfg = tmp_path / "job.yaml"
    cfg.write_text(textwrap.dedent(JOB.format(n=n, out=tmp_path / "o.root", writing=tmp_path / "writing",
                                       started=tmp_path / "started")))

    def inherited() -> None:  # what nohup (SIGHUP) or a non-interactive shell's `&` (SIGINT, SIGQUIT) does
        if ignore is not None:
            signal.signal(ignore, signal.SIG_IGN)

    return subprocess.Popen([sys.executable, "-c", RUN, str(cfg), "--report-dir", str(tmp_path / "rep"),
                             "-j", str(tmp_path / "fjr.xml")],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=inherited)


@pytest.mark.parametrize("ignored", [signal.SIGHUP, signal.SIGINT], ids=["nohup's SIGHUP", "a background job's SIGINT"])
def test_a_signal_the_caller_ignores_stays_ignored(ignored, tmp_path):
    """``nohup hltrun cfg.yaml &``, then the terminal closes: the SIGHUP stopped the job (exit 129, its
    output dropped), as hltrun's handler replaced the ignore nohup had set. Now the job goes on; the
    SIGTERM sent after it still stops it (exit 143, marked SIGTERM)."""
    proc = _start(tmp_path, n=5000, ignore=ignored)
    _wait_for(tmp_path / "started", proc)
    proc.send_signal(ignored)
    proc.send_signal(signal.SIGTERM)  # signals are delivered in order: the ignored one came first
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "hltrun: error: stopped by SIGTERM" in err.splitlines() and "SIGHUP" not in err and "SIGINT" not in err, err
    job = json.loads((tmp_path / "rep" / "hltrun.json").read_text())["job"]
    assert job["stopped_by_signal"] == "SIGTERM" and 0 < job["events_processed"] < 5000


def _wait_for(marker: Path, proc: "subprocess.Popen[str]") -> None:
    """Until the job touches ``marker`` (``started``: its first event ran; ``writing``: the report folder is
    being written, resources.json staged); the test fails if the job ends first."""
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), proc.communicate(timeout=60)[1]


def test_sigusr2_stops_the_job_as_cmsruns_graceful_stop(tmp_path):
    """SIGUSR2 is cmsRun's graceful stop (UnixSignalService), which a batch wrapper may send it: hltrun died
    of it at once (exit -12 / 140 from the shell), no report, ``o.root.XXXXXXXX.tmp`` left. Now it stops the job
    in its loop: the events in flight finish, every report marked stopped by SIGUSR2, 128 + 12, and the output
    keeps the events processed (tests/test_graceful_stop.py checks them one by one)."""
    proc = _start(tmp_path, n=5000)
    _wait_for(tmp_path / "started", proc)
    proc.send_signal(signal.SIGUSR2)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGUSR2, err
    assert "hltrun: error: stopped by SIGUSR2" in err.splitlines() and "Traceback" not in err, err
    job = json.loads((tmp_path / "rep" / "hltrun.json").read_text())["job"]
    assert job["stopped_by_signal"] == "SIGUSR2" and 0 < job["events_processed"] == job["events_read"] < 5000
    assert f'UnixExitStatus="{128 + signal.SIGUSR2}"' in (tmp_path / "fjr.xml").read_text()
    assert not list(tmp_path.rglob("*.tmp"))
    import uproot

    assert uproot.open(tmp_path / "o.root")["Events"].num_entries == job["events_processed"]  # every event written


def _final_names(tmp_path: Path) -> list[str]:
    """Files the job writes found under their own names (not a ``.tmp`` temporary): o.root, fjr.xml, rep/*."""
    return sorted(str(p.relative_to(tmp_path)) for p in [tmp_path / "o.root", tmp_path / "fjr.xml",
                                                         *(tmp_path / "rep").glob("*")]
                  if p.exists() and not p.name.endswith(".tmp"))


@pytest.mark.parametrize("when", ["event loop", "report folder"])
def test_sigquit_is_the_hard_way_out_and_leaves_only_named_temporaries(when, tmp_path):
    """SIGQUIT kills the job at once, by its default action (a shell shows 131), in the loop or while the
    report folder is written; nothing under an output's or a report's name, only ``*.tmp`` temporaries."""
    proc = _start(tmp_path, n=5000 if when == "event loop" else 3)
    _wait_for(tmp_path / ("started" if when == "event loop" else "writing"), proc)
    proc.send_signal(signal.SIGQUIT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGQUIT, err
    whole = ["o.root"] if when == "report folder" else []  # end_job wrote it whole before the reports began
    assert _final_names(tmp_path) == whole, err
    left = [p.name for p in tmp_path.rglob("*.tmp")]
    assert left and all(name.split(".")[0] in ("o", "hltrun", "resources", "timing") for name in left), left


def test_a_second_signals_abort_stops_what_could_still_write_before_removing_the_temporaries(tmp_path):
    """A second signal removes the job's temporaries and exits; what could still write one (a Dask worker
    finishing its unit: its part renamed into place a moment after the removal stayed for ever, seen under
    load) is stopped first by the hooks ``before_abort`` registers. Here the hook is that late writer: run
    after the removal (the old order), its file stays."""
    import subprocess
    import textwrap

    part = tmp_path / "o.root.unit00003.part"
    code = textwrap.dedent(f"""
        import os, signal, pathlib
        from hltrun.framework import interrupt
        part = pathlib.Path({str(part)!r})
        interrupt.register_temporary(part)
        with interrupt.handle_signals(), interrupt.before_abort(lambda: part.write_text("renamed late")):
            try:
                os.kill(os.getpid(), signal.SIGUSR2)
            except BaseException:
                pass
            os.kill(os.getpid(), signal.SIGINT)
        raise SystemExit("the second signal did not abort")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130 and "second signal, aborting" in done.stderr, done.stderr
    assert not part.exists()


def test_killing_the_workers_waits_until_they_are_gone():
    """``_kill_workers`` (a second signal's hook on our LocalCluster): every worker process is gone when it
    returns, so none renames a part afterwards; a worker already gone is no error."""
    import subprocess
    from types import SimpleNamespace

    from hltrun.framework.executors.dask_executor import _kill_workers, _running

    workers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"]) for _ in range(2)]
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        cluster = SimpleNamespace(workers={i: SimpleNamespace(pid=p.pid) for i, p in enumerate([*workers, gone])})
        _kill_workers(cluster, wait_s=60)
        assert not [p.pid for p in workers if _running(p.pid)]
        assert [p.wait(timeout=60) for p in workers] == [-9, -9]
    finally:
        for p in workers:
            p.kill()
