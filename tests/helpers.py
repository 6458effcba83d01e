"""Run a configuration in-process (fast) and hand back the summary."""

from __future__ import annotations

from pathlib import Path

from framework.config import load
from framework.eventloop import EventProcessor
from framework.process import Process
from framework.summary import JobSummary


def run_config(path: Path, *overrides: str) -> tuple[JobSummary, Process]:
    process = Process(load(path, list(overrides)))
    return EventProcessor(process).run(), process
