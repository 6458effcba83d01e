"""Run a configuration in-process (fast) and hand back the summary; wait for a job in a subprocess."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from hltrun.framework.config import load
from hltrun.framework.eventloop import EventProcessor
from hltrun.framework.process import Process
from hltrun.framework.summary import JobSummary


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
