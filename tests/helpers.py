"""Run a configuration in-process (fast) and hand back the summary; wait for a job in a subprocess."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from hltrun.framework.config import load
from hltrun.framework.eventloop import EventProcessor
from hltrun.framework.process import Process
from hltrun.framework.summary import JobSummary

# ``python -c`` code running the hltrun CLI with the tests' plugin modules registered (a job in a subprocess,
# for signals and exit codes)
CLI_WITH_TEST_PLUGINS = ("import sys, tests.plugins; from hltrun.framework.cli import main; "
                         "sys.exit(main(sys.argv[1:]))")


@contextmanager
def stdout_full(monkeypatch: Any) -> Iterator[None]:
    """``sys.stdout`` on /dev/full in the block, as ``cmd > /dev/full``: a write that reaches the device fails with
    ENOSPC. Its file is closed after the block: what it still buffers would fail again at garbage collection."""
    full = open("/dev/full", "w")
    monkeypatch.setattr("sys.stdout", full)
    try:
        yield
    finally:
        full.buffer.raw.close()


def run_config(path: Path, *overrides: str) -> tuple[JobSummary, Process]:
    process = Process(load(path, list(overrides)))
    return EventProcessor(process).run(), process


def wait_for_temporary(target: Path, proc: "subprocess.Popen[str]", timeout_s: float = 120) -> bool:
    """Wait until a job in ``proc`` has opened ``target``'s temporary (framework/atomic.py names it
    ``<name>.XXXXXXXX.tmp`` beside it): events are flowing. False if the job ended or time ran out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if any(target.parent.glob(f"{target.name}.*.tmp")):
            return True
        time.sleep(0.05)
    return False


def fifo_unblocked(path: Path) -> Path:
    """A FIFO at ``path``. Should hltrun open it for reading, a helper thread opens it for writing and
    closes it at once, every time, for 60 s, so each reader gets end-of-file: the test fails on its
    message instead of hanging the suite."""
    os.mkfifo(path)

    def unblock() -> None:
        for _ in range(600):
            try:  # succeeds only while a reader waits (ENXIO otherwise)
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            time.sleep(0.1)

    threading.Thread(target=unblock, daemon=True).start()
    return path


def beside_a_fifo(fifo: Path, call: Any, wait_s: float = 60.0) -> Any:
    """``call()`` run in a thread, its result (or the exception it raised, returned); a call still running after
    ``wait_s`` (blocked opening, reading or writing the FIFO ``fifo``: the bug these tests are about) is released
    by opening the FIFO as both ends and closing it, so that the thread ends, and the test fails."""
    import pytest

    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # the test looks at what was raised
            outcome.append(exc)

    job = threading.Thread(target=run, daemon=True)
    job.start()
    job.join(wait_s)
    if job.is_alive():
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # wakes a reader or a writer blocked in open()
        time.sleep(0.1)
        os.close(fd)  # end of file for the reader, a broken pipe for the writer
        job.join(10)
        pytest.fail(f"waited for ever on the FIFO {fifo}")
    return outcome[0]
