"""What a killed job leaves behind (framework/leftovers.py): its temporaries, removed by a later job that writes
into the same folder, and only when their writer is gone. Real jobs in subprocesses, real SIGKILL/SIGQUIT;
the leftovers are aged with ``os.utime`` rather than waited for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hltrun.framework import leftovers
from hltrun.framework.atomic import Staged, write_bytes
from tests.helpers import CLI_WITH_TEST_PLUGINS

REPO = Path(__file__).resolve().parents[1]
RUN = CLI_WITH_TEST_PLUGINS
HOUR_AGO = time.time() - 3600

JOB = """
process: LEFT
source: {{type: TestCountingSource, n: {n}}}
modules:
  slow: {{type: TestSleep, sleep_ms: {sleep_ms}, started_file: {started}}}
  out: {{type: RootOutputModule, file: {out}}}
paths: {{p: [slow]}}
endpaths: {{e: [out]}}
services: {{Timing: {{}}{slow_report}}}
"""


def _start(folder: Path, name: str, n: int, sleep_ms: int = 10, slow_report: bool = False) -> "subprocess.Popen[str]":
    """A job writing ``folder/<name>.root`` and the report folder ``folder/rep``."""
    cfg = folder / f"{name}.yaml"
    report = ", TestSlowReport: {writing: %s, sleep_s: 60}" % (folder / f"{name}.writing") if slow_report else ""
    cfg.write_text(textwrap.dedent(JOB.format(n=n, sleep_ms=sleep_ms, out=folder / f"{name}.root",
                                              started=folder / f"{name}.started", slow_report=report)))
    return subprocess.Popen([sys.executable, "-c", RUN, str(cfg), "--report-dir", str(folder / "rep")],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(marker: Path, proc: "subprocess.Popen[str]") -> None:
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), proc.communicate(timeout=60)[1]


def _temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if ".tmp" in p.name)


def _age(paths: list[Path]) -> None:
    for p in paths:
        os.utime(p, (HOUR_AGO, HOUR_AGO))


@pytest.mark.parametrize("kill, when", [(signal.SIGKILL, "event loop"), (signal.SIGQUIT, "report folder")])
def test_a_killed_jobs_temporaries_are_removed_by_the_next_job_writing_there(kill, when, tmp_path):
    """A SIGKILL in the loop left ``a.root.XXXXXXXX.tmp`` beside the output, a SIGQUIT while the report folder
    was written left ``hltrun.json.XXXXXXXX.tmp`` (and the rest of the set) in it, for ever: the next job into
    the same folders wrote its files and left them there. Now it removes them, and says so in one line."""
    killed = _start(tmp_path, "a", n=5000 if when == "event loop" else 3, slow_report=when == "report folder")
    _wait_for(tmp_path / ("a.started" if when == "event loop" else "a.writing"), killed)
    killed.send_signal(kill)
    killed.communicate(timeout=120)
    assert killed.returncode == -kill
    left = _temporaries(tmp_path)
    assert left, "the kill left no temporary: nothing to test"
    _age(left)

    rerun = _start(tmp_path, "b", n=3, sleep_ms=0)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert _temporaries(tmp_path) == [], err
    assert (tmp_path / "b.root").is_file() and (tmp_path / "rep" / "hltrun.json").is_file()
    said = [line for line in err.splitlines() if "left by killed hltrun jobs" in line]
    assert said and all(p.name in "\n".join(said) for p in left if p.parent == left[0].parent), err


def test_a_running_jobs_temporary_is_never_removed_however_old(tmp_path):
    """Two jobs into one folder at once: the second one's sweep leaves the first one's temporary, even one
    untouched for an hour. The first job runs until the test stops it (no race with its end)."""
    first = _start(tmp_path, "a", n=100_000, sleep_ms=20)  # 30 min: the test stops it
    try:
        _wait_for(tmp_path / "a.started", first)
        mine = _temporaries(tmp_path)
        assert [p.name.split(".")[0] for p in mine] == ["a"]
        _age(mine)
        second = _start(tmp_path, "b", n=3, sleep_ms=0)
        _, err = second.communicate(timeout=300)
        assert second.returncode == 0, err
        assert all(p.exists() for p in mine) and "left by killed" not in err, err
        assert first.poll() is None  # still running: its temporary was a living writer's
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=300)
    assert first.returncode == 128 + signal.SIGTERM, err
    assert (tmp_path / "b.root").is_file() and _temporaries(tmp_path) == []


@pytest.fixture()
def fresh_sweep():
    """Each test sweeps its folders anew (a process sweeps a folder once)."""
    leftovers._swept.clear()
    yield
    leftovers._swept.clear()


def _named(folder: Path, stem: str, machine: str, pid: int, start: int, age: bool = True) -> Path:
    path = folder / f"{stem}.hltrun-{machine}-{pid}-{start}.abc_1234.tmp"
    path.write_bytes(b"half")
    if age:
        _age([path])
    return path


def test_only_a_gone_writers_old_temporaries_of_this_machine_and_user_are_removed(tmp_path, fresh_sweep):
    """The rules, one case each: removed when the writer's pid is dead, or alive but another process (its start
    time differs: the pid was reused); kept when the writer lives, when it is another machine's (or pid
    namespace's, or boot's) pid, when it is recent, when it is not hltrun's name or not a regular file."""
    here = leftovers.machine()
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        start = leftovers.start_ticks(alive.pid)
        dead = _named(tmp_path, "dead.root", here, done.pid, 1)
        reused = _named(tmp_path, "reused.root", here, alive.pid, start + 1)
        kept = {
            "living": _named(tmp_path, "living.root", here, alive.pid, start),
            "living, start unknown": _named(tmp_path, "unknown.root", here, alive.pid, 0),
            "other machine": _named(tmp_path, "other.root", "0" * 8 if here != "0" * 8 else "1" * 8, done.pid, 1),
            "recent": _named(tmp_path, "recent.root", here, done.pid, 1, age=False),
            "not hltrun's": tmp_path / f"notes.{done.pid}.tmp",
            "old-style": tmp_path / "o.root.y3ynt_lo.tmp",
        }
        for p in (kept["not hltrun's"], kept["old-style"]):
            p.write_bytes(b"x")
        link = tmp_path / f"link.hltrun-{here}-{done.pid}-1.abc_1234.tmp"
        link.symlink_to(kept["not hltrun's"])
        os.utime(link, (HOUR_AGO, HOUR_AGO), follow_symlinks=False)
        kept["a link"] = link

        removed = leftovers.sweep(tmp_path)
        assert sorted(removed) == sorted([dead.name, reused.name])
        assert not dead.exists() and not reused.exists()
        assert {what: p.name for what, p in kept.items() if not os.path.lexists(p)} == {}
        assert leftovers.sweep(tmp_path) == []  # once per folder and process
    finally:
        alive.kill()
        alive.wait()


def test_a_temporary_names_its_writer_and_stays_within_the_name_limit(tmp_path, fresh_sweep):
    """The temporary carries this process's machine, pid and start time, even for a 255-byte output name;
    a cache entry written with write_bytes sweeps its folder too (a killed compile's temporary)."""
    stale = _named(tmp_path, "model.vmfb", leftovers.machine(), 2 ** 31 - 1, 1)
    staged = Staged(tmp_path / ("x" * 250 + ".root"), "output file")
    try:
        assert len(staged.tmp.name.encode()) <= 255
        assert f".hltrun-{leftovers.machine()}-{os.getpid()}-{leftovers.start_ticks()}." in staged.tmp.name
    finally:
        staged.discard()
    assert not stale.exists()
    write_bytes(tmp_path / "cache.bin", b"data", "iree module cache")
    assert (tmp_path / "cache.bin").read_bytes() == b"data" and _temporaries(tmp_path) == []
